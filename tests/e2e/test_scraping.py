"""Per-model scraping (issue 13, section 1), on the real cluster: the PodMonitor Slipway keeps per
ModelDeployment once prometheus-operator's CRD exists, and the labels that reach the series.

The PodMonitor CRD is the one of prometheus-operator's pinned release (hack/prometheus-operator-
crd.sh, from its Go module), installed for one test at a time and removed after it, so that every
other test runs in a cluster without it, as most clusters are.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT, Cluster
from tests.e2e.conftest import Driver, Operator, canary_model_deployment
from tests.e2e.prom import Prometheus, to_the_exporter

pytestmark = pytest.mark.usefixtures("operator")

CRD = "podmonitors.monitoring.coreos.com"
V2 = {"model": {"version": "2.0.0", "uri": "s3://models/iris/2.0.0"}}
REVISION_META = "__meta_kubernetes_pod_label_serving_slipway_dev_revision"


@contextlib.contextmanager
def podmonitor_crd(cluster: Cluster) -> Iterator[None]:
    """prometheus-operator's PodMonitor CRD, Established, for the length of the block."""
    path = subprocess.run(
        ["bash", str(ROOT / "hack" / "prometheus-operator-crd.sh")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    cluster.kubectl("apply", "--server-side", "-f", path)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD}")
    try:
        yield
    finally:
        cluster.kubectl("delete", "crd", CRD, "--wait=true", "--timeout=120s")


def monitor(k: Driver, name: str = "iris") -> dict[str, Any] | None:
    return k.get("podmonitors.monitoring.coreos.com", name)


def tracks(pm: dict[str, Any] | None) -> dict[str, str]:
    """track → revision, as the PodMonitor's relabelings say."""
    if pm is None:
        return {}
    rules = pm["spec"]["podMetricsEndpoints"][0].get("relabelings") or []
    return {r["replacement"]: r["regex"] for r in rules if r.get("targetLabel") == "track"}


def iris(**spec: Any) -> dict[str, Any]:
    md = canary_model_deployment("iris", [{"setWeight": 50}, {"pause": {}}])
    md["spec"].update(spec)
    return md


def status(k: Driver) -> dict[str, Any]:
    return dict(k.md("iris").get("status") or {})


def test_the_podmonitor_follows_the_modeldeployment_once_the_crd_exists(
    cluster: Cluster, k: Driver, operator: Operator
) -> None:
    k.apply(iris())
    stable = k.wait_phase("iris", "Ready")["status"]["stable"]["revision"]  # no CRD: it serves
    with podmonitor_crd(cluster):
        pm = k.wait("the PodMonitor, once the CRD exists", lambda: monitor(k), timeout=60)
        assert pm["metadata"]["ownerReferences"][0]["name"] == "iris"
        assert pm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "slipway"
        assert pm["spec"]["selector"] == {
            "matchLabels": {"serving.slipway.dev/modeldeployment": "iris"}
        }
        assert tracks(pm) == {"stable": stable}

        k.patch("md", "iris", {"spec": V2})
        canary = k.wait("a canary", lambda: (status(k).get("canary") or {}).get("revision"))
        k.wait(
            "the canary's track", lambda: tracks(monitor(k)) == {"stable": stable, "canary": canary}
        )
        # promote skips the step the canary is at: given while it still scales to 50 %, it would
        # only reach the pause, so it waits for the pause (a CI run lost that race)
        k.wait("the pause", lambda: status(k).get("phase") == "Paused")
        k.plugin("promote", "iris")
        k.wait("promotion", lambda: status(k).get("stable", {}).get("revision") == canary)
        k.wait("the new stable's track", lambda: tracks(monitor(k)) == {"stable": canary})

        # a reconcile with nothing to change writes nothing to it
        before = monitor(k)
        assert before is not None
        reconciles = operator.metric("slipway_reconcile_total")
        k.patch("md", "iris", {"metadata": {"annotations": {"touched": "yes"}}})
        k.wait("a reconcile", lambda: operator.metric("slipway_reconcile_total") > reconciles)
        after = monitor(k)
        assert after is not None
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

        # a hand edit is put back once a resync sees it: at the latest every 5 minutes, and at
        # every start of the operator
        k.patch(
            "podmonitors.monitoring.coreos.com",
            "iris",
            {"spec": {"podMetricsEndpoints": [{"port": "http"}]}},
        )
        operator.stop()
        operator.start()
        k.wait("the PodMonitor put back", lambda: tracks(monitor(k)) == {"stable": canary})

        # the spec's switch
        k.patch("md", "iris", {"spec": {"monitoring": {"podMonitor": {"enabled": False}}}})
        k.wait("the PodMonitor gone", lambda: monitor(k) is None)
        k.patch(
            "md",
            "iris",
            {"spec": {"monitoring": {"podMonitor": {"enabled": True, "labels": {"team": "risk"}}}}},
        )
        pm = k.wait("the PodMonitor back", lambda: monitor(k))
        assert pm["metadata"]["labels"]["team"] == "risk"

        # removed with its ModelDeployment (an owner reference: the garbage collector)
        cluster.kubectl("delete", "md", "iris", "-n", k.ns)
        k.wait("the PodMonitor collected", lambda: monitor(k) is None, timeout=60)
        k.apply(iris())

    # the CRD is gone (uninstalled prometheus-operator): the operator goes on serving
    assert operator.proc is None or operator.proc.poll() is None, operator.log_tail()
    k.wait_phase("iris", "Ready")
    k.patch("md", "iris", {"spec": V2})
    k.wait("a canary without a PodMonitor", lambda: (status(k).get("canary") or {}).get("weight"))


def as_prometheus_operator_renders(pm: dict[str, Any]) -> dict[str, Any]:
    """The scrape job prometheus-operator generates for a PodMonitor, as far as this test needs:
    its namespace, the selector and running-pod filters, the namespace/pod/container labels, then
    the PodMonitor's own relabelings (camelCase keys to Prometheus's snake_case)."""
    meta = pm["metadata"]
    selector = pm["spec"]["selector"]["matchLabels"]
    rules: list[dict[str, Any]] = []
    for key, value in selector.items():
        clean = "".join(c if c.isalnum() else "_" for c in key)
        rules.append(
            {
                "source_labels": [
                    f"__meta_kubernetes_pod_label_{clean}",
                    f"__meta_kubernetes_pod_labelpresent_{clean}",
                ],
                "regex": f"({value});true",
                "action": "keep",
            }
        )
    rules += [
        {
            "source_labels": ["__meta_kubernetes_pod_phase"],
            "regex": "(Failed|Succeeded)",
            "action": "drop",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ]
    snake = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    for rule in pm["spec"]["podMetricsEndpoints"][0]["relabelings"]:
        rules.append({snake.get(k, k): v for k, v in rule.items()})
    return {
        "job_name": f"podMonitor/{meta['namespace']}/{meta['name']}/0",
        # its kubernetes_sd_configs watch the PodMonitor's namespace only
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_namespace"],
                "regex": meta["namespace"],
                "action": "keep",
            },
            *rules,
        ],
    }


def test_revision_and_track_labels_reach_the_scraped_series(
    cluster: Cluster,
    k: Driver,
    prometheus: Prometheus,
) -> None:
    k.apply(iris())
    stable = k.wait_phase("iris", "Ready")["status"]["stable"]["revision"]
    k.patch("md", "iris", {"spec": V2})
    canary = k.wait(
        "a canary at 50",
        lambda: (
            (status(k).get("canary") or {}).get("weight") == 50 and status(k)["canary"]["revision"]
        ),
    )
    prometheus.exporter.set(k.ns, stable, rps=10)
    prometheus.exporter.set(k.ns, canary, rps=10, error_ratio=0.5)

    # the plain scrape config of the README: one target per pod, its metrics port only; pods
    # come and go while the stable scales down, so both are counted at each look
    up = k.wait(
        "every pod scraped",
        lambda: (
            len(r := prometheus.query(f'up{{job="slipway-models",namespace="{k.ns}"}}'))
            == len(k.items("pods", "serving.slipway.dev/modeldeployment=iris"))
            and {s["metric"]["revision"] for s in r} == {stable, canary}
            and r
        ),
        timeout=60,
    )
    assert {s["metric"]["modeldeployment"] for s in up} == {"iris"}
    assert {s["metric"]["revision"] for s in up} == {stable, canary}
    assert {s["metric"]["container"] for s in up} == {"server"}

    with podmonitor_crd(cluster):
        pm = k.wait(
            "the PodMonitor with both tracks", lambda: len(tracks(monitor(k))) == 2 and monitor(k)
        )
        job = as_prometheus_operator_renders(pm)
        job["file_sd_configs"] = prometheus.pods_sd()
        job["relabel_configs"] += to_the_exporter(prometheus.exporter.port)
        prometheus.use_jobs(job)
        try:
            for track, revision in (("stable", stable), ("canary", canary)):
                series = k.wait(
                    f"{track} series with their labels",
                    lambda t=track: prometheus.query(
                        f'model_infer_request_success_total{{job="{job["job_name"]}",'
                        f'namespace="{k.ns}",modeldeployment="iris",track="{t}"}}'
                    ),
                    timeout=60,
                )
                assert {s["metric"]["revision"] for s in series} == {revision}
                assert all(s["metric"]["model"] == "m" for s in series)  # the server's own labels
            failures = prometheus.query(
                f'model_infer_request_failure_total{{job="{job["job_name"]}",namespace="{k.ns}"}}'
            )
            assert {s["metric"]["track"] for s in failures} == {"canary"}  # only it fails
        finally:
            prometheus.use_jobs()
    events = json.loads(cluster.kubectl("get", "events", "-n", k.ns, "-o", "json").stdout)
    assert not [e for e in events["items"] if e["type"] == "Warning"]
