"""The whole path on real pods: S3 -> `slipway fetch` in the init container -> MLServer -> a V2
inference request through the ModelDeployment's Service (kube-proxy), answered with the model's own
predictions."""

from __future__ import annotations

from tests.e2e.realnode.conftest import RealDriver, iris
from tests.e2e.realnode.models import ROWS, infer, predict

GOOD_ROWS = ROWS[:9]


def test_the_model_answers_through_its_service_with_its_own_predictions(rk: RealDriver) -> None:
    rk.apply(iris("1.0.0", replicas=2))
    md = rk.wait_phase("iris", "Ready", timeout=240)
    assert len(rk.pods_ready_on_node("iris")) == 2
    answer = infer(rk.routable("iris"), "iris", GOOD_ROWS)
    assert answer["model_name"] == "iris" and answer["model_version"] == "1.0.0"
    served = answer["outputs"][0]["data"]
    assert served == predict(rk.models.trained["1.0.0"], GOOD_ROWS)
    # the stable Service serves the same revision
    assert infer(rk.routable("iris-stable"), "iris", GOOD_ROWS)["outputs"][0]["data"] == served
    assert md["status"]["url"] == f"http://iris.{rk.ns}.svc.cluster.local:8080"
