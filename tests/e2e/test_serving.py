"""Serving a model on the stable path (issue 3): the operator process against the real cluster."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

import pytest

from tests.e2e.conftest import Driver, Operator, load_example

pytestmark = pytest.mark.usefixtures("operator")

SELECTOR = "serving.slipway.dev/modeldeployment"


def sklearn(name: str = "iris", replicas: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.slipway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"version": "1.0.0", "uri": "s3://models/iris/1.0.0", "format": "sklearn"},
            "replicas": replicas,
            "template": {"labels": {"team": "fraud"}, "annotations": {"owner": "ml@example.com"}},
            **spec,
        },
    }


def stable_deployment(k: Driver, name: str) -> dict[str, Any]:
    md = k.md(name)
    revision = md["status"]["stable"]["revision"]
    deployment = k.get("deployment", f"{name}-{revision}")
    assert deployment is not None
    return deployment


def test_modeldeployment_becomes_ready_with_its_children(k: Driver) -> None:
    k.apply(sklearn())
    md = k.wait_phase("iris", "Ready")
    status = md["status"]
    revision = status["stable"]["revision"]
    assert status["readyReplicas"] == 3 and status["replicas"] == 3
    assert status["url"] == f"http://iris.{k.ns}.svc.cluster.local:8080"
    assert status["selector"] == f"{SELECTOR}=iris"
    assert status["stable"]["version"] == "1.0.0"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"

    deployment = k.get("deployment", f"iris-{revision}")
    assert deployment is not None
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "slipway"
    assert labels["app.kubernetes.io/instance"] == "iris"
    assert labels["app.kubernetes.io/version"] == "1.0.0"
    assert labels["serving.slipway.dev/revision"] == revision
    assert labels["serving.slipway.dev/track"] == "stable"
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("ModelDeployment", "iris", True)
    assert deployment["status"]["readyReplicas"] == 3

    for service, selector in [
        ("iris", {SELECTOR: "iris"}),
        ("iris-stable", {SELECTOR: "iris", "serving.slipway.dev/revision": revision}),
    ]:
        svc = k.get("service", service)
        assert svc is not None, service
        assert svc["spec"]["selector"] == selector
        assert svc["spec"]["ports"][0]["port"] == 8080
    assert k.get("service", "iris-canary") is None

    pods = k.items("pods", f"{SELECTOR}=iris")
    assert len(pods) == 3
    for pod in pods:
        assert pod["metadata"]["labels"]["team"] == "fraud"
        assert pod["metadata"]["annotations"]["owner"] == "ml@example.com"
        assert "serving.slipway.dev/track" not in pod["metadata"]["labels"]
    assert "kopf.zalando.org/last-handled-configuration" not in (
        md["metadata"].get("annotations") or {}
    )
    assert not md["metadata"].get("finalizers")


def test_kubectl_scale_resizes_the_serving_revision(k: Driver) -> None:
    k.apply(sklearn(replicas=2))
    k.wait_phase("iris", "Ready")
    k.cluster.kubectl("scale", "md/iris", "--replicas=5", "-n", k.ns)
    k.wait("5 ready replicas", lambda: k.md("iris")["status"].get("readyReplicas") == 5)
    assert stable_deployment(k, "iris")["spec"]["replicas"] == 5
    scale = k.cluster.kubectl(
        "get",
        "--raw",
        f"/apis/serving.slipway.dev/v1alpha1/namespaces/{k.ns}/modeldeployments/iris/scale",
    ).stdout
    assert '"replicas":5' in scale.replace(" ", "")


def test_autoscaling_creates_an_hpa_that_targets_the_modeldeployment(k: Driver) -> None:
    k.apply(
        sklearn(
            autoscaling={"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 65}
        )
    )
    k.wait_phase("iris", "Ready")
    hpa = k.wait("the HPA", lambda: k.get("hpa", "iris"))
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "serving.slipway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "name": "iris",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    target = hpa["spec"]["metrics"][0]["resource"]["target"]
    assert target["averageUtilization"] == 65
    # removing autoscaling removes the HPA
    k.patch("md", "iris", [{"op": "remove", "path": "/spec/autoscaling"}], type_="json")
    k.wait("the HPA to go", lambda: k.get("hpa", "iris") is None)


class ReadySampler:
    """Counts Ready serving pods every 250 ms in a thread; `minimum` is the lowest count seen."""

    def __init__(self, k: Driver, name: str) -> None:
        self.k, self.name = k, name
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.k.ready_pods(self.name))
            self._stop.wait(0.25)

    def __enter__(self) -> ReadySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def minimum(self) -> int:
        return min(self.samples)


def test_rolling_version_change_keeps_ready_pods_and_scales_the_old_revision_down(
    k: Driver,
) -> None:
    k.apply(sklearn(replicas=3, rollout={"strategy": "Rolling", "scaleDownDelaySeconds": 0}))
    old = k.wait_phase("iris", "Ready")["status"]["stable"]["revision"]
    with ReadySampler(k, "iris") as sampler:
        k.patch(
            "md", "iris", {"spec": {"model": {"version": "1.1.0", "uri": "s3://models/iris/1.1.0"}}}
        )
        md = k.wait(
            "1.1.0 to be stable and Ready",
            lambda: (
                (m := k.md("iris"))["status"].get("stable", {}).get("version") == "1.1.0"
                and m["status"]["phase"] == "Ready"
                and m
            ),
        )
        k.wait(
            "the old revision to scale to 0",
            lambda: (d := k.get("deployment", f"iris-{old}")) is None or d["spec"]["replicas"] == 0,
        )
    assert sampler.minimum >= 3, sampler.samples
    new = md["status"]["stable"]["revision"]
    assert new != old
    svc = k.get("service", "iris-stable")
    assert svc is not None and svc["spec"]["selector"]["serving.slipway.dev/revision"] == new


def test_hand_edits_of_managed_fields_are_put_back(k: Driver) -> None:
    k.apply(sklearn(replicas=2))
    k.wait_phase("iris", "Ready")
    deployment = stable_deployment(k, "iris")
    name = deployment["metadata"]["name"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    k.cluster.kubectl("set", "image", f"deployment/{name}", "server=evil.example/x:1", "-n", k.ns)
    k.cluster.kubectl("scale", f"deployment/{name}", "--replicas=7", "-n", k.ns)
    k.patch("service", "iris", {"spec": {"selector": {"app": "hijacked"}}})
    k.wait(
        "image and replicas to be put back",
        lambda: (
            (d := k.get("deployment", name))["spec"]["replicas"] == 2
            and d["spec"]["template"]["spec"]["containers"][0]["image"] == image
        ),
    )
    k.wait(
        "the Service selector to be put back",
        lambda: k.get("service", "iris")["spec"]["selector"] == {SELECTOR: "iris"},
    )


def test_deleted_children_are_recreated(k: Driver) -> None:
    k.apply(sklearn(replicas=2))
    k.wait_phase("iris", "Ready")
    name = stable_deployment(k, "iris")["metadata"]["name"]
    k.cluster.kubectl("delete", "service", "iris-stable", "-n", k.ns)
    k.cluster.kubectl("delete", "deployment", name, "-n", k.ns, "--wait=false")
    k.wait("the Service to come back", lambda: k.get("service", "iris-stable"))
    k.wait(
        "the Deployment to come back with 2 ready pods",
        lambda: (
            (d := k.get("deployment", name)) is not None
            and not d["metadata"].get("deletionTimestamp")
            and (d.get("status") or {}).get("readyReplicas") == 2
        ),
    )


def test_deleting_the_modeldeployment_removes_every_child(k: Driver) -> None:
    k.apply(sklearn(replicas=2, autoscaling={"minReplicas": 2, "maxReplicas": 3}))
    k.wait_phase("iris", "Ready")
    k.cluster.kubectl("delete", "md", "iris", "-n", k.ns, "--timeout=30s")
    for kind in ("deployments", "services", "hpa", "pods", "replicasets"):
        k.wait(
            f"{kind} to be collected",
            lambda kind=kind: not k.items(kind, f"{SELECTOR}=iris"),
            timeout=60,
        )


def test_a_ready_modeldeployment_makes_no_writes_when_idle(k: Driver, operator: Operator) -> None:
    k.apply(sklearn(replicas=2))
    k.wait_phase("iris", "Ready")
    # namespaces of earlier tests being torn down make the (shared) operator write: let them go
    k.wait(
        "earlier test namespaces to be gone",
        lambda: "Terminating" not in k.cluster.kubectl("get", "namespaces").stdout,
        timeout=300,
    )
    time.sleep(2)  # the last watch events of the rollout settle
    before = operator.metric("slipway_api_writes_total")
    rv = k.md("iris")["metadata"]["resourceVersion"]
    time.sleep(10)
    assert operator.metric("slipway_api_writes_total") == before
    assert k.md("iris")["metadata"]["resourceVersion"] == rv


def test_a_missing_claim_is_reported_and_the_stable_revision_keeps_serving(k: Driver) -> None:
    k.apply(sklearn(replicas=2))
    stable = k.wait_phase("iris", "Ready")["status"]["stable"]["revision"]
    k.patch(
        "md", "iris", {"spec": {"model": {"version": "2.0.0", "uri": "pvc://no-such-claim/iris"}}}
    )

    def degraded() -> dict[str, Any] | None:
        md = k.md("iris")
        for c in md["status"].get("conditions") or []:
            if (
                c["type"] == "Degraded"
                and c["status"] == "True"
                and "no-such-claim" in c["message"]
            ):
                return md
        return None

    md = k.wait("a Degraded condition naming the claim", degraded)
    assert md["status"]["stable"]["revision"] == stable
    assert k.ready_pods("iris") == 2
    assert len(k.items("deployments", f"{SELECTOR}=iris")) == 1


@pytest.mark.parametrize(
    "example, name",
    [
        ("sklearn-iris.yaml", "iris"),
        ("llm-vllm-gpu.yaml", "chat"),
        ("custom-image.yaml", "ranker"),
        ("canary-with-analysis.yaml", "fraud"),
        ("canary-with-evaluation.yaml", "iris"),
    ],
)
def test_examples_are_accepted_and_become_ready(k: Driver, example: str, name: str) -> None:
    k.apply(copy.deepcopy(load_example(example)))
    md = k.wait_phase(name, "Ready")
    assert md["status"]["readyReplicas"] == md["spec"]["replicas"]
