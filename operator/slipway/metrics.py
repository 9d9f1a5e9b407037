"""Prometheus metrics of the operator (prefix `slipway_`), served by `slipway run --metrics-port`.

Every metric lives on Slipway's own `CollectorRegistry` (`REGISTRY`), not on prometheus-client's
global one: tests build a fresh `SlipwayMetrics` per case and compare exact numbers, and nothing
that a library registers globally leaks into the operator's endpoint by accident. The process
and platform collectors are added to `REGISTRY` on purpose, so the endpoint still shows memory,
CPU and open files. The module-level functions (`observe_reconcile`, `record_rollout`, ...) write
to the default instance `METRICS`; the reconcile calls those.

Labels stay bounded: results, reasons, outcomes, phases and verdicts are closed sets (a value
outside them is a programming error and raises `ValueError`); per-object series carry only
namespace and name and are removed by `forget()` when the object is deleted; no label ever holds
a revision hash.
"""

from __future__ import annotations

import gc
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from threading import Lock
from time import perf_counter
from typing import Any, Final, Literal, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from slipway import __version__
from slipway.api.status import Phase, Verdict

ReconcileResult = Literal["ok", "requeue", "error"]
ErrorReason = Literal["conflict", "invalid_spec", "api_error", "unexpected"]
RolloutOutcome = Literal["promoted", "rolled_back", "aborted"]
WriteVerb = Literal["apply", "patch", "delete", "status", "metadata", "event"]
NotificationResult = Literal["sent", "failed", "dropped"]
EventResult = Literal["posted", "failed", "dropped"]
# why a key waits in the work queue: its children changed, a timer fell due or its last write is
# to be looked at again (progress), or the ModelDeployment itself changed (change)
QueueLane = Literal["progress", "change"]

RECONCILE_RESULTS: Final = frozenset(get_args(ReconcileResult))
ERROR_REASONS: Final = frozenset(get_args(ErrorReason))
ROLLOUT_OUTCOMES: Final = frozenset(get_args(RolloutOutcome))
WRITE_VERBS: Final = frozenset(get_args(WriteVerb))
NOTIFICATION_RESULTS: Final = frozenset(get_args(NotificationResult))
EVENT_RESULTS: Final = frozenset(get_args(EventResult))
QUEUE_LANES: Final = frozenset(get_args(QueueLane))
CONDITION_STATUSES: Final = ("True", "False", "Unknown")
PHASES: Final = tuple(phase.value for phase in Phase)
VERDICTS: Final = frozenset(verdict.value for verdict in Verdict)

# `*_created` series double every counter and histogram and nobody graphs them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# A reconcile is a few API calls: milliseconds to seconds.
RECONCILE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Time a key waits in the work queue: nothing when idle, minutes when thousands arrive at once.
QUEUE_WAIT_BUCKETS: Final = (
    *(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    *(5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
# A collection of the youngest objects takes microseconds; a full one, tens of milliseconds for
# every 100,000 objects it scans.
GC_PAUSE_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GC_GENERATIONS: Final = ("0", "1", "2")
# A rollout is a sequence of steps and pauses: minutes to a day.
ROLLOUT_BUCKETS: Final = (
    *(30.0, 60.0, 120.0, 300.0, 600.0, 900.0),
    *(1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0),
)


@dataclass(frozen=True)
class ObjectSeries:
    """The per-object state series of one ModelDeployment, read off the object itself."""

    phase: str | None = None
    conditions: Mapping[str, str] = field(default_factory=dict)  # type -> True|False|Unknown
    paused: str | None = None  # why its canary is paused (the Progressing condition's reason)
    thresholds: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (metric, bound)


def object_series(body: Mapping[str, Any]) -> ObjectSeries:
    """What the per-object series of a ModelDeployment say, from its spec and status.

    Pure. Condition types and statuses outside the closed sets are left out; thresholds are those
    of `spec.rollout.analysis.metrics` and of the evaluate steps' gates while a canary exists (the
    measurements are exported for as long), so a measurement always has its bound beside it.
    """
    status = body.get("status") or {}
    phase = status.get("phase")
    conditions: dict[str, str] = {}
    progressing_reason = None
    for c in status.get("conditions") or ():
        if c.get("status") not in CONDITION_STATUSES or not c.get("type"):
            continue
        conditions[str(c["type"])] = str(c["status"])
        if c["type"] == "Progressing":
            progressing_reason = c.get("reason")
    thresholds: dict[tuple[str, str], float] = {}
    if status.get("canary") is not None:
        rollout = (body.get("spec") or {}).get("rollout") or {}
        judged = [
            *((rollout.get("analysis") or {}).get("metrics") or ()),
            # the gates of evaluate steps, named as their measurements are
            *(
                {**gate, "name": gate.get("name") or gate.get("measure")}
                for step in rollout.get("steps") or ()
                for gate in (step.get("evaluate") or {}).get("gates") or ()
            ),
        ]
        for metric in judged:
            # a built-in check is named after itself (AnalysisMetric._named_after_the_check)
            name = metric.get("name") or metric.get("check")
            for bound in ("min", "max"):
                if name and metric.get(bound) is not None:
                    thresholds.setdefault((str(name), bound), float(metric[bound]))
    return ObjectSeries(
        phase=phase if phase in PHASES else None,
        conditions=conditions,
        paused=str(progressing_reason or "Paused") if phase == "Paused" else None,
        thresholds=thresholds,
    )


def object_families(
    objects: Iterable[tuple[tuple[str, str], ObjectSeries]],
) -> list[GaugeMetricFamily]:
    """The per-object series of ModelDeployments ((namespace, name), series) as metric families."""
    phase = GaugeMetricFamily(
        "slipway_modeldeployment_phase",
        "1 for the status.phase a ModelDeployment is in, 0 for every other phase.",
        labels=["namespace", "name", "phase"],
    )
    condition = GaugeMetricFamily(
        "slipway_modeldeployment_condition",
        "1 for the status (True, False, Unknown) each condition of a ModelDeployment has, "
        "0 for the other two.",
        labels=["namespace", "name", "type", "status"],
    )
    paused = GaugeMetricFamily(
        "slipway_rollout_paused",
        "1 while a ModelDeployment is Paused, by why (its Progressing reason: "
        "WaitingForPromotion, WaitingForApproval, RolloutPaused, AnalysisInconclusive).",
        labels=["namespace", "name", "reason"],
    )
    threshold = GaugeMetricFamily(
        "slipway_analysis_threshold",
        "The bound (min or max) an analysis metric of the canary of a ModelDeployment "
        "must keep, exported while a canary exists.",
        labels=["namespace", "name", "metric", "bound"],
    )
    for (namespace, name), series in objects:
        if series.phase is not None:
            for each in PHASES:
                phase.add_metric([namespace, name, each], int(each == series.phase))
        for type_, status in series.conditions.items():
            for each in CONDITION_STATUSES:
                condition.add_metric([namespace, name, type_, each], int(each == status))
        if series.paused is not None:
            paused.add_metric([namespace, name, series.paused], 1)
        for (metric, bound), value in series.thresholds.items():
            threshold.add_metric([namespace, name, metric, bound], value)
    return [phase, condition, paused, threshold]


def _require(value: str, allowed: Collection[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {sorted(allowed)}, got {value!r}")
    return value


class SlipwayMetrics:
    """Every Slipway metric, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._lock = Lock()
        self._phases: dict[tuple[str, str], str] = {}
        self._measured: dict[tuple[str, str], set[str]] = {}
        self._objects: dict[tuple[str, str], ObjectSeries] = {}

        self.reconcile_total = Counter(
            "slipway_reconcile_total",
            "Reconciles of a ModelDeployment, by result (ok, requeue, error).",
            ["result"],
            registry=registry,
        )
        self.reconcile_duration = Histogram(
            "slipway_reconcile_duration_seconds",
            "Time one reconcile took, from reading state to patching status.",
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "slipway_reconcile_errors_total",
            "Reconciles that failed, by reason (conflict, invalid_spec, api_error, unexpected).",
            ["reason"],
            registry=registry,
        )
        self.modeldeployments = Gauge(
            "slipway_modeldeployments",
            "ModelDeployments this operator serves, by status.phase.",
            ["phase"],
            registry=registry,
        )
        self.canary_weight = Gauge(
            "slipway_canary_weight",
            "Percent of traffic the canary of a ModelDeployment gets now (0 without a canary).",
            ["namespace", "name"],
            registry=registry,
        )
        self.rollouts_total = Counter(
            "slipway_rollouts_total",
            "Canary rollouts finished, by outcome (promoted, rolled_back, aborted).",
            ["outcome"],
            registry=registry,
        )
        self.rollout_duration = Histogram(
            "slipway_rollout_duration_seconds",
            "Time from the start of a canary to its end, by outcome.",
            ["outcome"],
            buckets=ROLLOUT_BUCKETS,
            registry=registry,
        )
        self.measurement_value = Gauge(
            "slipway_analysis_measurement_value",
            "The last value an analysis metric measured for the canary of a ModelDeployment.",
            ["namespace", "name", "metric"],
            registry=registry,
        )
        self.measurements_total = Counter(
            "slipway_analysis_measurements_total",
            "Analysis measurements taken, by metric name and verdict.",
            ["metric", "verdict"],
            registry=registry,
        )
        self.api_writes = Counter(
            "slipway_api_writes_total",
            "Write requests the operator sent to the API server, by kind of write "
            "(apply, patch, delete, status, metadata, event). Idle, it stays flat.",
            ["verb"],
            registry=registry,
        )
        # read off self._objects at each scrape: Gauge children for every series would hold
        # 23 objects per ModelDeployment (80 MiB at 5,000 of them)
        registry.register(_ObjectSeriesCollector(self))
        self.gc_pauses = GcPauses()
        registry.register(self.gc_pauses)
        self.work_queue_depth = Gauge(
            "slipway_work_queue_depth",
            "ModelDeployments waiting in the work queue for a reconcile.",
            registry=registry,
        )
        self.work_queue_wait = Histogram(
            "slipway_work_queue_wait_seconds",
            "Time a ModelDeployment waited in the work queue before its reconcile started, by "
            "lane (progress: its children changed, a timer fell due, its last write is looked "
            "at again; change: the ModelDeployment itself changed). Progress is served first.",
            ["lane"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        )
        self.notifications_total = Counter(
            "slipway_notifications_total",
            "Notifications, by channel and result (sent; failed after the retries; dropped "
            "because the queue was full).",
            ["channel", "result"],
            registry=registry,
        )
        self.events_total = Counter(
            "slipway_events_total",
            "Kubernetes Events the operator recorded, by result (posted; failed: the API server "
            "refused it or did not answer; dropped: 1,000 waited to be posted already, or the "
            "operator was stopping).",
            ["result"],
            registry=registry,
        )
        self.build_info = Info(
            "slipway_build",
            "The running Slipway's version (the value is always 1).",
            registry=registry,
        )
        self.build_info.info({"version": __version__})
        self.set_phase_counts({})

    def observe_reconcile(self, result: ReconcileResult, seconds: float) -> None:
        """Count one finished reconcile and how long it took."""
        self.reconcile_total.labels(_require(result, RECONCILE_RESULTS, "result")).inc()
        self.reconcile_duration.observe(seconds)

    def record_reconcile_error(self, reason: ErrorReason) -> None:
        """Count one failed reconcile by why it failed."""
        self.reconcile_errors.labels(_require(reason, ERROR_REASONS, "reason")).inc()

    def record_write(self, verb: WriteVerb) -> None:
        """Count one write request sent to the API server."""
        self.api_writes.labels(_require(verb, WRITE_VERBS, "verb")).inc()

    def set_phase_counts(self, counts: Mapping[str, int]) -> None:
        """Replace the per-phase counts; every phase is exported, the missing ones as 0."""
        for phase in counts:
            _require(phase, PHASES, "phase")
        for phase in PHASES:
            self.modeldeployments.labels(phase).set(counts.get(phase, 0))

    def track_phase(self, namespace: str, name: str, phase: str) -> None:
        """Note the phase of one ModelDeployment and re-export the per-phase counts."""
        _require(phase, PHASES, "phase")
        with self._lock:
            self._phases[(namespace, name)] = phase
            self._export_phases()

    def set_canary_weight(self, namespace: str, name: str, weight: int) -> None:
        """Export the canary's share of traffic (percent) for one ModelDeployment."""
        if not 0 <= weight <= 100:
            raise ValueError(f"canary weight must be between 0 and 100, got {weight}")
        self.canary_weight.labels(namespace, name).set(weight)

    def record_rollout(self, outcome: RolloutOutcome, seconds: float) -> None:
        """Count one finished rollout and how long it ran."""
        _require(outcome, ROLLOUT_OUTCOMES, "outcome")
        self.rollouts_total.labels(outcome).inc()
        self.rollout_duration.labels(outcome).observe(seconds)

    def record_measurement(
        self, namespace: str, name: str, metric: str, value: float | None, verdict: str
    ) -> None:
        """Count one measurement by verdict and export its value (no value: no series)."""
        self.measurements_total.labels(metric, _require(verdict, VERDICTS, "verdict")).inc()
        with self._lock:
            if value is None:
                self._remove_measurement(namespace, name, metric)
                return
            self.measurement_value.labels(namespace, name, metric).set(value)
            self._measured.setdefault((namespace, name), set()).add(metric)

    def clear_measurements(self, namespace: str, name: str) -> None:
        """Drop the measurement values of one ModelDeployment (its rollout ended)."""
        with self._lock:
            for metric in sorted(self._measured.pop((namespace, name), set())):
                self.measurement_value.remove(namespace, name, metric)

    def forget(self, namespace: str, name: str) -> None:
        """Remove every series of a deleted ModelDeployment and its share of the phase counts."""
        self.clear_measurements(namespace, name)
        with self._lock:
            if self._phases.pop((namespace, name), None) is not None:
                self._export_phases()
        self.canary_weight.remove(namespace, name)  # a no-op when it never had a canary
        with self._lock:
            self._objects.pop((namespace, name), None)

    def export_object(self, body: Mapping[str, Any]) -> None:
        """Export the per-object series of a ModelDeployment as it is now (a watch event)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        new = object_series(body)
        with self._lock:
            self._objects[key] = new

    def object_families(self) -> list[GaugeMetricFamily]:
        """The per-object series of every ModelDeployment, as a scrape sees them now."""
        with self._lock:
            objects = sorted(self._objects.items())
        return object_families(objects)

    def watch_work_queue(self, depth: Callable[[], int]) -> None:
        """Export the work queue's depth, read at every scrape."""
        self.work_queue_depth.set_function(lambda: float(depth()))

    def observe_queue_wait(self, lane: QueueLane, seconds: float) -> None:
        """Note how long a key waited in the work queue before its reconcile started."""
        self.work_queue_wait.labels(_require(lane, QUEUE_LANES, "lane")).observe(seconds)

    def record_notification(self, channel: str, result: NotificationResult) -> None:
        """Count one notification by channel (a configured name) and result."""
        self.notifications_total.labels(
            channel, _require(result, NOTIFICATION_RESULTS, "result")
        ).inc()

    def record_event(self, result: EventResult) -> None:
        """Count one Event the operator meant to post, by what became of it."""
        self.events_total.labels(_require(result, EVENT_RESULTS, "result")).inc()

    def exposition(self) -> str:
        """The text a scrape of the metrics endpoint returns."""
        return generate_latest(self.registry).decode()

    def _export_phases(self) -> None:
        counts: dict[str, int] = {}
        for phase in self._phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        self.set_phase_counts(counts)

    def _remove_measurement(self, namespace: str, name: str, metric: str) -> None:
        metrics = self._measured.get((namespace, name), set())
        if metric in metrics:
            metrics.discard(metric)
            self.measurement_value.remove(namespace, name, metric)


class _ObjectSeriesCollector(Collector):
    """The per-object series of `SlipwayMetrics`, built at each scrape."""

    def __init__(self, metrics: SlipwayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics.object_families()

    def describe(self) -> Iterable[Metric]:
        return object_families(())


class GcPauses(Collector):
    """`slipway_gc_pause_seconds`: how long each garbage collection held every thread.

    A `gc.callbacks` entry (`watch_gc`). The collector runs in whichever thread allocated last,
    in the middle of any code, so this takes no lock (prometheus-client's metrics do, and a
    collection inside one of their locked sections would wait on itself forever): collections
    never overlap and hold the interpreter lock, so plain counters are enough, read at scrape.
    """

    def __init__(self) -> None:
        self._started = 0.0
        # per generation: counts per bucket (the last one +Inf), not cumulative; and the sum
        self._counts = {g: [0] * (len(GC_PAUSE_BUCKETS) + 1) for g in GC_GENERATIONS}
        self._sums = dict.fromkeys(GC_GENERATIONS, 0.0)

    def __call__(self, phase: str, info: Mapping[str, Any]) -> None:
        if phase == "start":
            self._started = perf_counter()
            return
        if not self._started:
            return  # installed in the middle of a collection
        pause = perf_counter() - self._started
        self._started = 0.0
        generation = str(info.get("generation"))
        if generation in self._counts:
            self._counts[generation][bisect_left(GC_PAUSE_BUCKETS, pause)] += 1
            self._sums[generation] += pause

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(
            "slipway_gc_pause_seconds",
            "Time the interpreter's garbage collector held every thread of the operator, by the "
            "oldest generation it collected (0, 1, 2; a collection of 2 scans every object not "
            "frozen once the watches had listed).",
            labels=["generation"],
        )
        bounds = [*(repr(b) for b in GC_PAUSE_BUCKETS), "+Inf"]
        for generation, counts in self._counts.items():
            cumulative = list(accumulate(counts))
            family.add_metric(
                [generation],
                buckets=list(zip(bounds, cumulative, strict=True)),
                sum_value=self._sums[generation],
            )
        return [family]

    def describe(self) -> Iterable[Metric]:
        return self.collect()


def _operator_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    # the same collectors prometheus-client puts on its global registry, on ours
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


REGISTRY: Final = _operator_registry()
METRICS: Final = SlipwayMetrics(REGISTRY)


def observe_reconcile(result: ReconcileResult, seconds: float) -> None:
    """Count one finished reconcile and how long it took."""
    METRICS.observe_reconcile(result, seconds)


def record_reconcile_error(reason: ErrorReason) -> None:
    """Count one failed reconcile by why it failed."""
    METRICS.record_reconcile_error(reason)


def record_write(verb: WriteVerb) -> None:
    """Count one write request sent to the API server."""
    METRICS.record_write(verb)


def set_phase_counts(counts: Mapping[str, int]) -> None:
    """Replace the per-phase counts of ModelDeployments."""
    METRICS.set_phase_counts(counts)


def track_phase(namespace: str, name: str, phase: str) -> None:
    """Note the phase of one ModelDeployment; the per-phase counts follow."""
    METRICS.track_phase(namespace, name, phase)


def set_canary_weight(namespace: str, name: str, weight: int) -> None:
    """Export the canary's share of traffic (percent) for one ModelDeployment."""
    METRICS.set_canary_weight(namespace, name, weight)


def record_rollout(outcome: RolloutOutcome, seconds: float) -> None:
    """Count one finished rollout and how long it ran."""
    METRICS.record_rollout(outcome, seconds)


def record_measurement(
    namespace: str, name: str, metric: str, value: float | None, verdict: str
) -> None:
    """Count one analysis measurement and export its value."""
    METRICS.record_measurement(namespace, name, metric, value, verdict)


def clear_measurements(namespace: str, name: str) -> None:
    """Drop the measurement values of one ModelDeployment (its rollout ended)."""
    METRICS.clear_measurements(namespace, name)


def forget(namespace: str, name: str) -> None:
    """Remove every series of a deleted ModelDeployment."""
    METRICS.forget(namespace, name)


def export_object(body: Mapping[str, Any]) -> None:
    """Export the per-object series of a ModelDeployment as it is now."""
    METRICS.export_object(body)


def watch_work_queue(depth: Callable[[], int]) -> None:
    """Export the work queue's depth, read at every scrape."""
    METRICS.watch_work_queue(depth)


def observe_queue_wait(lane: QueueLane, seconds: float) -> None:
    """Note how long a key waited in the work queue."""
    METRICS.observe_queue_wait(lane, seconds)


def watch_gc() -> None:
    """Time every garbage collection of this process from now on (`slipway_gc_pause_seconds`)."""
    if METRICS.gc_pauses not in gc.callbacks:
        gc.callbacks.append(METRICS.gc_pauses)


def record_notification(channel: str, result: NotificationResult) -> None:
    """Count one notification by channel and result."""
    METRICS.record_notification(channel, result)


def record_event(result: EventResult) -> None:
    """Count one Event by what became of it."""
    METRICS.record_event(result)


def start_metrics_server(
    port: int, addr: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY
) -> WSGIServer:
    """Serve `registry` on http://addr:port/metrics in a daemon thread; returns the server."""
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
