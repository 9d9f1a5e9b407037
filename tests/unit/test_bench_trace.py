"""`python -m bench.trace`: a rollback's steps found in an API server audit log."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from bench import trace

T0 = dt.datetime(2026, 12, 3, 5, 0, 0, tzinfo=dt.UTC)
OPERATOR = "OpenAPI-Generator/34.1.0/python"
KCM = "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/abc/system:serviceaccount:x"
SCHEDULER = "kube-scheduler/v1.37.2 (linux/amd64) kubernetes/abc/scheduler"
KWOK = "kwok/v0.8.0 (linux/amd64) kubernetes/$Format"


def record(at: float, resource: str, name: str, agent: str, code: int = 200,
           namespace: str = "slipway-bench-abc123", took: float = 0.01,
           stage: str = "ResponseComplete") -> str:  # fmt: skip
    """One line of the audit log, as kube-apiserver writes it at level Metadata."""
    main, _, sub = resource.partition("/")
    ref: dict[str, Any] = {"resource": main, "namespace": namespace, "name": name}
    if sub:
        ref["subresource"] = sub
    received = T0 + dt.timedelta(seconds=at)
    answered = received + dt.timedelta(seconds=took)
    return json.dumps({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "stage": stage,
        "verb": "patch", "userAgent": agent, "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": received.isoformat().replace("+00:00", "Z"),
        "stageTimestamp": answered.isoformat().replace("+00:00", "Z"),
    })  # fmt: skip


def operator_rollback(md: str, at: float, namespace: str = "slipway-bench-abc123") -> list[str]:
    """The writes of one rollback in the operator's namespace, `at` seconds after T0."""
    dep = f"{md}-v5"
    rs = f"{dep}-7c9f"
    pod = f"{rs}-x1"

    def r(offset: float, resource: str, name: str, agent: str, code: int = 200) -> str:
        return record(at + offset, resource, name, agent, code, namespace)

    return [
        r(0.0, "modeldeployments", md, "bench"),
        r(0.5, "modeldeployments/status", md, OPERATOR),
        r(0.6, "deployments", dep, OPERATOR, 201),
        r(0.7, "services", f"{md}-canary", OPERATOR, 201),
        r(0.9, "replicasets", rs, KCM, 201),
        r(1.0, "deployments/status", dep, KCM),
        r(1.2, "pods", "", KCM, 201),  # generateName: no name in the log
        r(1.4, "pods/binding", pod, SCHEDULER, 201),
        r(3.5, "pods/status", pod, KWOK),
        r(4.0, "modeldeployments/status", md, OPERATOR),
        r(4.1, "deployments", dep, OPERATOR),
        r(5.6, "pods/status", pod, KWOK),
    ]


def test_the_steps_of_one_operator_rollback_are_found_in_order() -> None:
    earlier = [  # an earlier canary of the same ModelDeployment, promoted: not the rollback
        record(-10.0, "modeldeployments", "bench-0001", "bench"),
        record(-9.0, "deployments", "bench-0001-v4", OPERATOR, 201),
    ]
    writes = sorted(trace.parse(earlier + operator_rollback("bench-0001", 0.0)),
                    key=lambda w: w.received)  # fmt: skip

    steps = trace.rollback_steps(writes, "bench-0001", floor=False)

    assert steps is not None
    start = T0.timestamp()
    assert {k: round(v - start, 2) for k, v in steps.items()} == {
        "start": 0.0, "status": 0.51, "deployment": 0.61, "replicaset": 0.91, "bound": 1.41,
        "failing": 3.51, "reaction": 4.01, "end": 4.01,
    }  # fmt: skip


def test_a_rollback_the_log_does_not_hold_whole_is_left_out() -> None:
    """No pod bound yet: no timeline rather than one with a made-up step."""
    lines = [line for line in operator_rollback("bench-0001", 0.0) if '"pods' not in line]
    assert trace.rollback_steps(list(trace.parse(lines)), "bench-0001", floor=False) is None


def test_the_floor_starts_at_its_deployment_and_ends_at_its_scale_down() -> None:
    ns = "slipway-bench-floor-abc123"
    dep, rs, pod = "bench-0002-v5", "bench-0002-v5-66", "bench-0002-v5-66-q"
    lines = [
        record(0.0, "deployments", dep, OPERATOR, 201, ns),
        record(0.1, "services", "bench-0002-canary", OPERATOR, 201, ns),
        record(0.3, "replicasets", rs, KCM, 201, ns),
        record(0.5, "pods", "", KCM, 201, ns),
        record(0.6, "pods/binding", pod, SCHEDULER, 201, ns),
        record(2.7, "pods/status", pod, KWOK, 200, ns),
        record(2.9, "deployments", dep, OPERATOR, 200, ns),
    ]
    steps = trace.rollback_steps(list(trace.parse(lines)), "bench-0002", floor=True)
    assert steps is not None
    assert round(steps["end"] - steps["start"], 2) == 2.91
    assert steps["status"] == steps["start"]


def test_the_table_takes_the_batch_and_leaves_the_first_alone() -> None:
    """The first ModelDeployment is rolled back alone; the batch is the ones after it."""
    lines = operator_rollback("bench-0000", 0.0)
    for i in range(1, 4):
        lines += operator_rollback(f"bench-{i:04d}", 20.0 + i * 0.1)
    lines.append(record(30.0, "pods", "x", KCM, 201, stage="RequestReceived"))
    lines.append("not json")

    result = trace.trace(list(trace.parse(lines)), batch=50)

    assert set(result) == {"operator"}
    assert (result["operator"]["traced"], result["operator"]["of"]) == (3, 3)
    steps = result["operator"]["steps"]
    assert steps["total"] == {"p50": 4.01, "p90": 4.01}  # from the patch's arrival
    assert steps["failing"] == {"p50": 2.1, "p90": 2.1}
    assert "OpenAPI-Generator deployments" in result["operator"]["latency"]
    rendered = trace.render(result)
    assert "operator: 3 of 3 traced" in rendered
    assert rendered.splitlines()[-1].strip().startswith("kwok")


def test_a_log_without_a_bench_namespace_says_so(tmp_path: Any, capsys: Any) -> None:
    log = tmp_path / "audit.log"
    log.write_text(record(0.0, "pods", "p", KCM, 201, namespace="default") + "\n")
    assert trace.main([str(log)]) == 1
    assert "no bench namespace" in capsys.readouterr().err


def test_show_lists_one_rollbacks_requests_from_its_start() -> None:
    writes = list(trace.parse(operator_rollback("bench-0001", 0.0)))
    lines = trace.sequence(writes, "bench-0001", floor=False)
    assert (
        len(lines) == 10
    )  # not its nameless create; the pod's last status comes more than a second after the end
    assert lines[0].split()[:2] == ["0.000", "0.010"]  # from the arrival of the spec's patch
    assert "modeldeployments/status" in lines[1]
    assert trace.sequence(writes, "bench-0001", floor=True) == []


def test_a_log_of_several_runs_is_read_for_its_last_run_only() -> None:
    """Runs one after the other on one cluster: each run's namespace has its own id."""
    earlier = operator_rollback("bench-0001", 0.0, namespace="slipway-bench-aaaaaa")
    later = operator_rollback("bench-0001", 100.0, namespace="slipway-bench-0000ff")
    writes = list(trace.parse(later + earlier))  # not in time order in the file

    namespace, own = trace.last_run(writes, floor=False)

    assert namespace == "slipway-bench-0000ff"
    assert {w.namespace for w in own} == {namespace}
    assert [w.received for w in own] == sorted(w.received for w in own)
    lines = trace.sequence(writes, "bench-0001", floor=False)
    assert len(lines) == 10  # that run's requests, none of the earlier one's
    assert trace.last_run(writes, floor=True) == ("", [])
