"""The pure side of the benchmark: percentiles, metrics text, /proc parsing, the result table.

No cluster, no clock, no files: bench/run.py measures, this module turns numbers into figures.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

# What issue 6 asks for; `peak_rss_mb` is judged at N=1000, the others at any N.
TARGETS: dict[str, tuple[str, float]] = {
    "ratio_operator_over_floor": ("<=", 2.0),
    "idle_writes": ("<=", 0.0),
    "writes_per_object": ("<=", 8.0),
    "peak_rss_mb": ("<=", 250.0),
}
# The size at which the results file carries no suffix (`make bench`'s default).
DEFAULT_N = 200

K = TypeVar("K")

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION", "CREATE"})

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class RequestKey(NamedTuple):
    """One row of `apiserver_request_total`, summed over response codes and scopes."""

    verb: str
    group: str
    resource: str
    subresource: str

    def __str__(self) -> str:
        kind = f"{self.resource}.{self.group}" if self.group else self.resource
        return (
            f"{self.verb} {kind}/{self.subresource}" if self.subresource else f"{self.verb} {kind}"
        )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated linearly between the nearest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """count, p50, p95 and max of some durations (seconds, rounded to milliseconds)."""
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "max": round(max(values), 3),
    }


def _unescape(value: str) -> str:
    return value.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric `name` in Prometheus text exposition, with its labels."""
    samples: list[tuple[dict[str, str], float]] = []
    for line in text.splitlines():
        # a prefix test first: the apiserver's exposition is megabytes of other metrics
        if not line.startswith(name):
            continue
        match = _SAMPLE.match(line)
        if match is None or match.group(1) != name:
            continue
        labels = {k: _unescape(v) for k, v in _LABEL.findall(match.group(2) or "")}
        samples.append((labels, float(match.group(3))))
    return samples


def request_totals(text: str) -> dict[RequestKey, float]:
    """kube-apiserver's `apiserver_request_total`, by verb, group, resource and subresource."""
    totals: dict[RequestKey, float] = {}
    for labels, value in metric_samples(text, "apiserver_request_total"):
        key = RequestKey(
            labels.get("verb", ""),
            labels.get("group", ""),
            labels.get("resource", ""),
            labels.get("subresource", ""),
        )
        totals[key] = totals.get(key, 0.0) + value
    return totals


def counter_by(text: str, name: str, label: str) -> dict[str, float]:
    """A counter summed by one of its labels (`slipway_api_writes_total` by verb)."""
    result: dict[str, float] = {}
    for labels, value in metric_samples(text, name):
        key = labels.get(label, "")
        result[key] = result.get(key, 0.0) + value
    return result


def delta(before: Mapping[K, float], after: Mapping[K, float]) -> dict[K, float]:
    """What grew between two readings of the same counters (series that did not move dropped)."""
    grown = {key: value - before.get(key, 0.0) for key, value in after.items()}
    return {key: value for key, value in grown.items() if value}


def writes_only(requests: Mapping[RequestKey, float]) -> dict[RequestKey, float]:
    """The write requests among `apiserver_request_total` rows."""
    return {key: value for key, value in requests.items() if key.verb in WRITE_VERBS}


def for_resources(
    requests: Mapping[RequestKey, float], resources: Iterable[str]
) -> dict[str, float]:
    """Rows about `resources`, keyed by their text ("APPLY deployments.apps"), largest first."""
    wanted = set(resources)
    rows = [(str(key), value) for key, value in requests.items() if key.resource in wanted]
    return dict(sorted(rows, key=lambda row: (-row[1], row[0])))


def peak_rss_mb(proc_status: str) -> float:
    """VmHWM (the peak resident set) from /proc/<pid>/status, in MiB."""
    return _status_kib(proc_status, "VmHWM") / 1024


def rss_mb(proc_status: str) -> float:
    """VmRSS (the resident set now) from /proc/<pid>/status, in MiB."""
    return _status_kib(proc_status, "VmRSS") / 1024


def _status_kib(proc_status: str, field: str) -> float:
    for line in proc_status.splitlines():
        if line.startswith(f"{field}:"):
            return float(line.split()[1])
    raise ValueError(f"/proc status has no {field} line")


def cpu_seconds(proc_stat: str, ticks_per_second: int) -> float:
    """utime + stime from /proc/<pid>/stat, in seconds."""
    # the command name (field 2) is in parentheses and may hold spaces: count after its end
    fields = proc_stat[proc_stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / ticks_per_second


def host_cpu_jiffies(proc_stat: str) -> tuple[int, int]:
    """(busy, total) clock ticks of every CPU since boot, from the first line of /proc/stat."""
    fields = [int(x) for x in proc_stat.splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of the machine's CPU time that was busy between two /proc/stat readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def result_stem(day: dt.date, n: int) -> str:
    """`2026-11-26` for the default size, `2026-11-26-n1000` for any other."""
    return day.isoformat() if n == DEFAULT_N else f"{day.isoformat()}-n{n}"


def target_met(key: str, value: Any) -> bool | None:
    """Whether `value` meets the issue's target for `key` (None: no target or no value)."""
    if key not in TARGETS or not isinstance(value, int | float):
        return None
    op, bound = TARGETS[key]
    return bool(value <= bound) if op == "<=" else bool(value >= bound)


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
        return f"{text}{unit}"
    return f"{value}{unit}"


def _spread(summary: Mapping[str, Any] | None) -> str:
    if not summary or not summary.get("count"):
        return "n/a"
    return f"p50 {_fmt(summary.get('p50'), ' s')}, max {_fmt(summary.get('max'), ' s')}"


def _target_cell(key: str, value: Any) -> str:
    if key not in TARGETS:
        return ""
    op, bound = TARGETS[key]
    met = target_met(key, value)
    verdict = "" if met is None else (" ✅" if met else " ❌")
    return f"{op} {bound:g}{verdict}"


def markdown_table(result: Mapping[str, Any]) -> str:
    """The figures of one run as a Markdown table, with the machine it ran on."""
    ttr = result.get("time_to_ready_seconds") or {}
    floor_ttr = result.get("floor_time_to_ready_seconds") or {}
    rollout = result.get("rollout_seconds") or {}
    rollback = result.get("rollback_seconds") or {}
    writes = result.get("operator_writes_by_verb") or {}
    rows: list[tuple[str, str, str]] = [
        ("ModelDeployments (N)", _fmt(result.get("n")), ""),
        ("operator: all Ready", _fmt(result.get("operator_seconds"), " s"), ""),
        ("floor: same children, plain client", _fmt(result.get("floor_seconds"), " s"), ""),
        (
            "ratio operator / floor",
            _fmt(result.get("ratio_operator_over_floor")),
            _target_cell("ratio_operator_over_floor", result.get("ratio_operator_over_floor")),
        ),
        (
            "time to Ready per object (operator)",
            f"p50 {_fmt(ttr.get('p50'), ' s')}, p95 {_fmt(ttr.get('p95'), ' s')}",
            "",
        ),
        (
            "time to available per Deployment (floor)",
            f"p50 {_fmt(floor_ttr.get('p50'), ' s')}, p95 {_fmt(floor_ttr.get('p95'), ' s')}",
            "",
        ),
        (
            "operator writes per ModelDeployment",
            _fmt(result.get("writes_per_object")),
            _target_cell("writes_per_object", result.get("writes_per_object")),
        ),
        (
            "  by verb",
            ", ".join(
                f"{verb} {_fmt(count / max(1, result.get('n') or 1))}"
                for verb, count in sorted(writes.items())
            )
            or "n/a",
            "",
        ),
        (
            f"operator writes in {_fmt(result.get('idle_seconds'), ' s')} idle",
            _fmt(result.get("idle_writes")),
            _target_cell("idle_writes", result.get("idle_writes")),
        ),
        (
            "operator peak RSS",
            _fmt(result.get("peak_rss_mb"), " MiB"),
            _target_cell("peak_rss_mb", result.get("peak_rss_mb"))
            + (" (target at N=1000)" if result.get("n") != 1000 else ""),
        ),
        ("operator CPU to converge", _fmt(result.get("cpu_seconds"), " s"), ""),
        ("rollout, 1 ModelDeployment", _fmt(rollout.get("single"), " s"), ""),
        (f"rollout, {_fmt(rollout.get('n'))} at once", _spread(rollout.get("batch")), ""),
        ("failing canary to RolledBack, 1", _fmt(rollback.get("single"), " s"), ""),
        (
            f"failing canary to RolledBack, {_fmt(rollback.get('n'))} at once",
            _spread(rollback.get("batch")),
            "",
        ),
    ]
    lines = ["| measure | value | target |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {target} |" for name, value, target in rows]
    machine = result.get("machine") or {}
    lines.append("")
    lines.append(
        f"Machine: {machine.get('nproc')} CPUs ({machine.get('cpu_model')}), "
        f"{_fmt(machine.get('memory_mb'), ' MiB')} RAM, Python {machine.get('python')}, "
        f"Kubernetes {machine.get('kubernetes')}; ran {result.get('started_at')}."
    )
    return "\n".join(lines) + "\n"
