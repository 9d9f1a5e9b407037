"""The local control plane is real: the deployment controller, the garbage collector, the
scheduler and KWOK's simulated kubelets (with Slipway's fault stages) all act on real objects."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until


def get_json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def deployment(name: str, replicas: int, labels: dict[str, str] | None = None) -> str:
    pod_labels = {"app": name, **(labels or {})}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {"containers": [{"name": "c", "image": "example.invalid/none:1"}]},
                },
            },
        }
    )


def test_server_reports_the_pinned_version(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.37.2"
    assert version["clientVersion"]["gitVersion"] == "v1.37.2"


def test_at_least_two_simulated_nodes_are_ready(cluster: Cluster) -> None:
    nodes = get_json(cluster, "nodes")["items"]
    ready = [
        n
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    ]
    assert len(ready) >= 2


def test_deployment_becomes_available_and_garbage_collection_removes_its_pods(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=deployment("web", 3))
    wait_until(
        "3 available replicas",
        lambda: (
            get_json(cluster, "deployment", "web", "-n", namespace)["status"].get(
                "availableReplicas"
            )
            == 3
        ),
    )
    assert len(get_json(cluster, "replicasets", "-n", namespace, "-l", "app=web")["items"]) == 1
    cluster.kubectl("delete", "deployment", "web", "-n", namespace, "--wait=false")
    wait_until(
        "the ReplicaSet and pods to be garbage-collected",
        lambda: (
            not get_json(cluster, "replicasets", "-n", namespace, "-l", "app=web")["items"]
            and not get_json(cluster, "pods", "-n", namespace, "-l", "app=web")["items"]
        ),
    )


def test_a_pod_marked_not_ready_by_the_node_controller_becomes_ready_again(
    cluster: Cluster, namespace: str
) -> None:
    """After a control-plane outage the node lifecycle controller sets Ready=False on every pod
    of a node it saw go NotReady; a kubelet reports the real readiness again, and so must KWOK
    (hack/kwok-fault-stages.yaml), or a ReplicaSet counts 0 Ready pods for good."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=deployment("flap", 1))

    def ready_pod() -> dict[str, Any] | None:
        pods = get_json(cluster, "pods", "-n", namespace, "-l", "app=flap")["items"]
        return next((p for p in pods if ready_condition(p) == "True"), None)

    pod = wait_until("a Ready pod", ready_pod)
    conditions = [
        {**c, "status": "False", "reason": "NodeNotReady"} if c["type"] == "Ready" else c
        for c in pod["status"]["conditions"]
    ]
    # what the node lifecycle controller writes (MarkPodsNotReady): only the Ready condition
    patch = json.dumps({"status": {"conditions": conditions}})
    marked = cluster.kubectl(
        "patch", "pod", pod["metadata"]["name"], "-n", namespace, "--subresource", "status",
        "--type", "merge", "-p", patch, "-o", "json",
    )  # fmt: skip
    assert ready_condition(json.loads(marked.stdout)) == "False"
    wait_until("the pod to be Ready again", ready_pod, timeout=30)
    wait_until(
        "the ReplicaSet to count it",
        lambda: (
            get_json(cluster, "deployment", "flap", "-n", namespace)["status"].get("readyReplicas")
            == 1
        ),
        timeout=30,
    )


def ready_condition(pod: dict[str, Any]) -> str | None:
    return next(
        (c["status"] for c in pod["status"].get("conditions") or [] if c["type"] == "Ready"), None
    )


def test_not_ready_fault_keeps_a_pod_running_but_never_ready(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=deployment("sick", 1, {"slipway.test/fault": "not-ready"}),
    )
    pod = wait_until(
        "the pod to run",
        lambda: next(
            (
                p
                for p in get_json(cluster, "pods", "-n", namespace, "-l", "app=sick")["items"]
                if p["status"].get("phase") == "Running"
            ),
            None,
        ),
    )
    time.sleep(3)  # long enough for the default stages to have made it Ready, had they matched
    pod = get_json(cluster, "pod", pod["metadata"]["name"], "-n", namespace)
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert pod["status"]["phase"] == "Running"
    assert ready["status"] == "False"


def test_crash_fault_shows_crashloopbackoff_with_growing_restarts(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=deployment("crashy", 1, {"slipway.test/fault": "crash"}),
    )

    def restarts() -> int:
        pods = get_json(cluster, "pods", "-n", namespace, "-l", "app=crashy")["items"]
        statuses = [cs for p in pods for cs in p["status"].get("containerStatuses") or []]
        waiting = [
            cs
            for cs in statuses
            if cs["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
        ]
        return max((cs["restartCount"] for cs in waiting), default=0)

    first = wait_until("a CrashLoopBackOff", restarts)
    wait_until("the restart count to grow", lambda: restarts() > first, timeout=30)


def test_a_pod_whose_ready_stage_failed_is_played_again(cluster: Cluster, namespace: str) -> None:
    """hack/pod-status-resync.sh stands in for a kubelet's retries. KWOK gives up on a stage whose
    patch fails with a non-retryable error (as a 500 from the API server during an etcd restart
    is); here a ValidatingAdmissionPolicy refuses every pod status write in the namespace for a
    while, so KWOK's pod-ready stage fails. The loop touches the pod stuck Pending on its node
    (within its 30 s period, seen while the policy is still there), and once the policy is gone
    the pod gets Ready; a Ready pod is never touched. (KWOK sometimes plays a failed stage again
    by itself, at its own pace: that is why the touch is looked for before the policy goes.)"""
    kwok_log = cluster.kubeconfig.parent / "logs" / "kwok.log"
    if not kwok_log.exists():
        pytest.skip("needs the local cluster's KWOK and its resync loop (hack/cluster.sh)")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=deployment("fine", 1))
    wait_until("the pod of 'fine' to be Ready", lambda: ready_pods(cluster, namespace, "fine"))
    policy = f"deny-pod-status-{namespace}"
    manifests = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["UPDATE"],
                            "resources": ["pods/status"],
                        }
                    ]
                },
                "validations": [{"expression": "false", "message": "status writes paused"}],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    ]
    try:
        for manifest in manifests:
            cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        # the policy is in force once a status write of our own is refused
        [fine] = ready_pods(cluster, namespace, "fine")
        refused = {"metadata": {"annotations": {"probe": "1"}}}
        wait_until(
            "the policy to refuse pod status writes",
            lambda: "status writes paused"
            in cluster.kubectl(
                "patch", "pod", fine["metadata"]["name"], "-n", namespace,
                "--subresource", "status", "-p", json.dumps(refused), check=False,
            ).stderr,
        )  # fmt: skip
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=deployment("stalled", 1))
        wait_until(
            "the pod of 'stalled' to be bound to a node",
            lambda: [
                p
                for p in get_json(cluster, "pods", "-n", namespace, "-l", "app=stalled")["items"]
                if p["spec"].get("nodeName")
            ],
        )
        [pod] = get_json(cluster, "pods", "-n", namespace, "-l", "app=stalled")["items"]
        name = pod["metadata"]["name"]
        # KWOK plays pod-ready, is refused and gives up; on a busy machine not at once
        wait_until(
            "KWOK to give up on the pod's ready stage",
            lambda: any(
                "failed to apply stage" in line and name in line
                for line in kwok_log.read_text(errors="replace").splitlines()
            ),
            timeout=60,
        )
        [pod] = get_json(cluster, "pods", "-n", namespace, "-l", "app=stalled")["items"]
        assert pod["status"].get("phase") == "Pending"
        # the loop touches it while the policy still refuses its status (an annotation is no
        # status write): what the loop does is seen whatever KWOK does by itself afterwards
        wait_until(
            "the resync loop to touch the pod stuck Pending on its node",
            lambda: (
                "slipway.test/status-resync"
                in (
                    get_json(cluster, "pods", "-n", namespace, "-l", "app=stalled")["items"][0][
                        "metadata"
                    ].get("annotations")
                    or {}
                )
            ),
            timeout=90,
        )
    finally:
        for manifest in reversed(manifests):
            kind = manifest["kind"].lower()
            cluster.kubectl("delete", kind, policy, "--ignore-not-found", check=False)
    # its next touch (or KWOK's own retry, which it sometimes makes) gets it played again
    wait_until(
        "the pod to be played again and get Ready",
        lambda: ready_pods(cluster, namespace, "stalled"),
        timeout=90,
    )
    [fine] = ready_pods(cluster, namespace, "fine")
    assert "slipway.test/status-resync" not in (fine["metadata"].get("annotations") or {})


def ready_pods(cluster: Cluster, namespace: str, app: str) -> list[dict[str, Any]]:
    pods = get_json(cluster, "pods", "-n", namespace, "-l", f"app={app}")["items"]
    return [p for p in pods if ready_condition(p) == "True"]
