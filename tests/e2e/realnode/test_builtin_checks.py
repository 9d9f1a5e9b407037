"""Built-in checks on real pods (issue 13): no PromQL in the ModelDeployment, `check: error-rate`
and `check: latency-p99`, measured from MLServer's own counters and histograms through a real
Prometheus (the real node's `pod_prometheus`, whose series carry the labels the scrape
relabelling gives: namespace, modeldeployment, revision).

The bad canary is the model that errors on part of its inputs (2.0.0-bad, a CategoricalNB refusing
the rows with a negative feature); the good one answers every row like stable does.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.realnode.conftest import PodPrometheus, RealDriver
from tests.e2e.realnode.load import Load
from tests.e2e.realnode.test_rollouts_counted import (  # noqa: F401  (load: a fixture)
    FAST,
    MIN_REQUESTS,
    deployed,
    finish,
    gone,
    load,
    new_version,
    record,
    stable_is,
)


def analysis(pod_prometheus: PodPrometheus, *metrics: dict[str, object]) -> dict[str, object]:
    return {
        "interval": "10s",
        "window": "30s",
        "failureLimit": 0,
        "minSamples": 20,
        "prometheus": {"address": pod_prometheus.address},
        "metrics": list(metrics),
    }


def test_a_canary_that_errs_is_rolled_back_by_the_built_in_error_rate_check(
    rk: RealDriver,
    load: Callable[[], Load],  # noqa: F811
    pod_prometheus: PodPrometheus,
) -> None:
    checks = analysis(pod_prometheus, {"check": "error-rate", "max": 0.05})
    steps = [{"setWeight": 25}, {"pause": {"duration": "5m"}}]
    deployed(rk, {"strategy": "Canary", "steps": steps, "analysis": checks, **FAST})
    generator = load()
    new_version(rk, "2.0.0-bad")
    md = rk.wait_phase("iris", "RolledBack", timeout=300)
    canary = md["status"]["canary"]["revision"]
    rk.wait("the canary pods to be gone", gone(rk, canary), timeout=120)
    result = finish(generator)
    failed = [m for m in md["status"]["analysis"]["measurements"] if m["verdict"] == "Failed"]
    # what the canary answered, as the load generator counted it: its own 500s among its answers
    errors = result.outcomes["http_500"]
    answered = errors + result.versions["2.0.0-bad"]
    record(
        "canary rolled back by check: error-rate",
        result,
        measured_error_rate=failed[-1]["value"] if failed else None,
        counted_error_rate=errors / answered if answered else None,
    )
    assert result.transport_failures == 0, (result.summary(), result.failures[:20])
    assert failed, md["status"]["analysis"]
    measured = failed[-1]
    assert "model_infer_request_failure_total" in measured["query"]
    assert f'revision="{canary}"' in measured["query"]
    assert measured["samples"] >= 20
    # the servers' own counters say what the load generator saw (one answer in ten or so fails),
    # or less: the measurement that rolls the canary back is the first one over max, and early in
    # a canary increase() cannot see what a failure series counted before its first scrape (a CI
    # run measured 0.054 where the load generator counted about 0.13); never more
    assert answered > 0
    assert 0.05 < measured["value"] <= errors / answered + 0.05, (measured, errors, answered)


def test_a_good_canary_is_promoted_by_built_in_checks_against_stable(
    rk: RealDriver,
    load: Callable[[], Load],  # noqa: F811
    pod_prometheus: PodPrometheus,
) -> None:
    checks = analysis(
        pod_prometheus,
        {"check": "error-rate", "maxIncreaseOverStable": 0.02},
        {"check": "latency-p99", "maxRatioToStable": 10},
    )
    steps = [{"setWeight": 25}, {"pause": {"duration": "20s"}}]
    stable = deployed(rk, {"strategy": "Canary", "steps": steps, "analysis": checks, **FAST})
    generator = load()
    new_version(rk, "1.1.0")
    rk.wait("1.1.0 to be promoted", stable_is(rk, "1.1.0"), timeout=300)
    result = finish(generator)
    record("canary promoted by built-in checks against stable", result)
    assert result.sent >= MIN_REQUESTS and result.failed == 0, result.summary()
    measurements = rk.md("iris")["status"]["analysis"]["measurements"]
    passed = {m["metric"]: m for m in measurements if m["verdict"] == "Successful"}
    assert set(passed) == {"error-rate", "latency-p99"}, measurements
    for m in passed.values():
        assert f'revision="{stable}"' in m["stableQuery"]
        assert m["stableValue"] is not None and m["stableSamples"] >= 20
    assert passed["error-rate"]["value"] == 0 and passed["error-rate"]["stableValue"] == 0
    # MLServer's REST histogram: both sides answer in well under a second on this node
    assert 0 < passed["latency-p99"]["value"] < 1 and 0 < passed["latency-p99"]["stableValue"] < 1
