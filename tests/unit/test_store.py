"""The store keeps what the reconcile reads, and says when that changed: an event that changes
nothing of it (our own write coming back, a counter the controller bumps) wakes no reconcile."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from slipway.controller import Key, Store, project
from slipway.governance.digests import pod_digests
from slipway.reconcile import pods_failing

pytestmark = pytest.mark.unit

OWNER = Key("ml", "fraud")
OWNER_REF = {"kind": "ModelDeployment", "name": "fraud", "controller": True, "uid": "u1"}


def deployment(version: str = "10", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "fraud-abc",
            "namespace": "ml",
            "uid": "d1",
            "resourceVersion": version,
            "generation": 1,
            "creationTimestamp": "2026-11-30T12:00:00Z",
            "labels": {"serving.slipway.dev/revision": "abc"},
            "ownerReferences": [OWNER_REF],
            "managedFields": [{"manager": "slipway", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "server"}]}}},
        "status": {"observedGeneration": 1, "replicas": 2, **status},
    }


def pod(version: str, ready: str = "False", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "fraud-abc-1",
            "namespace": "ml",
            "uid": "p1",
            "resourceVersion": version,
            "labels": {"serving.slipway.dev/modeldeployment": "fraud"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "fraud-abc-x"}],
        },
        "spec": {"containers": [{"name": "server", "image": "x"}], "nodeName": "n1"},
        "status": {
            "phase": "Running",
            "podIP": extra.get("ip", "10.0.0.1"),
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": ready, "lastTransitionTime": "t"},
            ],
            "containerStatuses": [
                {
                    "name": "server",
                    "ready": ready == "True",
                    "restartCount": extra.get("restarts", 0),
                    "state": extra.get("state", {"running": {"startedAt": "t"}}),
                    "imageID": "sha256:x",
                }
            ],
        },
    }


def test_our_own_write_coming_back_through_the_watch_wakes_nothing() -> None:
    store = Store()
    applied = deployment("10")
    store.upsert("Deployment", applied)  # write-through of the apply's answer
    assert store.observe("Deployment", copy.deepcopy(applied)) == (OWNER, False)


def test_a_late_event_older_than_the_store_is_ignored() -> None:
    store = Store()
    store.upsert("Deployment", deployment("12", readyReplicas=2))
    assert store.observe("Deployment", deployment("11", readyReplicas=1)) == (OWNER, False)
    kept = store.get("Deployment", "ml", "fraud-abc")
    assert kept is not None and kept["status"]["readyReplicas"] == 2


def test_a_deployment_status_counter_wakes_nothing_but_its_ready_count_does() -> None:
    store = Store()
    store.upsert("Deployment", deployment("10"))
    assert store.observe("Deployment", deployment("11", updatedReplicas=2)) == (OWNER, False)
    assert store.observe("Deployment", deployment("12", readyReplicas=1)) == (OWNER, True)
    failure = {"type": "ReplicaFailure", "status": "True", "message": "quota"}
    changed = deployment("13", readyReplicas=1, conditions=[failure])
    assert store.observe("Deployment", changed) == (OWNER, True)


def test_a_hand_edit_of_a_deployment_spec_wakes_its_modeldeployment() -> None:
    store = Store()
    store.upsert("Deployment", deployment("10"))
    edited = deployment("11")
    edited["spec"]["replicas"] = 5
    assert store.observe("Deployment", edited) == (OWNER, True)


def test_a_pod_wakes_its_modeldeployment_when_it_gets_ready_or_fails_not_when_it_gets_an_ip() -> (
    None
):
    store = Store()
    store.upsert("ModelDeployment", {"metadata": {"name": "fraud", "namespace": "ml"}})
    assert store.observe("Pod", pod("1")) == (OWNER, True)  # a new pod
    assert store.observe("Pod", pod("2", ip="10.0.0.9")) == (OWNER, False)
    assert store.observe("Pod", pod("3", ready="True")) == (OWNER, True)
    crashing = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
    assert store.observe("Pod", pod("4", restarts=1, state=crashing)) == (OWNER, True)
    assert store.observe("Pod", pod("5", restarts=2, state=crashing)) == (OWNER, True)


def test_the_store_keeps_of_a_pod_only_what_the_reconcile_reads() -> None:
    crashing = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
    kept = project("Pod", pod("4", ready="True", restarts=3, state=crashing))
    assert kept == {
        "metadata": {
            "name": "fraud-abc-1",
            "namespace": "ml",
            "uid": "p1",
            "resourceVersion": "4",
            "labels": {"serving.slipway.dev/modeldeployment": "fraud"},
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "server",
                    "ready": True,
                    "restartCount": 3,
                    "state": crashing,
                    "imageID": "sha256:x",
                }
            ],
        },
    }
    assert "managedFields" not in project("Deployment", deployment())["metadata"]


def test_what_the_reconcile_reads_of_a_pod_is_the_same_in_the_store() -> None:
    """Every reader of a pod in the reconcile (digests, failures) sees in the store's copy what
    it sees in the pod the API server sent: the projection must not drop what one of them reads."""
    report = '{"digest": "sha256:' + "a" * 64 + '", "bytes": 10}'
    full = pod("7", ready="True", restarts=1)
    full["status"]["initContainerStatuses"] = [
        {
            "name": "storage-initializer",
            "ready": True,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": report}},
            "lastState": {"terminated": {"exitCode": 1, "message": "s3: access denied"}},
            "imageID": "ghcr.io/slipway-dev/slipway@sha256:" + "b" * 64,
        }
    ]
    server = full["status"]["containerStatuses"][0]
    server["imageID"] = "docker.io/seldonio/mlserver@sha256:" + "c" * 64
    server["volumeMounts"] = [
        {"name": "model", "mountPath": "/mnt/models", "volumeStatus": {"image": {"imageRef": "r"}}},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    crashing = pod("8", restarts=5, state={"waiting": {"reason": "CrashLoopBackOff"}})
    crashing["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {"exitCode": 1, "message": "model file not found"}
    }
    for body in (full, crashing, pod("9")):
        kept = project("Pod", body)
        assert pod_digests(kept) == pod_digests(body)
        assert pods_failing([kept]) == pods_failing([body])


def test_a_fresh_list_drops_what_was_deleted_meanwhile_in_its_namespace_only() -> None:
    store = Store()
    other = deployment("5")
    other["metadata"] = {**other["metadata"], "namespace": "other", "name": "x-abc"}
    store.upsert("Deployment", deployment("10"))
    store.upsert("Deployment", other)
    assert store.replace("Deployment", [], namespace="ml") == {OWNER}
    assert store.children("Deployment", OWNER) == []
    assert store.get("Deployment", "other", "x-abc") is not None


def test_a_listed_object_and_the_same_from_a_watch_event_are_the_same() -> None:
    """List items come without apiVersion and kind; watch events and apply answers with."""
    store = Store()
    listed = deployment("10")
    del listed["apiVersion"], listed["kind"]
    store.upsert("Deployment", listed)
    assert store.observe("Deployment", deployment("10")) == (OWNER, False)
