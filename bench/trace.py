"""Where a rollback's time goes, request by request: `python -m bench.trace AUDIT_LOG`.

Start the cluster with `SLIPWAY_AUDIT=1 hack/cluster.sh up` and run the bench: the API server
logs every write (hack/audit-policy.yaml) with the time it arrived and the time it was answered.
This reads that log and, for each ModelDeployment of the last batch rolled back, lines up the
steps of its rollback in the operator's namespace (the bench's spec patch, the operator's writes,
the controllers', the scheduler's and KWOK's) and in the floor's (the plain client's writes), then
prints the median and p90 of each step's share of the time, side by side.

The steps, in order (a step is the first request of its kind after the one before it):
  start      the bench patches the ModelDeployment (operator) / the floor's first write (its
             arrival: the bench's clock starts before it)
  status     the operator's first status write after it (the floor has none: its start)
  deployment the canary's Deployment is created
  replicaset the deployment controller creates its ReplicaSet
  bound      the ReplicaSet controller's pod is bound by the scheduler (the pod's create itself
             is logged without its name: generateName)
  failing    KWOK writes the pod's crash-looping status (after its 2 s delay)
  reaction   the next write of the operator / the floor (the scale-down, or the status)
  end        the operator's status write (RolledBack) / the floor's scale-down

Pure parsing and arithmetic besides reading the file; no cluster.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report

STEPS = ("start", "status", "deployment", "replicaset", "bound", "failing", "reaction", "end")
FLOOR_NAMESPACE = re.compile(r"^slipway-bench-floor-[0-9a-f]+$")
OPERATOR_NAMESPACE = re.compile(r"^slipway-bench-[0-9a-f]+$")
# the bench's ModelDeployments: bench-0000, bench-0001, ...
MD_NAME = re.compile(r"^bench-\d{4}$")


@dataclass(frozen=True)
class Write:
    """One write the API server answered: what, by whom, when it arrived and when it was
    answered (seconds since the epoch)."""

    verb: str
    resource: str  # "pods", "pods/status", "deployments", ...
    namespace: str
    name: str
    agent: str
    code: int
    received: float
    answered: float

    @property
    def created(self) -> bool:
        return self.code == 201


def _seconds(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def parse(lines: Iterable[str]) -> Iterator[Write]:
    """The requests of an audit log (JSON lines at level Metadata, stage ResponseComplete): the
    writes, and the GETs a writer makes before it writes."""
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        ref = record.get("objectRef") or {}
        if record.get("stage") != "ResponseComplete" or not ref.get("resource"):
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        yield Write(
            verb=record.get("verb", ""),
            resource=resource,
            namespace=ref.get("namespace", ""),
            name=ref.get("name", ""),
            agent=record.get("userAgent", ""),
            code=int((record.get("responseStatus") or {}).get("code") or 0),
            received=_seconds(record["requestReceivedTimestamp"]),
            answered=_seconds(record["stageTimestamp"]),
        )


def _first(writes: Sequence[Write], after: float, match: Any) -> Write | None:
    return next((w for w in writes if w.received >= after and match(w)), None)


def _is_controller(w: Write) -> bool:
    return "kube-controller-manager" in w.agent


def rollback_steps(writes: Sequence[Write], md: str, floor: bool) -> dict[str, float] | None:
    """The times (seconds since the epoch, answered) of each step of `md`'s last rollback, from
    the writes of its namespace in arrival order; None when the log does not hold all of it.

    The rollback is the last canary: the last Deployment of `md` the log shows created."""
    own = [w for w in writes if w.name == md or w.name.startswith(f"{md}-")]
    created = [w for w in own if w.resource == "deployments" and w.created]
    if not created:
        return None
    canary = created[-1]
    start: Write | None = canary
    if not floor:  # the bench's spec patch that led to it
        patches = [
            w for w in own if w.resource == "modeldeployments" and w.name == md and w.verb != "get"
        ]
        start = next((w for w in reversed(patches) if w.received <= canary.received), None)
    if start is None:
        return None
    first_status: Write | None = start
    if not floor:
        first_status = _first(
            own,
            start.received,
            lambda w: w.resource == "modeldeployments/status" and w.verb != "get",
        )
        if first_status is None or first_status.received > canary.received:
            return None
    pod_prefix = f"{canary.name}-"
    rs = _first(own, canary.received, lambda w: w.resource == "replicasets" and w.created
                and w.name.startswith(pod_prefix))  # fmt: skip
    if rs is None:
        return None
    # its pod's create is logged without a name (generateName): the binding is the first write
    # that names it
    bound = _first(own, rs.received, lambda w: w.resource == "pods/binding"
                   and w.name.startswith(f"{rs.name}-"))  # fmt: skip
    if bound is None:
        return None
    failing = _first(own, bound.received, lambda w: w.resource == "pods/status" and w.verb != "get"
                     and w.name == bound.name and "kwok" in w.agent.lower())  # fmt: skip
    if failing is None:
        return None

    def ours(w: Write) -> bool:
        if w.verb == "get" or _is_controller(w) or "kwok" in w.agent.lower():
            return False
        if "scheduler" in w.agent:
            return False
        if floor:
            return w.resource == "deployments" and w.name == canary.name
        return w.resource in ("deployments", "services", "modeldeployments/status")

    reaction = _first(own, failing.answered, ours)
    if reaction is None:
        return None
    if floor:
        end = reaction
    else:
        # the first status written after the failure: the operator writes RolledBack with its
        # decision (a later write would be another reconcile's)
        status = _first(
            own,
            failing.answered,
            lambda w: w.resource == "modeldeployments/status" and w.verb != "get",
        )
        if status is None:
            return None
        end = status
    return {
        "start": start.received,  # as the bench's clock starts: before its first request
        "status": start.received if floor or first_status is None else first_status.answered,
        "deployment": canary.answered,
        "replicaset": rs.answered,
        "bound": bound.answered,
        "failing": failing.answered,
        "reaction": reaction.answered,
        "end": end.answered,
    }


def step_table(timelines: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per step: p50 and p90 of the seconds from the step before it to it, across timelines;
    and `total`, from start to end."""
    table: dict[str, dict[str, float]] = {}
    for before, step in itertools.pairwise(STEPS):
        gaps = [t[step] - t[before] for t in timelines]
        table[step] = _p(gaps)
    table["total"] = _p([t["end"] - t["start"] for t in timelines])
    return table


def _p(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(report.percentile(values, 50), 3),
        "p90": round(report.percentile(values, 90), 3),
    }


def latency(writes: Iterable[Write]) -> dict[str, dict[str, float]]:
    """Per (writer, resource): the API server's own time on each write, p50 and p90, and count."""
    groups: dict[str, list[float]] = {}
    for w in writes:
        who = w.agent.split("/", 1)[0] or "?"
        groups.setdefault(f"{who} {w.resource}", []).append(w.answered - w.received)
    return {key: {**_p(values), "n": len(values)} for key, values in sorted(groups.items())}


def last_run(writes: Iterable[Write], floor: bool) -> tuple[str, list[Write]]:
    """The namespace of the last bench run's floor (or operator) phase in the log, and its
    requests in arrival order; ("", []) when the log has none."""
    pattern = FLOOR_NAMESPACE if floor else OPERATOR_NAMESPACE
    by_namespace: dict[str, list[Write]] = {}
    for w in writes:
        if pattern.match(w.namespace):
            by_namespace.setdefault(w.namespace, []).append(w)
    if not by_namespace:
        return "", []
    namespace = max(by_namespace, key=lambda ns: min(w.received for w in by_namespace[ns]))
    return namespace, sorted(by_namespace[namespace], key=lambda w: w.received)


def trace(writes: Sequence[Write], batch: int) -> dict[str, Any]:
    """The step tables of the operator's and the floor's last `batch` rollbacks."""
    result: dict[str, Any] = {}
    for side, floor in (("floor", True), ("operator", False)):
        namespace, own = last_run(writes, floor)
        if not own:
            continue
        mds = sorted(_md_names(own))
        # the batch: every ModelDeployment but the first (rolled back alone, before it)
        chosen = mds[1 : 1 + batch]
        timelines = [t for md in chosen if (t := rollback_steps(own, md, floor)) is not None]
        window = (
            min(t["start"] for t in timelines),
            max(t["end"] for t in timelines),
        ) if timelines else (0.0, 0.0)  # fmt: skip
        result[side] = {
            "namespace": namespace,
            "traced": len(timelines),
            "of": len(chosen),
            "steps": step_table(timelines) if timelines else {},
            "latency": latency(w for w in own if window[0] <= w.received <= window[1]),
        }
    return result


def _md_names(writes: Iterable[Write]) -> set[str]:
    names = set()
    for w in writes:
        head = w.name[:10]
        if MD_NAME.match(head):
            names.add(head)
    return names


def render(result: Mapping[str, Any]) -> str:
    sides = [s for s in ("operator", "floor") if s in result]
    lines = [
        "seconds from the step before, p50 / p90, over the batch's rollbacks ("
        + ", ".join(f"{s}: {result[s]['traced']} of {result[s]['of']} traced" for s in sides)
        + ")",
        f"{'step':<12}" + "".join(f"{s:>20}" for s in sides),
    ]
    for step in (*STEPS[1:], "total"):
        cells = []
        for s in sides:
            cell = result[s]["steps"].get(step)
            cells.append(f"{cell['p50']:>9.2f} / {cell['p90']:<8.2f}" if cell else f"{'-':>20}")
        lines.append(f"{step:<12}" + "".join(f"{c:>20}" for c in cells))
    for s in sides:
        lines.append(f"\nthe API server's time per write during the {s}'s batch, p50 / p90 (n):")
        for key, row in result[s]["latency"].items():
            lines.append(f"  {key:<56}{row['p50']:>7.3f} / {row['p90']:<7.3f} ({row['n']})")
    return "\n".join(lines)


def sequence(writes: Sequence[Write], md: str, floor: bool) -> list[str]:
    """Every logged request about `md`'s objects during its last rollback (to a second after its
    end), one line each: when it arrived and when it was answered, in seconds from the arrival
    of the rollback's first request; who; what."""
    own = last_run(writes, floor)[1]
    steps = rollback_steps(own, md, floor)
    if steps is None:
        return []
    start = steps["start"]
    return [
        f"{w.received - start:8.3f} {w.answered - start:8.3f}  {w.agent.split('/', 1)[0]:<28}"
        f"{w.verb:<7}{w.resource:<24}{w.name} ({w.code})"
        for w in own
        if (w.name == md or w.name.startswith(f"{md}-"))
        and start - 1.0 <= w.received <= steps["end"] + 1.0
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.trace",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("audit_log", type=Path, help="the API server's audit log (JSON lines)")
    parser.add_argument(
        "--batch", type=int, default=50, help="ModelDeployments rolled back at once"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--show", metavar="NAME", help="also list every request of one ModelDeployment's rollback"
    )
    args = parser.parse_args(argv)
    with args.audit_log.open() as lines:
        writes = list(parse(lines))
    result = trace(writes, args.batch)
    if not result:
        print(f"no bench namespace in {args.audit_log}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else render(result))
    if args.show:
        for side, floor in (("operator", False), ("floor", True)):
            print(f"\n{args.show}'s rollback, {side}: arrived, answered (s from its start)")
            print("\n".join(sequence(writes, args.show, floor)) or "  (not in the log)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
