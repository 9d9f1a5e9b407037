"""A model registry as the source of versions, on real pods (issue 14): a real MLflow tracking
server (loopback; the operator calls it) registers the iris versions the store holds; the
ModelDeployment follows the alias `champion`; moving it in MLflow rolls the next version out as a
canary, and the pods serve the bytes of the version the alias names (their digest, reported by
`slipway fetch`, and MLServer's answer)."""

from __future__ import annotations

from typing import Any

from slipway.storage.digest import sha256_of_file, tree_digest
from tests.e2e.realnode.conftest import SECRET, RealDriver, iris
from tests.e2e.realnode.models import ROWS, infer, predict
from tests.mlflow_server import MlflowClient, MlflowServer, mlflow  # noqa: F401


def following(alias_uri: str, tracking_uri: str) -> dict[str, Any]:
    md = iris(
        replicas=2,
        rollout={
            "strategy": "Canary",
            "steps": [{"setWeight": 50}, {"pause": {"duration": "5s"}}],
            "scaleDownDelaySeconds": 1,
        },
    )
    md["spec"]["model"] = {
        "name": "iris",
        "uri": alias_uri,
        "format": "sklearn",
        "storage": {"secretName": SECRET},
        "registry": {"mlflow": {"trackingUri": tracking_uri, "pollInterval": "10s"}},
    }
    return md


def status(rk: RealDriver) -> dict[str, Any]:
    return dict(rk.md("iris").get("status") or {})


def test_moving_the_alias_serves_the_bytes_of_the_version_it_names(
    rk: RealDriver,
    mlflow: MlflowServer,  # noqa: F811
) -> None:
    client = MlflowClient(mlflow.url)
    client.create_model(rk.ns)
    first = client.create_version(rk.ns, "s3://models/iris/1.0.0")
    second = client.create_version(rk.ns, "s3://models/iris/1.1.0")
    client.set_alias(rk.ns, "champion", first)

    rk.apply(following(f"models:/{rk.ns}@champion", mlflow.url))
    rk.wait_phase("iris", "Ready", timeout=240)
    answer = infer(rk.routable("iris"), "iris", ROWS[:9])
    assert answer["model_version"] == first
    assert answer["outputs"][0]["data"] == predict(rk.models.trained["1.0.0"], ROWS[:9])

    client.set_alias(rk.ns, "champion", second)
    rk.wait(
        "a canary of the new version",
        lambda: (status(rk).get("canary") or {}).get("version") == second,
        timeout=60,
    )
    st = rk.wait(
        "the new version stable, its digest reported",
        lambda: (
            (s := status(rk))["stable"]["version"] == second
            and not s.get("canary")
            and s["stable"].get("modelDigest")
            and s
        ),
        timeout=300,
    )
    expected = tree_digest({"model.joblib": sha256_of_file(rk.models.trained["1.1.0"])})
    assert st["stable"]["modelDigest"] == f"sha256:{expected}"
    assert st["stable"]["uri"] == "s3://models/iris/1.1.0"
    assert st["history"][0]["registryUri"] == f"models:/{rk.ns}@champion"
    rk.wait_phase("iris", "Ready", timeout=120)
    # the old revision keeps serving through scaleDownDelaySeconds (1 s) and its pods' shutdown
    # delay, until kube-proxy drops them: then every answer is the new version's
    rk.wait(
        "only the new version answering (10 answers in a row)",
        lambda: all(
            infer(rk.routable("iris"), "iris", ROWS[:9])["model_version"] == second
            for _ in range(10)
        ),
        timeout=30,
    )
    answer = infer(rk.routable("iris"), "iris", ROWS[:9])
    assert answer["model_version"] == second
    assert answer["outputs"][0]["data"] == predict(rk.models.trained["1.1.0"], ROWS[:9])
