"""The operator as users run it (issue 11, section 4): the image built from the repository's
Dockerfile, installed with the chart into a namespace that enforces Pod Security `restricted`,
two replicas with kopf peering, on the real node. The suite's own operator process is stopped
meanwhile, so the chart's pods are the only operator."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Cluster
from tests.e2e.conftest import Operator
from tests.e2e.realnode.conftest import NODE_LABEL, PodPrometheus, RealDriver, iris
from tests.e2e.realnode.load import Load
from tests.integration.test_chart import CHART, helm, installed  # noqa: F401

RESTRICTED = ("pod-security.kubernetes.io/enforce=restricted",)


def restricted(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("label", "namespace", namespace, *RESTRICTED, "--overwrite")


@pytest.fixture
def operator_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-slipway-system-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    restricted(cluster, name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def chart_operator(
    cluster: Cluster,
    operator: Operator,
    operator_namespace: str,
    installed: list[tuple[str, str]],  # noqa: F811
    real_node: str,
) -> Iterator[str]:
    """The chart installed with two operator pods on the real node; its release name. The suite's
    operator process is stopped meanwhile and started again afterwards."""
    release = f"sw-{uuid.uuid4().hex[:6]}"
    sets = {
        "replicas": "2",
        "image.pullPolicy": "IfNotPresent",
        f"nodeSelector.{NODE_LABEL.replace('.', chr(92) + '.')}": "real",
        "tolerations[0].key": NODE_LABEL,
        "tolerations[0].operator": "Exists",
        "tolerations[0].effect": "NoSchedule",
        "livenessProbe.initialDelaySeconds": "5",
        "livenessProbe.periodSeconds": "5",
    }
    flags = [flag for key, value in sets.items() for flag in ("--set", f"{key}={value}")]
    operator.stop()
    try:
        installed.append((release, operator_namespace))
        helm(cluster, "install", release, str(CHART), "-n", operator_namespace, *flags)
        cluster.kubectl(
            "rollout", "status", f"deployment/{release}-slipway", "-n", operator_namespace,
            "--timeout=180s",
        )  # fmt: skip
        yield release
    finally:
        helm(cluster, "uninstall", release, "-n", operator_namespace, "--wait", check=False)
        operator.start()


def operator_pods(cluster: Cluster, namespace: str, release: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}", "-o", "json"
    ).stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def scrape(cluster: Cluster, namespace: str, pod: str) -> dict[str, float]:
    """The pod's /metrics through the API server's pod proxy, summed by metric name."""
    text = cluster.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}:8080/proxy/metrics"
    ).stdout
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def writes(cluster: Cluster, namespace: str, pod: str) -> float:
    return scrape(cluster, namespace, pod).get("slipway_api_writes_total", 0.0)


def peering_log(cluster: Cluster, namespace: str, pods: list[str]) -> str:
    """What each operator pod logged about its peers (for a failure's message)."""
    lines = []
    for pod in pods:
        log = cluster.kubectl("logs", pod, "-n", namespace, "--timestamps", check=False).stdout
        lines += [f"{pod}: {line}" for line in log.splitlines() if "peer" in line.lower()]
    return "\n".join(lines)


def test_the_chart_operator_on_the_real_node_serves_a_canary_without_losing_a_request(
    rk: RealDriver,
    cluster: Cluster,
    chart_operator: str,
    operator_namespace: str,
    pod_prometheus: PodPrometheus,
) -> None:
    pods = operator_pods(cluster, operator_namespace, chart_operator)
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == "slipway-real-node"
        assert pod["spec"]["containers"][0]["image"] == "ghcr.io/slipway-dev/slipway:0.1.0"
    names = [p["metadata"]["name"] for p in pods]
    # the serving pods pass Pod Security `restricted` too
    restricted(cluster, rk.ns)
    steps = [{"setWeight": 50}, {"pause": {"duration": "10s"}}]
    rk.apply(iris("1.0.0", replicas=2, rollout={"strategy": "Canary", "steps": steps}))
    rk.wait_phase("iris", "Ready", timeout=300)
    load = Load(rk.routable("iris"), "iris", rps=30, max_seconds=300)
    with load:
        load.wait_for(100)
        model = {"version": "1.1.0", "uri": "s3://models/iris/1.1.0"}
        rk.patch("modeldeployment", "iris", {"spec": {"model": model}})
        md = rk.wait_phase("iris", "Ready", timeout=300)
        assert md["status"]["stable"]["version"] == "1.1.0"
        load.wait_for(1000)
    result = load.result
    assert result.failed == 0, result.summary()

    # one of the two peers did all the work, from the start; the other one stood by and wrote
    # nothing (they start together, maybe before Helm has created their peering object)
    wrote = {name: writes(cluster, operator_namespace, name) for name in names}
    active = max(wrote, key=lambda name: wrote[name])
    standby = [w for name, w in wrote.items() if name != active]
    assert standby == [0.0], (wrote, peering_log(cluster, operator_namespace, names))
    rollouts = scrape(cluster, operator_namespace, active).get("slipway_rollouts_total", 0)
    assert rollouts >= 1, (active, wrote)

    # the kubelet probes the operator's liveness endpoint: no restart, no failed probe
    for pod in operator_pods(cluster, operator_namespace, chart_operator):
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] and status["restartCount"] == 0, status
    events = cluster.kubectl("get", "events", "-n", operator_namespace, "-o", "json").stdout
    assert not [e for e in json.loads(events)["items"] if e.get("reason") == "Unhealthy"]

    # the test Prometheus scrapes the operator pods' metrics
    def scraped() -> list[dict[str, Any]]:
        return pod_prometheus.query(f'slipway_rollouts_total{{namespace="{operator_namespace}"}}')

    rk.wait("Prometheus to scrape the operator", scraped, timeout=60)

    # the standby takes over when the active peer goes, and carries on with the next change
    cluster.kubectl("delete", "pod", active, "-n", operator_namespace, "--wait=false")
    time.sleep(2)
    rk.patch("modeldeployment", "iris", {"spec": {"replicas": 3}})
    rk.wait("the standby to take over", lambda: rk.ready_pods("iris") == 3, timeout=180)
    rk.wait_phase("iris", "Ready", timeout=120)
