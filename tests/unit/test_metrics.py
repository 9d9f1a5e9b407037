"""Slipway's Prometheus metrics: the numbers move, labels stay bounded, the endpoint serves them."""

from __future__ import annotations

import gc
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any
from unittest import mock

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from slipway import __version__, metrics
from slipway.metrics import ObjectSeries, SlipwayMetrics, object_series

EVERY_METRIC = [
    "slipway_reconcile_total",
    "slipway_reconcile_duration_seconds",
    "slipway_reconcile_errors_total",
    "slipway_modeldeployments",
    "slipway_canary_weight",
    "slipway_rollouts_total",
    "slipway_rollout_duration_seconds",
    "slipway_analysis_measurement_value",
    "slipway_analysis_measurements_total",
    "slipway_modeldeployment_phase",
    "slipway_modeldeployment_condition",
    "slipway_rollout_paused",
    "slipway_analysis_threshold",
    "slipway_work_queue_depth",
    "slipway_work_queue_wait_seconds",
    "slipway_notifications_total",
    "slipway_events_total",
    "slipway_gc_pause_seconds",
    "slipway_build_info",
]


@pytest.fixture
def m() -> SlipwayMetrics:
    return SlipwayMetrics(CollectorRegistry())


def value(m: SlipwayMetrics, sample: str, /, **labels: str) -> float | None:
    return m.registry.get_sample_value(sample, labels)


def series(m: SlipwayMetrics, name: str) -> list[dict[str, str]]:
    """Label sets of every sample of one metric (histograms: their _count samples)."""
    return [
        sample.labels
        for family in text_string_to_metric_families(m.exposition())
        for sample in family.samples
        if sample.name in (name, f"{name}_count")
    ]


@pytest.mark.parametrize("result", ["ok", "requeue", "error"])
def test_each_reconcile_counts_once_under_its_result(m: SlipwayMetrics, result: str) -> None:
    m.observe_reconcile(result, 0.2)  # type: ignore[arg-type]
    m.observe_reconcile(result, 0.3)  # type: ignore[arg-type]

    assert value(m, "slipway_reconcile_total", result=result) == 2
    assert value(m, "slipway_reconcile_duration_seconds_count") == 2
    assert value(m, "slipway_reconcile_duration_seconds_sum") == pytest.approx(0.5)


def test_reconcile_duration_lands_in_the_right_bucket(m: SlipwayMetrics) -> None:
    m.observe_reconcile("ok", 0.07)

    assert value(m, "slipway_reconcile_duration_seconds_bucket", le="0.05") == 0
    assert value(m, "slipway_reconcile_duration_seconds_bucket", le="0.1") == 1


@pytest.mark.parametrize("reason", ["conflict", "invalid_spec", "api_error", "unexpected"])
def test_reconcile_errors_count_by_reason(m: SlipwayMetrics, reason: str) -> None:
    m.record_reconcile_error(reason)  # type: ignore[arg-type]

    assert value(m, "slipway_reconcile_errors_total", reason=reason) == 1


@pytest.mark.parametrize(
    ("record", "args", "message"),
    [
        ("observe_reconcile", ("failed", 1.0), "result must be one of"),
        ("record_reconcile_error", ("Conflict: 409 on deployments/fraud-5d8f",), "reason must be"),
        ("record_rollout", ("succeeded", 60.0), "outcome must be one of"),
        ("set_phase_counts", ({"Running": 1},), "phase must be one of"),
        ("track_phase", ("ml", "fraud", "ready"), "phase must be one of"),
        ("record_measurement", ("ml", "fraud", "error-rate", 0.1, "ok"), "verdict must be one of"),
        ("set_canary_weight", ("ml", "fraud", 120), "between 0 and 100"),
    ],
)
def test_a_label_value_outside_its_closed_set_is_refused(
    m: SlipwayMetrics, record: str, args: tuple[object, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        getattr(m, record)(*args)
    assert "Conflict: 409" not in m.exposition()


def test_every_phase_is_exported_even_at_zero(m: SlipwayMetrics) -> None:
    m.set_phase_counts({"Ready": 3, "Progressing": 1})

    assert value(m, "slipway_modeldeployments", phase="Ready") == 3
    assert value(m, "slipway_modeldeployments", phase="Progressing") == 1
    assert value(m, "slipway_modeldeployments", phase="RolledBack") == 0
    assert {s["phase"] for s in series(m, "slipway_modeldeployments")} == {
        "Pending",
        "Progressing",
        "Paused",
        "Ready",
        "Degraded",
        "RolledBack",
        "Failed",
    }


def test_set_phase_counts_replaces_the_previous_counts(m: SlipwayMetrics) -> None:
    m.set_phase_counts({"Ready": 3})
    m.set_phase_counts({"Degraded": 1})

    assert value(m, "slipway_modeldeployments", phase="Ready") == 0
    assert value(m, "slipway_modeldeployments", phase="Degraded") == 1


def test_tracked_phases_move_an_object_between_counts_and_forget_drops_it(
    m: SlipwayMetrics,
) -> None:
    m.track_phase("ml", "fraud", "Progressing")
    m.track_phase("ml", "churn", "Ready")
    m.track_phase("ml", "fraud", "Ready")
    assert value(m, "slipway_modeldeployments", phase="Ready") == 2
    assert value(m, "slipway_modeldeployments", phase="Progressing") == 0

    m.forget("ml", "fraud")

    assert value(m, "slipway_modeldeployments", phase="Ready") == 1


def test_canary_weight_follows_the_rollout_and_vanishes_with_the_object(
    m: SlipwayMetrics,
) -> None:
    m.set_canary_weight("ml", "fraud", 10)
    m.set_canary_weight("ml", "fraud", 50)
    m.set_canary_weight("ml", "churn", 0)
    assert value(m, "slipway_canary_weight", namespace="ml", name="fraud") == 50

    m.forget("ml", "fraud")

    assert series(m, "slipway_canary_weight") == [{"namespace": "ml", "name": "churn"}]


def test_forgetting_an_object_that_never_had_series_is_harmless(m: SlipwayMetrics) -> None:
    m.forget("ml", "never-seen")

    assert series(m, "slipway_canary_weight") == []


@pytest.mark.parametrize(
    ("outcome", "seconds", "bucket_below", "bucket_at"),
    [
        ("promoted", 250.0, "120.0", "300.0"),
        ("rolled_back", 45.0, "30.0", "60.0"),
        ("aborted", 5000.0, "3600.0", "7200.0"),
    ],
)
def test_a_finished_rollout_counts_by_outcome_with_its_duration(
    m: SlipwayMetrics, outcome: str, seconds: float, bucket_below: str, bucket_at: str
) -> None:
    m.record_rollout(outcome, seconds)  # type: ignore[arg-type]

    assert value(m, "slipway_rollouts_total", outcome=outcome) == 1
    assert value(m, "slipway_rollout_duration_seconds_sum", outcome=outcome) == seconds
    duration_bucket = "slipway_rollout_duration_seconds_bucket"
    assert value(m, duration_bucket, outcome=outcome, le=bucket_below) == 0
    assert value(m, duration_bucket, outcome=outcome, le=bucket_at) == 1


def test_measurements_export_the_last_value_and_count_every_verdict(m: SlipwayMetrics) -> None:
    m.record_measurement("ml", "fraud", "error-rate", 0.002, "Successful")
    m.record_measurement("ml", "fraud", "error-rate", 0.05, "Failed")
    m.record_measurement("ml", "fraud", "p99-latency", 0.3, "Inconclusive")

    measured = "slipway_analysis_measurement_value"
    assert value(m, measured, namespace="ml", name="fraud", metric="error-rate") == 0.05
    assert value(m, measured, namespace="ml", name="fraud", metric="p99-latency") == 0.3
    counted = "slipway_analysis_measurements_total"
    assert value(m, counted, metric="error-rate", verdict="Successful") == 1
    assert value(m, counted, metric="error-rate", verdict="Failed") == 1
    assert value(m, counted, metric="p99-latency", verdict="Inconclusive") == 1


def test_a_measurement_without_data_is_counted_but_removes_the_stale_value(
    m: SlipwayMetrics,
) -> None:
    m.record_measurement("ml", "fraud", "error-rate", 0.002, "Successful")
    m.record_measurement("ml", "fraud", "error-rate", None, "Error")

    assert series(m, "slipway_analysis_measurement_value") == []
    assert (
        value(m, "slipway_analysis_measurements_total", metric="error-rate", verdict="Error") == 1
    )


def test_clearing_measurements_keeps_other_objects_and_the_verdict_counts(
    m: SlipwayMetrics,
) -> None:
    m.record_measurement("ml", "fraud", "error-rate", 0.002, "Successful")
    m.record_measurement("ml", "churn", "error-rate", 0.001, "Successful")

    m.clear_measurements("ml", "fraud")

    assert [s["name"] for s in series(m, "slipway_analysis_measurement_value")] == ["churn"]
    counted = "slipway_analysis_measurements_total"
    assert value(m, counted, metric="error-rate", verdict="Successful") == 2


def test_build_info_carries_the_version(m: SlipwayMetrics) -> None:
    assert value(m, "slipway_build_info", version=__version__) == 1


def test_no_label_holds_a_revision_hash_or_any_unbounded_value(m: SlipwayMetrics) -> None:
    m.observe_reconcile("ok", 0.1)
    m.record_reconcile_error("conflict")
    m.track_phase("ml", "fraud", "Progressing")
    m.set_canary_weight("ml", "fraud", 10)
    m.record_rollout("promoted", 600)
    m.record_measurement("ml", "fraud", "error-rate", 0.002, "Successful")
    m.export_object(md("Paused", reason="AnalysisInconclusive", analysis=True))
    m.record_notification("ml-team", "sent")

    label_names = {
        label
        for family in text_string_to_metric_families(m.exposition())
        if family.name.startswith("slipway_")
        for sample in family.samples
        for label in sample.labels
    }

    allowed = {"result", "reason", "phase", "namespace", "name", "outcome", "metric", "verdict"}
    allowed |= {"type", "status", "bound", "channel", "generation"}
    assert label_names == allowed | {"le", "version"}
    generations = {
        sample.labels["generation"]
        for family in text_string_to_metric_families(m.exposition())
        for sample in family.samples
        if "generation" in sample.labels
    }
    assert generations == {"0", "1", "2"}


def test_the_exposition_names_every_metric_before_anything_happened(m: SlipwayMetrics) -> None:
    text = m.exposition()

    for name in EVERY_METRIC:
        assert f"# HELP {name} " in text, name
    assert "_created" not in text


def test_the_default_registry_also_exports_process_metrics() -> None:
    text = metrics.METRICS.exposition()

    assert "slipway_build_info" in text
    assert "process_cpu_seconds_total" in text or "python_info" in text


def md(
    phase: str | None,
    reason: str = "Stable",
    *,
    analysis: bool = False,
    canary: bool = True,
    name: str = "fraud",
) -> dict[str, object]:
    """A ModelDeployment as a watch event brings it: phase, a Progressing reason, a canary."""
    status: dict[str, object] = {}
    if phase is not None:
        status = {
            "phase": phase,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Serving"},
                {"type": "Progressing", "status": "True", "reason": reason},
            ],
        }
        if canary:
            status["canary"] = {"revision": "9ab1c0de77", "weight": 25}
    rollout: dict[str, object] = {"strategy": "Canary"}
    if analysis:
        rollout["analysis"] = {
            "metrics": [
                {"name": "error-rate", "query": "q", "max": 0.01},
                {"name": "throughput", "query": "q", "min": 5, "max": 500},
            ]
        }
    return {
        "metadata": {"namespace": "ml", "name": name},
        "spec": {"rollout": rollout},
        "status": status,
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (md(None), ObjectSeries()),
        (
            md("Progressing", "CanaryProgressing"),
            ObjectSeries("Progressing", {"Ready": "True", "Progressing": "True"}),
        ),
        (
            md("Paused", "WaitingForPromotion"),
            ObjectSeries("Paused", {"Ready": "True", "Progressing": "True"}, "WaitingForPromotion"),
        ),
        (
            md("Paused", "AnalysisInconclusive", analysis=True),
            ObjectSeries(
                "Paused",
                {"Ready": "True", "Progressing": "True"},
                "AnalysisInconclusive",
                {("error-rate", "max"): 0.01, ("throughput", "min"): 5, ("throughput", "max"): 500},
            ),
        ),
        # thresholds only while a canary exists: its measurements are exported as long
        (
            md("Ready", analysis=True, canary=False),
            ObjectSeries("Ready", {"Ready": "True", "Progressing": "True"}),
        ),
        (
            {"metadata": {}, "status": {"phase": "Hibernating", "conditions": [{"type": "X"}]}},
            ObjectSeries(),
        ),
    ],
    ids=["no-status", "progressing", "waiting", "inconclusive", "ready", "unknown-phase"],
)
def test_object_series_read_phase_conditions_pause_and_thresholds_off_the_object(
    body: dict[str, object], expected: ObjectSeries
) -> None:
    assert object_series(body) == expected


def test_the_gates_of_evaluate_steps_are_thresholds_too_named_as_their_measurements() -> None:
    body: dict[str, Any] = md("Progressing", "CanaryProgressing", analysis=True)
    gates = [
        {"measure": "agreement", "min": 0.95},
        {"measure": "latency-p99", "name": "p99", "max": 0.5},
        {"measure": "error-rate", "max": 0.2},
    ]
    body["spec"]["rollout"]["steps"] = [
        {"evaluate": {"data": {"uri": "s3://eval/x.jsonl"}, "gates": gates}},
        {"setWeight": 50},
    ]
    assert object_series(body).thresholds == {
        ("error-rate", "max"): 0.01,  # the analysis metric's, named alike, is kept
        ("throughput", "min"): 5,
        ("throughput", "max"): 500,
        ("agreement", "min"): 0.95,
        ("p99", "max"): 0.5,
    }


def test_per_object_series_follow_the_object_and_go_with_it(m: SlipwayMetrics) -> None:
    m.export_object(md("Paused", "AnalysisInconclusive", analysis=True))
    fraud = {"namespace": "ml", "name": "fraud"}
    assert value(m, "slipway_modeldeployment_phase", **fraud, phase="Paused") == 1
    assert value(m, "slipway_modeldeployment_phase", **fraud, phase="Ready") == 0
    assert value(m, "slipway_modeldeployment_condition", **fraud, type="Ready", status="True") == 1
    assert value(m, "slipway_modeldeployment_condition", **fraud, type="Ready", status="False") == 0
    assert value(m, "slipway_rollout_paused", **fraud, reason="AnalysisInconclusive") == 1
    assert value(m, "slipway_analysis_threshold", **fraud, metric="throughput", bound="min") == 5

    m.export_object(md("Ready", analysis=True, canary=False))

    assert value(m, "slipway_modeldeployment_phase", **fraud, phase="Paused") == 0
    assert value(m, "slipway_modeldeployment_phase", **fraud, phase="Ready") == 1
    assert series(m, "slipway_rollout_paused") == []
    assert series(m, "slipway_analysis_threshold") == []

    m.forget("ml", "fraud")

    for name in ("slipway_modeldeployment_phase", "slipway_modeldeployment_condition"):
        assert series(m, name) == [], name


def test_per_object_series_of_one_object_leave_the_others_alone(m: SlipwayMetrics) -> None:
    m.export_object(md("Paused", "WaitingForPromotion", name="fraud"))
    m.export_object(md("Paused", "RolloutPaused", name="churn"))

    m.forget("ml", "fraud")

    assert series(m, "slipway_rollout_paused") == [
        {"namespace": "ml", "name": "churn", "reason": "RolloutPaused"}
    ]


def test_the_work_queue_depth_is_read_at_each_scrape(m: SlipwayMetrics) -> None:
    depth = [3]
    m.watch_work_queue(lambda: depth[0])
    assert value(m, "slipway_work_queue_depth") == 3

    depth[0] = 0

    assert value(m, "slipway_work_queue_depth") == 0


def test_events_count_by_result(m: SlipwayMetrics) -> None:
    m.record_event("posted")
    m.record_event("dropped")

    assert value(m, "slipway_events_total", result="posted") == 1
    assert value(m, "slipway_events_total", result="dropped") == 1
    with pytest.raises(ValueError, match="result must be one of"):
        m.record_event("lost")  # type: ignore[arg-type]


def test_notifications_count_by_channel_and_result(m: SlipwayMetrics) -> None:
    m.record_notification("ml-team", "sent")
    m.record_notification("ml-team", "dropped")
    m.record_notification("ml-team", "dropped")

    assert value(m, "slipway_notifications_total", channel="ml-team", result="sent") == 1
    assert value(m, "slipway_notifications_total", channel="ml-team", result="dropped") == 2
    with pytest.raises(ValueError, match="result must be one of"):
        m.record_notification("ml-team", "lost")  # type: ignore[arg-type]


@pytest.fixture
def served() -> Iterator[tuple[SlipwayMetrics, str]]:
    m = SlipwayMetrics(CollectorRegistry())
    server = metrics.start_metrics_server(0, addr="127.0.0.1", registry=m.registry)
    yield m, f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()


def test_the_metrics_server_serves_numbers_that_move(
    served: tuple[SlipwayMetrics, str],
) -> None:
    m, url = served

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    before = scrape()
    m.observe_reconcile("ok", 0.01)
    m.record_rollout("rolled_back", 90)
    after = scrape()

    assert 'slipway_reconcile_total{result="ok"} 1.0' not in before
    assert 'slipway_reconcile_total{result="ok"} 1.0' in after
    assert 'slipway_rollouts_total{outcome="rolled_back"} 1.0' in after
    for name in EVERY_METRIC:
        assert name in after, name


def test_a_built_in_check_without_a_name_exports_its_threshold_under_the_checks_name() -> None:
    body = {
        "metadata": {"namespace": "ml", "name": "fraud"},
        "spec": {"rollout": {"analysis": {"metrics": [{"check": "error-rate", "max": 0.05}]}}},
        "status": {"phase": "Progressing", "canary": {"revision": "abc"}},
    }
    assert object_series(body).thresholds == {("error-rate", "max"): 0.05}


def test_queue_waits_are_counted_by_lane_and_the_lanes_are_a_closed_set(m: SlipwayMetrics) -> None:
    m.observe_queue_wait("progress", 0.02)
    m.observe_queue_wait("change", 12.0)
    m.observe_queue_wait("change", 40.0)

    assert value(m, "slipway_work_queue_wait_seconds_count", lane="change") == 2
    assert value(m, "slipway_work_queue_wait_seconds_bucket", lane="change", le="30.0") == 1
    with pytest.raises(ValueError):
        m.observe_queue_wait("urgent", 1.0)  # type: ignore[arg-type]


def test_gc_pauses_are_timed_by_generation_into_cumulative_buckets(m: SlipwayMetrics) -> None:
    """The callback is driven by hand here (start/stop pairs as `gc` sends them), so the pause
    lands in a known bucket; the next test lets the real collector drive it."""
    clock = iter([10.0, 10.003, 20.0, 20.2])
    with mock.patch("slipway.metrics.perf_counter", lambda: next(clock)):
        m.gc_pauses("start", {"generation": 0})
        m.gc_pauses("stop", {"generation": 0, "collected": 0, "uncollectable": 0})
        m.gc_pauses("start", {"generation": 2})
        m.gc_pauses("stop", {"generation": 2, "collected": 5, "uncollectable": 0})
    assert value(m, "slipway_gc_pause_seconds_count", generation="0") == 1
    assert value(m, "slipway_gc_pause_seconds_bucket", generation="0", le="0.0025") == 0
    assert value(m, "slipway_gc_pause_seconds_bucket", generation="0", le="0.005") == 1
    assert value(m, "slipway_gc_pause_seconds_bucket", generation="0", le="+Inf") == 1
    assert value(m, "slipway_gc_pause_seconds_sum", generation="0") == pytest.approx(0.003)
    assert value(m, "slipway_gc_pause_seconds_bucket", generation="2", le="0.1") == 0
    assert value(m, "slipway_gc_pause_seconds_bucket", generation="2", le="0.25") == 1
    assert value(m, "slipway_gc_pause_seconds_sum", generation="2") == pytest.approx(0.2)
    assert value(m, "slipway_gc_pause_seconds_count", generation="1") == 0
    # a stop without its start (installed in the middle of a collection) counts nothing
    m.gc_pauses("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
    assert value(m, "slipway_gc_pause_seconds_count", generation="1") == 0


def test_real_collections_are_counted_even_inside_a_scrape(m: SlipwayMetrics) -> None:
    """The collector runs wherever an allocation triggers it, also inside prometheus-client's
    locked sections (a scrape, a `labels()` call); the callback must then neither wait on a lock
    nor fail. Collections are forced there with the callback installed, in a thread: a callback
    that took one of those locks would hang it, and the join's timeout fails the test."""

    class Collecting(Collector):
        def collect(self) -> Iterable[Metric]:
            gc.collect()
            return []

    m.registry.register(Collecting())
    done = threading.Event()

    def collect_everywhere() -> None:
        gc.collect()
        m.exposition()
        with m.work_queue_wait._lock:  # what `labels()` holds while it adds a child
            gc.collect(1)
        done.set()

    gc.callbacks.append(m.gc_pauses)
    try:
        thread = threading.Thread(target=collect_everywhere, daemon=True)
        thread.start()
        thread.join(timeout=30)
    finally:
        gc.callbacks.remove(m.gc_pauses)
    assert done.is_set()
    assert value(m, "slipway_gc_pause_seconds_count", generation="2") == 2
    assert value(m, "slipway_gc_pause_seconds_count", generation="1") == 1
    assert (value(m, "slipway_gc_pause_seconds_sum", generation="2") or 0) > 0


def test_watch_gc_installs_one_callback_however_often_it_is_called() -> None:
    from slipway import metrics

    before = list(gc.callbacks)
    try:
        metrics.watch_gc()
        metrics.watch_gc()
        assert gc.callbacks.count(metrics.METRICS.gc_pauses) == 1
    finally:
        gc.callbacks[:] = before
