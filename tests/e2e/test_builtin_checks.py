"""Built-in checks (issue 13, sections 2 and 3) end to end: the operator process, the real cluster,
and the real Prometheus scraping the serving pods with the README's relabelling (tests/e2e/prom.py:
each pod answers as MLServer 1.7.1's metrics endpoint does, at the rates the test sets).

No PromQL is written here: the ModelDeployments say `check: error-rate` and `check: latency-p99`,
and Slipway sends the MLServer row of its check table.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Driver
from tests.e2e.prom import Prometheus
from tests.e2e.test_canary import V2, canary, canary_md, condition, start, status

pytestmark = pytest.mark.usefixtures("operator")


def judged(prom: Prometheus, *metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "interval": "2s",
        "window": "10s",
        "failureLimit": 0,
        "minSamples": 20,
        "prometheus": {"address": prom.address},
        "metrics": list(metrics),
    }


def sklearn_canary(prom: Prometheus, *metrics: dict[str, Any]) -> dict[str, Any]:
    md = canary_md(
        steps=[{"setWeight": 50}, {"pause": {"duration": "20s"}}],
        replicas=2,
        analysis=judged(prom, *metrics),
    )
    md["spec"]["model"]["format"] = "sklearn"
    return md


def latest(st: dict[str, Any], metric: str) -> dict[str, Any]:
    return [m for m in st["analysis"]["measurements"] if m["metric"] == metric][-1]


def test_a_canary_that_fails_requests_is_rolled_back_by_the_error_rate_check(
    k: Driver,
    prometheus: Prometheus,
) -> None:
    stable = start(k, sklearn_canary(prometheus, {"check": "error-rate", "max": 0.05}))
    prometheus.exporter.set(k.ns, stable, rps=20)
    k.patch("md", "fraud", {"spec": V2})
    rev = k.wait("a canary", lambda: canary(k).get("revision"))
    prometheus.exporter.set(k.ns, rev, rps=20, error_ratio=0.3)
    st = k.wait(
        "RolledBack", lambda: (s := status(k)).get("phase") == "RolledBack" and s, timeout=90
    )
    degraded = condition(st, "Degraded")
    assert degraded["reason"] == "AnalysisFailed" and "error-rate" in degraded["message"]
    failed = latest(st, "error-rate")
    assert failed["verdict"] == "Failed"
    # what Prometheus computed from the pods' counters: 30 % of the requests failed
    assert failed["value"] == pytest.approx(0.3, abs=0.03)
    assert failed["samples"] >= 20
    assert "model_infer_request_failure_total" in failed["query"]
    assert f'revision="{rev}"' in failed["query"] and f'namespace="{k.ns}"' in failed["query"]
    assert st["stable"]["revision"] == stable


def test_a_canary_as_good_as_a_busy_stable_is_promoted_by_a_check_relative_to_stable(
    k: Driver,
    prometheus: Prometheus,
) -> None:
    """A bad hour for every revision: stable fails 10 % of its requests, the canary 11 %. An
    absolute threshold of 5 % would roll back a canary that is as good as what serves now."""
    stable = start(
        k, sklearn_canary(prometheus, {"check": "error-rate", "maxIncreaseOverStable": 0.03})
    )
    prometheus.exporter.set(k.ns, stable, rps=20, error_ratio=0.10)
    k.patch("md", "fraud", {"spec": V2})
    rev = k.wait("a canary", lambda: canary(k).get("revision"))
    prometheus.exporter.set(k.ns, rev, rps=20, error_ratio=0.11)
    k.wait("promotion", lambda: status(k).get("stable", {}).get("revision") == rev, timeout=120)
    st = status(k)
    passed = [m for m in st["analysis"]["measurements"] if m["verdict"] == "Successful"]
    assert passed, st["analysis"]
    m = passed[-1]
    assert m["value"] == pytest.approx(0.11, abs=0.02)
    assert m["stableValue"] == pytest.approx(0.10, abs=0.02)
    assert m["maxIncreaseOverStable"] == 0.03
    assert f'revision="{rev}"' in m["query"] and f'revision="{stable}"' in m["stableQuery"]
    assert m["stableSamples"] >= 20


def test_a_slower_canary_is_rolled_back_by_latency_relative_to_stable(
    k: Driver,
    prometheus: Prometheus,
) -> None:
    stable = start(k, sklearn_canary(prometheus, {"check": "latency-p99", "maxRatioToStable": 2}))
    prometheus.exporter.set(k.ns, stable, rps=20, latency=0.02)
    k.patch("md", "fraud", {"spec": V2})
    rev = k.wait("a canary", lambda: canary(k).get("revision"))
    prometheus.exporter.set(k.ns, rev, rps=20, latency=0.6)
    st = k.wait(
        "RolledBack", lambda: (s := status(k)).get("phase") == "RolledBack" and s, timeout=90
    )
    m = latest(st, "latency-p99")
    assert m["verdict"] == "Failed" and "maxRatioToStable" in m["message"]
    # histogram_quantile over MLServer's buckets: 0.02 s lies in (0.01, 0.025], 0.6 s in (0.5, 0.75]
    assert m["stableValue"] == pytest.approx(0.01 + 0.99 * 0.015, abs=0.001)
    assert m["value"] == pytest.approx(0.5 + 0.99 * 0.25, abs=0.01)
    assert "rest_server_request_duration_seconds_bucket" in m["query"]
