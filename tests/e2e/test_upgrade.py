"""An operator upgrade never rolls the pods of a revision that exists (issue 15, item 2).

Each test stops the suite's operator, runs operators of its own (another fetcher image stands for
another operator version), and starts the suite's operator again.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Cluster
from tests.e2e.conftest import Driver, InClusterOperator, Operator

OLD_IMAGE = "ghcr.io/slipway-dev/slipway:0.1.0"
NEW_IMAGE = "ghcr.io/slipway-dev/slipway:9.9.9-upgrade-test"
LEGACY = json.loads((ROOT / "tests" / "data" / "legacy-deployments.json").read_text())


@pytest.fixture
def own_operators(operator: Operator, cluster: Cluster, tmp_path: Path) -> Iterator[list[Operator]]:
    """Operators this test starts, with the suite's operator stopped meanwhile."""
    if isinstance(operator, InClusterOperator):
        pytest.skip("needs operator processes with chosen images; the suite's runs in the cluster")
    operator.stop()
    started: list[Operator] = []
    try:
        yield started
    finally:
        for op in started:
            op.stop()
        operator.start()


def run_operator(cluster: Cluster, started: list[Operator], tmp: Path, image: str) -> Operator:
    for op in started:
        op.stop()
    op = Operator(cluster, tmp, extra_args=["--operator-image", image])
    op.start()
    started.append(op)
    return op


def replica_sets(k: Driver, name: str) -> dict[str, str]:
    """The ReplicaSets of a ModelDeployment's pods: name -> pod-template-hash."""
    return {
        rs["metadata"]["name"]: rs["metadata"]["labels"]["pod-template-hash"]
        for rs in k.items("replicasets", f"serving.slipway.dev/modeldeployment={name}")
    }


def sklearn(name: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.slipway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "version": version,
                "uri": f"s3://models/{name}/{version}",
                "format": "sklearn",
            },
            "replicas": 2,
            "rollout": {"scaleDownDelaySeconds": 1},
        },
    }


def test_an_operator_with_another_image_never_rolls_a_revisions_pods(
    k: Driver, cluster: Cluster, own_operators: list[Operator], tmp_path: Path
) -> None:
    run_operator(cluster, own_operators, tmp_path, OLD_IMAGE)
    k.apply(sklearn("iris", "1.0.0"))
    md = k.wait_phase("iris", "Ready")
    first = md["status"]["stable"]["revision"]
    assert md["status"]["stable"]["pinned"]["fetcherImage"] == OLD_IMAGE
    deployment = k.get("deployment", f"iris-{first}")
    assert deployment is not None
    template, sets = deployment["spec"]["template"], replica_sets(k, "iris")

    upgraded = run_operator(cluster, own_operators, tmp_path, NEW_IMAGE)
    k.patch("modeldeployment", "iris", {"metadata": {"annotations": {"touch": "1"}}})
    k.wait("the upgraded operator to reconcile", lambda: upgraded.metric("slipway_reconcile_total"))
    k.wait_phase("iris", "Ready")
    after = k.get("deployment", f"iris-{first}")
    assert after is not None
    assert after["spec"]["template"] == template
    assert replica_sets(k, "iris") == sets

    # only a new revision gets the new operator's image; the stable one keeps its own
    k.patch(
        "modeldeployment",
        "iris",
        {"spec": {"model": {"version": "1.1.0", "uri": "s3://models/iris/1.1.0"}}},
    )
    md = k.wait_phase("iris", "Ready")
    assert md["status"]["stable"]["pinned"]["fetcherImage"] == NEW_IMAGE
    old_entry = next(h for h in md["status"]["history"] if h["revision"] == first)
    assert old_entry["pinned"]["fetcherImage"] == OLD_IMAGE
    kept = k.get("deployment", f"iris-{first}")
    assert kept is not None
    assert kept["spec"]["template"] == template


def test_a_revision_from_before_pinning_keeps_its_pods_as_they_run(
    k: Driver, cluster: Cluster, own_operators: list[Operator], tmp_path: Path
) -> None:
    """The state Slipway 0.1.0 left: a Deployment built by it (tests/data/legacy-deployments.json)
    and a status whose revisions record no pins. The new operator adopts what runs."""
    legacy = LEGACY["sklearn-s3"]
    k.apply({
        "apiVersion": "serving.slipway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "sklearn-s3"},
        "spec": legacy["spec"],
    })  # fmt: skip
    md = k.md("sklearn-s3")
    deployment = copy.deepcopy(legacy["deployment"])
    deployment["metadata"]["namespace"] = k.ns
    deployment["metadata"]["ownerReferences"][0]["uid"] = md["metadata"]["uid"]
    k.apply(deployment)
    revision, name = legacy["revision"], deployment["metadata"]["name"]
    uri = legacy["spec"]["model"]["uri"]
    serving = {"model": legacy["spec"]["model"]}  # what 0.1.0 recorded: the serving spec, no pins
    entry = {"revision": revision, "version": "1.0.0", "uri": uri, "template": serving}
    status = {
        "phase": "Ready",
        "observedGeneration": md["metadata"]["generation"],
        "stable": {**entry, "replicas": 2, "readyReplicas": 2},
        "history": [{**entry, "promotedAt": "2026-11-01T00:00:00Z"}],
    }
    cluster.kubectl(
        "patch", "md", "sklearn-s3", "-n", k.ns, "--subresource", "status", "--type", "merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    k.wait("the legacy pods", lambda: k.ready_pods("sklearn-s3") == 2)
    before = k.get("deployment", name)
    assert before is not None
    sets = replica_sets(k, "sklearn-s3")

    run_operator(cluster, own_operators, tmp_path, NEW_IMAGE)

    def pinned() -> dict[str, Any] | None:
        stable = (k.md("sklearn-s3").get("status") or {}).get("stable") or {}
        return stable.get("pinned")

    pins = k.wait("the operator to pin the legacy revision", pinned)
    assert pins == {"serverImage": "docker.io/seldonio/mlserver:1.7.1", "fetcherImage": OLD_IMAGE,
                    "podShape": 1}  # fmt: skip
    k.wait_phase("sklearn-s3", "Ready")
    after = k.get("deployment", name)
    assert after is not None
    assert after["spec"]["template"] == before["spec"]["template"]
    assert after["metadata"]["annotations"]["serving.slipway.dev/pod-shape"] == "1"
    assert replica_sets(k, "sklearn-s3") == sets


def test_a_revision_this_operator_cannot_rebuild_keeps_its_deployment_and_its_services(
    k: Driver, cluster: Cluster, operator: Operator
) -> None:
    """A status written by a newer operator (a Helm rollback of Slipway): the stable revision's
    recorded serving spec has a field this version does not know. Its Deployment is kept as it
    runs and said to be so; Services iris and iris-stable stay on its pods."""
    k.apply(sklearn("iris", "1.0.0"))
    md = k.wait_phase("iris", "Ready")
    revision = md["status"]["stable"]["revision"]
    template = k.get("deployment", f"iris-{revision}")["spec"]["template"]
    recorded = {**md["status"]["stable"]["template"], "futureField": {"enabled": True}}
    cluster.kubectl(
        "patch", "md", "iris", "-n", k.ns, "--subresource", "status", "--type", "merge",
        "-p", json.dumps({"status": {"stable": {"template": recorded}}}),
    )  # fmt: skip

    def said() -> str:
        conditions = k.md("iris").get("status", {}).get("conditions") or []
        return " ".join(c.get("message", "") for c in conditions)

    k.wait("the condition", lambda: "cannot be rebuilt" in said())
    assert k.get("service", "iris") is not None
    stable = k.get("service", "iris-stable")
    assert stable is not None, "Service iris-stable was deleted"
    assert stable["spec"]["selector"]["serving.slipway.dev/revision"] == revision
    kept = k.get("deployment", f"iris-{revision}")
    assert kept is not None and kept["spec"]["template"] == template
