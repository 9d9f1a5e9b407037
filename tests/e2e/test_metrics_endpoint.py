"""The operator's real /metrics endpoint while scenarios run (issue 7): the numbers move.

The operator is shared by the whole e2e session, so counters are compared before and after (never
as absolutes), and the per-phase gauge is compared with the Ready ModelDeployments the cluster
holds outside this test's namespace.
"""

from __future__ import annotations

import json

import pytest

from slipway import __version__
from tests.e2e.conftest import Driver, InClusterOperator, Operator
from tests.e2e.prom import Prometheus
from tests.e2e.test_canary import V2, analysis, canary, canary_md, paused_at, start, status
from tests.e2e.test_serving import sklearn

# a metric name no other test uses: its counters are this test's alone
METRIC = "metrics-endpoint-error-rate"


def ready_elsewhere(k: Driver) -> int:
    """Ready ModelDeployments of the cluster outside this test's namespace."""
    items = json.loads(k.cluster.kubectl("get", "md", "-A", "-o", "json").stdout)["items"]
    return sum(
        1
        for md in items
        if md["metadata"]["namespace"] != k.ns and (md.get("status") or {}).get("phase") == "Ready"
    )


def ready_of_this_test(k: Driver, operator: Operator) -> int:
    return round(operator.metric("slipway_modeldeployments", phase="Ready") - ready_elsewhere(k))


def test_reconciles_writes_and_ready_count_move_with_the_modeldeployments(
    k: Driver, operator: Operator
) -> None:
    reconciles = operator.metric("slipway_reconcile_total")
    applies = operator.metric("slipway_api_writes_total", verb="apply")
    durations = operator.metric("slipway_reconcile_duration_seconds_count")

    k.apply(sklearn("iris-a", replicas=1))
    k.apply(sklearn("iris-b", replicas=1))
    k.wait_phase("iris-a", "Ready")
    k.wait_phase("iris-b", "Ready")

    k.wait("the Ready gauge to count both", lambda: ready_of_this_test(k, operator) == 2)
    assert operator.metric("slipway_reconcile_total") > reconciles
    assert operator.metric("slipway_reconcile_duration_seconds_count") > durations
    # a Deployment and two Services each, at least
    assert operator.metric("slipway_api_writes_total", verb="apply") >= applies + 6
    assert operator.metric("slipway_build_info", version=__version__) == 1

    k.cluster.kubectl("delete", "md", "iris-b", "-n", k.ns)

    k.wait("the Ready gauge to drop it", lambda: ready_of_this_test(k, operator) == 1)


def test_canary_weight_follows_the_steps_and_a_promotion_is_counted(
    k: Driver, operator: Operator
) -> None:
    start(k, canary_md(steps=[{"setWeight": 25}, {"pause": {}}]))
    promoted = operator.metric("slipway_rollouts_total", outcome="promoted")
    durations = operator.metric("slipway_rollout_duration_seconds_count", outcome="promoted")
    weight = {"namespace": k.ns, "name": "fraud"}
    assert operator.metric("slipway_canary_weight", **weight) == 0

    k.patch("md", "fraud", {"spec": V2})
    new = paused_at(k, 25)["revision"]
    k.wait(
        "the weight gauge at 25", lambda: operator.metric("slipway_canary_weight", **weight) == 25
    )
    k.plugin("promote", "fraud")
    k.wait("promotion", lambda: status(k)["stable"]["revision"] == new and not canary(k))

    k.wait(
        "the promotion counted",
        lambda: operator.metric("slipway_rollouts_total", outcome="promoted") == promoted + 1,
    )
    assert operator.metric("slipway_canary_weight", **weight) == 0
    assert (
        operator.metric("slipway_rollout_duration_seconds_count", outcome="promoted")
        == durations + 1
    )


def test_a_failed_analysis_counts_its_measurements_and_the_rollback(
    k: Driver,
    operator: Operator,
    prometheus: Prometheus,
) -> None:
    spec = analysis(prometheus)
    spec["metrics"][0]["name"] = METRIC
    start(k, canary_md(steps=[{"setWeight": 50}, {"pause": {"duration": "30s"}}], analysis=spec))
    rolled_back = operator.metric("slipway_rollouts_total", outcome="rolled_back")
    failed = operator.metric("slipway_analysis_measurements_total", metric=METRIC, verdict="Failed")

    k.patch("md", "fraud", {"spec": V2})
    revision = k.wait("a canary", lambda: canary(k).get("revision"))
    prometheus.exporter.set(k.ns, revision, rps=20, error_ratio=0.5)
    k.wait("RolledBack", lambda: status(k).get("phase") == "RolledBack", timeout=60)

    k.wait(
        "the rollback counted",
        lambda: operator.metric("slipway_rollouts_total", outcome="rolled_back") == rolled_back + 1,
    )
    assert (
        operator.metric("slipway_analysis_measurements_total", metric=METRIC, verdict="Failed")
        > failed
    )
    value = operator.metric(
        "slipway_analysis_measurement_value", namespace=k.ns, name="fraud", metric=METRIC
    )
    assert value == pytest.approx(0.5, abs=0.1)
    # the weight in effect: the rolled-back canary's Ready pods keep a share until they are gone
    k.wait(
        "the weight gauge at 0",
        lambda: operator.metric("slipway_canary_weight", namespace=k.ns, name="fraud") == 0,
    )


def test_garbage_collections_are_timed_and_the_long_lived_objects_frozen(
    k: Driver, operator: Operator
) -> None:
    """Once its watches have listed, the operator collects, then freezes what lives as long as
    it does out of the collector's full scans and says how many; that collection, and every one
    since, is timed. (Only the full collection before the freeze is sure to have happened: the
    collector runs when allocations outnumber frees, which an idle operator may never reach.)"""
    k.apply(sklearn("iris-gc", replicas=1))
    k.wait_phase("iris-gc", "Ready")
    assert operator.metric("slipway_gc_pause_seconds_count", generation="2") >= 1
    assert operator.metric("slipway_gc_pause_seconds_sum", generation="2") > 0
    if not isinstance(operator, InClusterOperator):  # whose log is its pod's
        assert "long-lived objects frozen out of the garbage collector's scans" in operator.log()
