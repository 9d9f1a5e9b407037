"""The pure side of the benchmark: percentiles, metrics text, /proc parsing, the result table.

No cluster, no clock, no files: bench/run.py measures, this module turns numbers into figures.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

# What issue 16 asks for; `peak_rss_mb` is judged at N=5000 (the largest size), the others at
# any N. Ratios are the operator's figure over its floor's, measured in the same run.
TARGETS: dict[str, tuple[str, float]] = {
    "ratio_operator_over_floor": ("<=", 1.25),
    "rollout_ratio": ("<=", 1.25),
    "rollback_ratio": ("<=", 1.25),
    "time_to_ready_p50_share": ("<=", 0.25),
    "idle_writes": ("<=", 0.0),
    "writes_per_object": ("<=", 5.0),
    "peak_rss_mb": ("<=", 250.0),
}
RSS_TARGET_N = 5000
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
    """count, p50, p95, p99 and max of some durations (seconds, rounded to milliseconds)."""
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3),
    }


def repeated_statuses(
    changes: Mapping[str, Sequence[tuple[float, str | None]]],
) -> dict[str, Any]:
    """Which objects had their status written more than once, and what the first write said.

    `changes` holds, per object, each status it was seen with (seconds after it was first seen,
    its `status.ready`). A first status with no Ready pod was written when its wait for its pods
    ran out; one with some Ready is the record that protects a partly Ready revision.
    """
    repeated = {name: seen for name, seen in changes.items() if len(seen) > 1}
    firsts = [seen[0] for seen in repeated.values()]
    ready = Counter(str(said) for _, said in firsts)
    return {
        "with_a_status": sum(1 for seen in changes.values() if seen),
        "objects": len(repeated),
        "writes": sum(len(seen) for seen in repeated.values()),
        "first_ready": dict(sorted(ready.items())),
        "first_after_seen_seconds": summarize([after for after, _ in firsts]),
        "examples": sorted(repeated)[:5],
    }


def ratio(value: Any, floor: Any) -> float | None:
    """value / floor, when both are there (and the floor is not zero)."""
    if not isinstance(value, int | float) or not isinstance(floor, int | float) or not floor:
        return None
    return round(value / floor, 3)


def paired_summary(rounds: Sequence[Mapping[str, Any]], n: int) -> dict[str, Any]:
    """The paired rollbacks' rounds (each: who went `first`, the `operator`'s and the `floor`'s
    summaries), each with its ratio of p50s, and the median, least and most of those ratios."""
    timed = [
        {**r, "ratio": ratio(_seconds(r.get("operator"), "p50"), _seconds(r.get("floor"), "p50"))}
        for r in rounds
    ]
    ratios = [r["ratio"] for r in timed if r["ratio"] is not None]
    return {
        "n": n,
        "rounds": timed,
        "ratio_median": round(percentile(ratios, 50), 3) if ratios else None,
        "ratio_min": min(ratios) if ratios else None,
        "ratio_max": max(ratios) if ratios else None,
    }


def histogram_buckets(text: str, name: str, label: str) -> dict[str, dict[float, float]]:
    """The cumulative buckets of histogram `name` (le -> count), by one of its labels."""
    found: dict[str, dict[float, float]] = {}
    for labels, value in metric_samples(text, f"{name}_bucket"):
        le = labels.get("le", "")
        bound = math.inf if le == "+Inf" else float(le)
        found.setdefault(labels.get(label, ""), {})[bound] = value
    return found


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus's histogram_quantile over cumulative buckets: linear within the bucket."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # as Prometheus does: the highest finite bound
            inside = count - lower_count
            share = (rank - lower_count) / inside if inside else 0.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return None


def wait_summary(
    before: Mapping[str, Mapping[float, float]], after: Mapping[str, Mapping[float, float]]
) -> dict[str, dict[str, float | None]]:
    """Per lane: how many keys waited in the work queue between two scrapes, p50 and p99."""
    summary: dict[str, dict[str, float | None]] = {}
    for lane, buckets in sorted(after.items()):
        grown = {le: count - before.get(lane, {}).get(le, 0.0) for le, count in buckets.items()}
        count = max(grown.values(), default=0.0)
        if not count:
            continue
        p50, p99 = histogram_quantile(0.5, grown), histogram_quantile(0.99, grown)
        summary[lane] = {
            "count": count,
            "p50": None if p50 is None else round(p50, 3),
            "p99": None if p99 is None else round(p99, 3),
        }
    return summary


def add_grown(
    into: dict[str, dict[float, float]],
    before: Mapping[str, Mapping[float, float]],
    after: Mapping[str, Mapping[float, float]],
) -> None:
    """Add what each histogram's cumulative buckets grew by between two scrapes to `into`."""
    for key, buckets in after.items():
        sums = into.setdefault(key, {})
        for le, count in buckets.items():
            sums[le] = sums.get(le, 0.0) + count - before.get(key, {}).get(le, 0.0)


# frames where a thread waits rather than computes: left out of a CPU profile's shares
IDLE_FRAMES = (
    "select (selectors.py",
    "SSLSocket.read (",
    "SSLSocket.recv_into (",
    "SSLObject.read (",
    "do_poll (",
    "wait (threading.py",
    "_worker (concurrent/futures/thread.py",
    "readinto (socket.py",
)


def profile_top(collapsed: str, top: int = 15) -> dict[str, Any]:
    """The busiest functions of a py-spy profile (collapsed stacks, `--format raw`): by own
    samples and by samples beneath them, as shares of the samples where a thread computed."""
    own: dict[str, float] = {}
    under: dict[str, float] = {}
    busy = idle = 0.0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = float(count_text)
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        if any(marker in frames[-1] for marker in IDLE_FRAMES):
            idle += count
            continue
        busy += count
        own[frames[-1]] = own.get(frames[-1], 0.0) + count
        for frame in set(frames):
            under[frame] = under.get(frame, 0.0) + count

    def table(counts: Mapping[str, float]) -> list[tuple[str, float]]:
        rows = sorted(counts.items(), key=lambda row: (-row[1], row[0]))[:top]
        return [(frame, round(100 * count / busy, 1)) for frame, count in rows]

    # frames that sit under nearly everything (the thread's and the loop's own) say nothing
    deep = {f: c for f, c in under.items() if not busy or c / busy < 0.9}
    return {"busy_samples": busy, "idle_samples": idle, "self": table(own), "total": table(deep)}


def interpreter_held(top: Mapping[str, Any], rate: int, seconds: float) -> float:
    """The share of a `--gil` profile's window in which a thread held the interpreter: py-spy
    records a sample only then, so every sample counts (waiting frames too), over all it took."""
    samples = float(top.get("busy_samples", 0.0)) + float(top.get("idle_samples", 0.0))
    return round(samples / (rate * seconds), 3)


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


def gc_summary(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """What the operator's garbage collections added between two `gc_pauses` readings."""
    return {key: round(after.get(key, 0.0) - before.get(key, 0.0), 4) for key in after}


def work_done(
    before: Mapping[str, float], after: Mapping[str, float], n: int, rounds: int = 1
) -> dict[str, float]:
    """The operator's work between two `work` readings (`before` empty: `after` is what it
    did), over `rounds` batches of `n` ModelDeployments: reconciles and writes per object, and
    CPU seconds per batch."""
    grown = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    objects = n * rounds

    def per(key: str, count: int) -> float:
        return round(grown.get(key, 0.0) / count, 2) if count else 0.0

    return {
        "reconciles_per_object": per("reconciles", objects),
        "writes_per_object": per("writes", objects),
        "cpu_seconds": per("cpu_seconds", rounds),
    }


def _work_cell(work: Mapping[str, float] | None) -> str | None:
    if not work:
        return None
    return (
        f"{_fmt(work.get('reconciles_per_object'))} reconciles, "
        f"{_fmt(work.get('writes_per_object'))} writes per object; "
        f"{_fmt(work.get('cpu_seconds'))} CPU s"
    )


def _gc_cell(pauses: Mapping[str, float] | None) -> str | None:
    if not pauses:
        return None
    return (
        f"{_fmt(pauses.get('seconds'))} in {round(pauses.get('count') or 0)}; full: "
        f"{_fmt(pauses.get('full_seconds'))} in {round(pauses.get('full_count') or 0)}"
    )


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


def _seconds(summary: Mapping[str, Any] | None, key: str) -> Any:
    return (summary or {}).get(key)


def _repeated_cell(repeated: Mapping[str, Any] | None) -> str | None:
    if not repeated:
        return None
    ready = ", ".join(f"{said}: {count}" for said, count in repeated["first_ready"].items())
    after = repeated.get("first_after_seen_seconds") or {}
    return f"{repeated['objects']}" + (
        f" ({ready}; written p50 {_fmt(after.get('p50'))} s after create)" if ready else ""
    )


def _target_cell(key: str, value: Any) -> str:
    if key not in TARGETS:
        return ""
    op, bound = TARGETS[key]
    met = target_met(key, value)
    verdict = "" if met is None else (" ✅" if met else " ❌")
    return f"{op} {bound:g}{verdict}"


def _paired_rows(paired: Mapping[str, Any] | None) -> list[tuple[str, Any, Any, Any, str]]:
    """A row per round of the paired rollbacks, then their median ratio (judged as the
    rollbacks' ratio is)."""
    if not paired or not paired.get("rounds"):
        return []
    batch = _fmt(paired.get("n"))
    rows: list[tuple[str, Any, Any, Any, str]] = [
        (
            f"crashing canary to RolledBack, {batch} at once, p50 (s): by turns on the same "
            f"cluster, round {i} ({r['first']} first)",
            _seconds(r.get("operator"), "p50"),
            _seconds(r.get("floor"), "p50"),
            r.get("ratio"),
            "",
        )
        for i, r in enumerate(paired["rounds"], 1)
    ]
    spread = f"{_fmt(paired.get('ratio_min'))} to {_fmt(paired.get('ratio_max'))}"
    rows.append(
        (
            f"  those rounds' ratios: median (least to most {spread})",
            None,
            None,
            paired.get("ratio_median"),
            _target_cell("rollback_ratio", paired.get("ratio_median")),
        )
    )
    work = paired.get("work") or {}
    for side, what in (("operator", "its own halves"), ("floor", "the floor's halves")):
        if work.get(side):
            rows.append(
                (
                    f"  the operator's work in {what}, per round",
                    _work_cell(work[side]),
                    None,
                    None,
                    "",
                )
            )
    return rows


def control_plane_cpu(phase: Mapping[str, Any] | None) -> float | None:
    """CPU seconds kube-apiserver and etcd spent in a phase."""
    spent = (phase or {}).get("process_cpu_seconds") or {}
    if "kube-apiserver" not in spent:
        return None
    return round(float(spent.get("kube-apiserver", 0.0)) + float(spent.get("etcd", 0.0)), 2)


def derive(result: Mapping[str, Any]) -> dict[str, Any]:
    """The ratios and shares of a run's figures, and which targets they meet."""
    ttr = result.get("time_to_ready_seconds") or {}
    floor_ttr = result.get("floor_time_to_ready_from_start_seconds") or {}
    derived: dict[str, Any] = {
        "ratio_operator_over_floor": ratio(
            result.get("operator_seconds"), result.get("floor_seconds")
        ),
        "control_plane_cpu_ratio": ratio(
            control_plane_cpu(result.get("convergence_cpu")),
            control_plane_cpu(result.get("floor_cpu")),
        ),
        "time_to_ready_p50_share": ratio(ttr.get("p50"), result.get("operator_seconds")),
        "floor_time_to_ready_p50_share": ratio(floor_ttr.get("p50"), result.get("floor_seconds")),
    }
    for kind in ("rollout", "rollback"):
        ours = result.get(f"{kind}_seconds") or {}
        floor = result.get(f"floor_{kind}_seconds") or {}
        derived[f"{kind}_ratio"] = ratio(
            _seconds(ours.get("batch"), "p50"), _seconds(floor.get("batch"), "p50")
        )
        derived[f"{kind}_ratio_max"] = ratio(
            _seconds(ours.get("batch"), "max"), _seconds(floor.get("batch"), "max")
        )
        derived[f"{kind}_ratio_single"] = ratio(ours.get("single"), floor.get("single"))
    judged = {**result, **derived}
    derived["targets_met"] = {
        key: target_met(key, judged.get(key))
        for key in TARGETS
        if key != "peak_rss_mb" or result.get("n") == RSS_TARGET_N
    }
    return derived


def markdown_table(result: Mapping[str, Any]) -> str:
    """The figures of one run beside their floors, as a Markdown table, with the machine."""
    n = result.get("n") or 1
    ttr = result.get("time_to_ready_seconds") or {}
    floor_ttr = result.get("floor_time_to_ready_from_start_seconds") or {}
    writes = result.get("operator_writes_by_verb") or {}
    cpu = result.get("convergence_cpu") or {}
    floor_cpu = result.get("floor_cpu") or {}
    rows: list[tuple[str, Any, Any, Any, str]] = [
        (
            f"all {n} Ready (s)",
            result.get("operator_seconds"),
            result.get("floor_seconds"),
            result.get("ratio_operator_over_floor"),
            _target_cell("ratio_operator_over_floor", result.get("ratio_operator_over_floor")),
        ),
    ]
    for q in ("p50", "p99"):
        rows.append(
            (
                f"time to Ready per object, {q} (s, from the first create)",
                ttr.get(q),
                floor_ttr.get(q),
                ratio(ttr.get(q), floor_ttr.get(q)),
                "",
            )
        )
    rows += [
        (
            "  p50 as a share of the total",
            result.get("time_to_ready_p50_share"),
            result.get("floor_time_to_ready_p50_share"),
            None,
            _target_cell("time_to_ready_p50_share", result.get("time_to_ready_p50_share")),
        ),
        (
            "kube-apiserver + etcd CPU (s)",
            control_plane_cpu(cpu),
            control_plane_cpu(floor_cpu),
            result.get("control_plane_cpu_ratio"),
            "",
        ),
        (
            "operator CPU (s); floor: the bench's client",
            result.get("cpu_seconds"),
            (floor_cpu.get("process_cpu_seconds") or {}).get("bench"),
            None,
            "",
        ),
        (
            "other work on the machine (CPU s)",
            cpu.get("other_cpu_seconds"),
            floor_cpu.get("other_cpu_seconds"),
            None,
            "",
        ),
        (
            "API writes per ModelDeployment",
            result.get("writes_per_object"),
            result.get("floor_writes_per_object"),
            ratio(result.get("writes_per_object"), result.get("floor_writes_per_object")),
            _target_cell("writes_per_object", result.get("writes_per_object")),
        ),
        (
            "  by verb",
            ", ".join(f"{verb} {_fmt(count / n)}" for verb, count in sorted(writes.items()))
            or None,
            None,
            None,
            "",
        ),
        (
            "  objects with more than one status write: first status's Ready",
            _repeated_cell(result.get("repeated_statuses")),
            None,
            None,
            "",
        ),
        (
            f"writes in {_fmt(result.get('idle_seconds'))} s idle",
            result.get("idle_writes"),
            None,
            None,
            _target_cell("idle_writes", result.get("idle_writes")),
        ),
        (
            "peak RSS (MiB)",
            result.get("peak_rss_mb"),
            None,
            None,
            _target_cell("peak_rss_mb", result.get("peak_rss_mb"))
            + (f" (target at N={RSS_TARGET_N})" if n != RSS_TARGET_N else ""),
        ),
    ]
    for lane, wait in sorted((result.get("queue_wait_seconds") or {}).items()):
        rows.append(
            (
                f"queue wait, {lane} lane, p50 / p99 (s)",
                f"{_fmt(wait.get('p50'))} / {_fmt(wait.get('p99'))} ({_fmt(wait.get('count'))})",
                None,
                None,
                "",
            )
        )
    if result.get("gc_pauses"):
        rows.append(
            (
                "operator's garbage collections while converging: pause (s)",
                _gc_cell(result.get("gc_pauses")),
                None,
                None,
                "",
            )
        )
    for kind, what in (
        ("rollout", "version change to promoted"),
        ("rollback", "crashing canary to RolledBack"),
    ):
        ours = result.get(f"{kind}_seconds") or {}
        floor = result.get(f"floor_{kind}_seconds") or {}
        batch = _fmt(ours.get("n"))
        rows += [
            (f"{what}, 1 (s)", ours.get("single"), floor.get("single"),
             result.get(f"{kind}_ratio_single"), ""),
            (f"{what}, {batch} at once, p50 (s)", _seconds(ours.get("batch"), "p50"),
             _seconds(floor.get("batch"), "p50"), result.get(f"{kind}_ratio"),
             _target_cell(f"{kind}_ratio", result.get(f"{kind}_ratio"))),
            (f"{what}, {batch} at once, max (s)", _seconds(ours.get("batch"), "max"),
             _seconds(floor.get("batch"), "max"), result.get(f"{kind}_ratio_max"), ""),
        ]  # fmt: skip
        if ours.get("gc_pauses"):
            rows.append(
                (
                    f"  the operator's garbage collections during those {batch}: pause (s)",
                    _gc_cell(ours.get("gc_pauses")),
                    None,
                    None,
                    "",
                )
            )
        if ours.get("work"):
            rows.append(
                (
                    f"  the operator's work during those {batch}",
                    _work_cell(ours.get("work")),
                    None,
                    None,
                    "",
                )
            )
    rows += _paired_rows(result.get("paired_rollback_seconds"))
    lines = ["| measure | operator | floor | ratio | target |", "|---|---|---|---|---|"]
    lines += [
        f"| {name} | {_fmt(ours)} | {_fmt(floor)} | {_fmt(r)} | {target} |"
        for name, ours, floor, r, target in rows
    ]
    machine = result.get("machine") or {}
    lines.append("")
    lines.append(
        f"Machine: {machine.get('nproc')} CPUs ({machine.get('cpu_model')}), "
        f"{_fmt(machine.get('memory_mb'), ' MiB')} RAM, Python {machine.get('python')}, "
        f"Kubernetes {machine.get('kubernetes')}; load average {result.get('load_average')}; "
        f"ran {result.get('started_at')}."
    )
    if result.get("floor_namespace_left_deleting"):
        lines.append(
            "The floor's namespace was still being deleted when the operator's phase began: the "
            "control plane spent part of that phase on it, so the operator's figures are slower "
            "than they would be alone."
        )
    return "\n".join(lines) + "\n"


def profile_text(top: Mapping[str, Any]) -> str:
    """`profile_top` as two Markdown tables."""
    lines = [
        f"{top.get('busy_samples', 0):.0f} samples computing, "
        f"{top.get('idle_samples', 0):.0f} waiting (left out)",
        "",
    ]
    for key, title in (("self", "own time"), ("total", "time beneath")):
        lines += [f"| {title} | function |", "|---|---|"]
        lines += [f"| {share:.1f} % | `{frame}` |" for frame, share in top.get(key) or ()]
        lines.append("")
    return "\n".join(lines)
