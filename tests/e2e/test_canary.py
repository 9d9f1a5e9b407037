"""Canary rollouts (issue 4) end to end: the operator process, the real cluster, KWOK's fault
stages for bad canaries, and a real Prometheus for the analysis. Through every scenario a sampler
checks that the model's Ready pods never drop below spec.replicas."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Driver, Operator, canary_model_deployment
from tests.e2e.prom import Prometheus
from tests.e2e.test_serving import ReadySampler

pytestmark = pytest.mark.usefixtures("operator")

SELECTOR = "serving.slipway.dev/modeldeployment"
REVISION = "serving.slipway.dev/revision"
VERSION = "app.kubernetes.io/version"
V2 = {"model": {"version": "2.0.0", "uri": "s3://models/fraud/2.0.0"}}


def canary_md(
    name: str = "fraud",
    replicas: int = 4,
    steps: list[dict[str, Any]] | None = None,
    **rollout: Any,
) -> dict[str, Any]:
    """Four replicas of an xgboost model, by default one 25 % step and an indefinite pause."""
    return canary_model_deployment(
        name,
        steps if steps is not None else [{"setWeight": 25}, {"pause": {}}],
        replicas=replicas,
        model_format="xgboost",
        **rollout,
    )


def fraud_route() -> dict[str, Any]:
    """An HTTPRoute that sends everything to fraud-stable, for trafficRouting.gatewayAPI."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": "fraud-stable", "port": 8080, "weight": 100}]}],
        },
    }


def status(k: Driver, name: str = "fraud") -> dict[str, Any]:
    return dict(k.md(name).get("status") or {})


def canary(k: Driver, name: str = "fraud") -> dict[str, Any]:
    return dict(status(k, name).get("canary") or {})


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == type_), {})


def revision_replicas(k: Driver, name: str, revision: str) -> int:
    d = k.get("deployment", f"{name}-{revision}")
    return int(d["spec"]["replicas"]) if d else 0


@pytest.fixture
def sampler(k: Driver) -> Iterator[ReadySampler]:
    """Ready pods of `fraud`, sampled all through the test; checked at the end."""
    s = ReadySampler(k, "fraud")
    with s:
        yield s


def ready_floor_held(k: Driver, s: ReadySampler, replicas: int) -> None:
    # samples before the first Ready state are the initial rollout, not a canary
    first = next((i for i, n in enumerate(s.samples) if n >= replicas), None)
    assert first is not None, s.samples
    assert min(s.samples[first:]) >= replicas, s.samples


def paused_at(k: Driver, weight: int) -> dict[str, Any]:
    """Wait until the canary holds `weight` in a pause that waits for promote (its revision)."""
    result: dict[str, Any] = k.wait(
        f"a pause at weight {weight}",
        lambda: (c := canary(k)).get("weight") == weight and status(k)["phase"] == "Paused" and c,
    )
    return result


def start(k: Driver, md: dict[str, Any]) -> str:
    k.apply(md)
    return str(k.wait_phase(md["metadata"]["name"], "Ready")["status"]["stable"]["revision"])


def warnings(k: Driver) -> str:
    """The namespace's Warning Events (the operator posts them just after the status)."""
    return k.cluster.kubectl("get", "events", "-n", k.ns, "--field-selector", "type=Warning").stdout


def test_canary_goes_through_every_step_to_promotion(k: Driver, sampler: ReadySampler) -> None:
    steps = [{"setWeight": 25}, {"pause": {"duration": "2s"}}, {"setWeight": 50}, {"pause": {}}]
    old = start(k, canary_md(steps=steps))
    before = {name: k.get("service", name) for name in ("fraud", "fraud-stable")}
    k.patch("md", "fraud", {"spec": V2})

    c = k.wait("weight 25", lambda: (c := canary(k)).get("weight") == 25 and c)
    assert revision_replicas(k, "fraud", c["revision"]) == math.ceil(0.25 * 4)
    # the canary leaves fraud and fraud-stable as they were (they serve 1.0.0, and say so)
    for name, service in before.items():
        now = k.get("service", name)
        assert now["metadata"]["resourceVersion"] == service["metadata"]["resourceVersion"], name
        assert now["metadata"]["labels"][VERSION] == "1.0.0", name
    assert k.get("service", "fraud-canary")["metadata"]["labels"][VERSION] == "2.0.0"
    c = k.wait(
        "weight 50 and the pause",
        lambda: (c := canary(k)).get("weight") == 50 and status(k)["phase"] == "Paused" and c,
    )
    assert revision_replicas(k, "fraud", c["revision"]) == 2
    assert revision_replicas(k, "fraud", old) == 2
    new = c["revision"]
    assert (
        k.get("service", "fraud-canary")["spec"]["selector"]["serving.slipway.dev/revision"] == new
    )

    k.plugin("promote", "fraud")
    st = k.wait(
        "promotion",
        lambda: (
            (s := status(k)).get("stable", {}).get("revision") == new
            and s["phase"] == "Ready"
            and s
        ),
    )
    assert st.get("canary") is None
    assert [h["version"] for h in st["history"][:2]] == ["2.0.0", "1.0.0"]
    assert revision_replicas(k, "fraud", new) == 4
    k.wait("the old revision scaled to 0", lambda: revision_replicas(k, "fraud", old) == 0)
    assert (
        k.get("service", "fraud-stable")["spec"]["selector"]["serving.slipway.dev/revision"] == new
    )
    for name in ("fraud", "fraud-stable"):
        assert k.get("service", name)["metadata"]["labels"][VERSION] == "2.0.0", name
    ready_floor_held(k, sampler, 4)


def test_canary_that_never_becomes_ready_is_rolled_back_at_the_deadline(
    kwok_faults: None, k: Driver, sampler: ReadySampler
) -> None:
    old = start(k, canary_md(progressDeadlineSeconds=5))
    k.patch(
        "md", "fraud", {"spec": {**V2, "template": {"labels": {"slipway.test/fault": "not-ready"}}}}
    )
    st = k.wait(
        "RolledBack", lambda: (s := status(k)).get("phase") == "RolledBack" and s, timeout=60
    )
    degraded = condition(st, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "ProgressDeadlineExceeded"
    assert st["canary"]["weight"] == 0
    k.wait(
        "the canary scaled to 0",
        lambda: revision_replicas(k, "fraud", st["canary"]["revision"]) == 0,
    )
    assert st["stable"]["revision"] == old
    assert revision_replicas(k, "fraud", old) == 4
    k.wait("its Warning Event", lambda: "ProgressDeadlineExceeded" in warnings(k))
    ready_floor_held(k, sampler, 4)


def test_crash_looping_canary_is_rolled_back(
    kwok_faults: None, k: Driver, sampler: ReadySampler
) -> None:
    start(k, canary_md())
    k.patch(
        "md", "fraud", {"spec": {**V2, "template": {"labels": {"slipway.test/fault": "crash"}}}}
    )
    st = k.wait(
        "RolledBack", lambda: (s := status(k)).get("phase") == "RolledBack" and s, timeout=60
    )
    assert condition(st, "Degraded")["reason"] == "CanaryCrashLooping"
    assert "CrashLoopBackOff" in condition(st, "Degraded")["message"]
    # the spec says 2.0.0; what serves is 1.0.0, and its Services say so
    for name in ("fraud", "fraud-stable"):
        assert k.get("service", name)["metadata"]["labels"][VERSION] == "1.0.0", name
    ready_floor_held(k, sampler, 4)


CANARY = 'namespace="{{namespace}}",revision="{{canary.revision}}"'
ERROR_RATE = (
    f'sum(rate(http_requests_total{{{CANARY},code="500"}}[10s]))'
    f" / sum(rate(http_requests_total{{{CANARY}}}[10s]))"
)
SAMPLES = f"sum(increase(http_requests_total{{{CANARY}}}[10s]))"


def analysis(prom: Prometheus, **extra: Any) -> dict[str, Any]:
    return {
        "interval": "2s",
        "failureLimit": 0,
        "minSamples": 5,
        "prometheus": {"address": prom.address},
        "metrics": [
            {
                "name": "error-rate",
                "query": ERROR_RATE,
                "samplesQuery": SAMPLES,
                "max": 0.05,
            }
        ],
        **extra,
    }


def test_failing_analysis_rolls_back_with_the_measurement_in_status_and_event(
    k: Driver,
    sampler: ReadySampler,
    prometheus: Prometheus,
) -> None:
    steps = [{"setWeight": 50}, {"pause": {"duration": "30s"}}]
    start(k, canary_md(steps=steps, analysis=analysis(prometheus)))
    k.patch("md", "fraud", {"spec": V2})
    rev = k.wait("a canary", lambda: canary(k).get("revision"))
    prometheus.exporter.set(k.ns, rev, rps=20, error_ratio=0.5)
    st = k.wait(
        "RolledBack", lambda: (s := status(k)).get("phase") == "RolledBack" and s, timeout=60
    )
    degraded = condition(st, "Degraded")
    assert degraded["reason"] == "AnalysisFailed"
    assert "error-rate" in degraded["message"]
    failed = [m for m in st["analysis"]["measurements"] if m["verdict"] == "Failed"]
    assert failed and failed[-1]["value"] > 0.05 and rev in failed[-1]["query"]
    k.wait("its Warning Event", lambda: "error-rate" in warnings(k))
    ready_floor_held(k, sampler, 4)


def test_no_data_is_inconclusive_and_pauses_then_data_lets_it_continue(
    k: Driver,
    sampler: ReadySampler,
    prometheus: Prometheus,
) -> None:
    steps = [{"setWeight": 50}, {"pause": {"duration": "1s"}}]
    start(k, canary_md(steps=steps, analysis=analysis(prometheus)))
    k.patch("md", "fraud", {"spec": V2})
    st = k.wait(
        "an Inconclusive pause", lambda: (s := status(k)).get("phase") == "Paused" and s, timeout=60
    )
    assert any(m["verdict"] == "Inconclusive" for m in st["analysis"]["measurements"])
    assert st["canary"]["state"] == "Paused" and st["canary"]["reason"] == "AnalysisInconclusive"
    rev = st["canary"]["revision"]
    prometheus.exporter.set(k.ns, rev, rps=20, error_ratio=0.0)
    k.wait("promotion", lambda: status(k).get("stable", {}).get("revision") == rev, timeout=90)
    ready_floor_held(k, sampler, 4)


def test_plugin_abort_retry_pause_resume_and_promote_full(k: Driver, sampler: ReadySampler) -> None:
    steps = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]
    old = start(k, canary_md(steps=steps))
    k.patch("md", "fraud", {"spec": V2})
    rev = k.wait("weight 25", lambda: (c := canary(k)).get("weight") == 25 and c["revision"])

    k.plugin("abort", "fraud")
    k.wait(
        "aborted",
        lambda: canary(k).get("state") == "Aborted" and status(k)["phase"] == "RolledBack",
    )
    k.wait("the canary at 0 replicas", lambda: revision_replicas(k, "fraud", rev) == 0)
    assert status(k)["stable"]["revision"] == old

    k.plugin("retry", "fraud")
    k.wait(
        "the canary back at 25 and paused",
        lambda: (
            (c := canary(k)).get("weight") == 25
            and c.get("state") == "Paused"
            and status(k)["phase"] == "Paused"
        ),
    )

    k.plugin("promote", "fraud")
    k.wait("weight 75", lambda: canary(k).get("weight") == 75)
    k.plugin("pause", "fraud")
    k.wait("paused", lambda: canary(k).get("reason") == "UserPaused")
    k.plugin("resume", "fraud")
    k.wait("resumed", lambda: canary(k).get("reason") != "UserPaused")

    k.plugin("promote", "fraud", "--full")
    k.wait("promotion", lambda: status(k).get("stable", {}).get("revision") == rev)
    out = k.plugin("status", "fraud").stdout
    assert "2.0.0" in out and "Ready" in out
    ready_floor_held(k, sampler, 4)


def test_undo_goes_back_to_the_previous_revision_at_once(k: Driver, sampler: ReadySampler) -> None:
    old = start(k, canary_md(steps=[{"setWeight": 50}, {"pause": {}}]))
    k.patch("md", "fraud", {"spec": V2})
    k.wait("the pause", lambda: status(k).get("phase") == "Paused")
    k.plugin("promote", "fraud")
    new = k.wait(
        "promotion",
        lambda: (
            (s := status(k)).get("stable", {}).get("version") == "2.0.0" and s["stable"]["revision"]
        ),
    )
    history = k.plugin("history", "fraud").stdout
    assert "1.0.0" in history and "2.0.0" in history

    k.plugin("undo", "fraud")
    st = k.wait(
        "back on 1.0.0",
        lambda: (
            (s := status(k)).get("stable", {}).get("revision") == old
            and s["phase"] == "Ready"
            and s
        ),
    )
    assert k.md("fraud")["spec"]["model"]["version"] == "1.0.0"
    assert st.get("canary") is None  # no steps: undo reuses the kept Deployment at once
    assert new != old
    ready_floor_held(k, sampler, 4)


def test_reverting_the_spec_aborts_the_canary_at_once(k: Driver, sampler: ReadySampler) -> None:
    old = start(k, canary_md())
    original = k.md("fraud")["spec"]["model"]
    k.patch("md", "fraud", {"spec": V2})
    rev = k.wait("a canary at 25", lambda: (c := canary(k)).get("weight") == 25 and c["revision"])
    k.patch("md", "fraud", {"spec": {"model": original}})
    k.wait("the canary gone", lambda: not status(k).get("canary") and status(k)["phase"] == "Ready")
    k.wait("its Deployment gone or at 0", lambda: revision_replicas(k, "fraud", rev) == 0)
    assert status(k)["stable"]["revision"] == old
    ready_floor_held(k, sampler, 4)


def test_a_newer_spec_replaces_the_canary_and_restarts_the_steps(
    k: Driver, sampler: ReadySampler
) -> None:
    start(k, canary_md(steps=[{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]))
    k.patch("md", "fraud", {"spec": V2})
    first = paused_at(k, 25)["revision"]
    k.plugin("promote", "fraud")
    k.wait("weight 50", lambda: canary(k).get("weight") == 50)
    k.patch(
        "md", "fraud", {"spec": {"model": {"version": "3.0.0", "uri": "s3://models/fraud/3.0.0"}}}
    )
    c = k.wait(
        "a new canary at 25",
        lambda: (
            (c := canary(k)).get("revision") not in (None, first) and c.get("weight") == 25 and c
        ),
    )
    assert c["version"] == "3.0.0" and c["step"] <= 1
    k.wait("the first canary scaled away", lambda: revision_replicas(k, "fraud", first) == 0)
    ready_floor_held(k, sampler, 4)


def test_operator_killed_mid_rollout_resumes_at_the_same_step(
    k: Driver, operator: Operator, sampler: ReadySampler
) -> None:
    start(k, canary_md(steps=[{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]))
    k.patch("md", "fraud", {"spec": V2})
    before = k.wait(
        "the first pause",
        lambda: (c := canary(k)).get("weight") == 25 and status(k)["phase"] == "Paused" and c,
    )
    operator.kill()
    try:
        k.plugin("promote", "fraud")  # lands while the operator is down
    finally:
        operator.start()
    after = k.wait("weight 50", lambda: (c := canary(k)).get("weight") == 50 and c)
    assert after["revision"] == before["revision"]
    assert after["startedAt"] == before["startedAt"]
    deployments = k.items("deployments", f"{SELECTOR}=fraud")
    assert len(deployments) == 2
    ready_floor_held(k, sampler, 4)


def routed(k: Driver, steps: list[dict[str, Any]]) -> str:
    """Route `fraud` and a ModelDeployment that splits through it with `steps`, Ready; its
    stable revision."""
    k.apply(fraud_route())
    return start(k, canary_md(steps=steps, trafficRouting={"gatewayAPI": {"httpRoute": "fraud"}}))


def weights(k: Driver) -> dict[str, int]:
    """The weight of each backendRef of route `fraud`, by the Service it names."""
    r = k.get("httproute", "fraud")
    return {b["name"]: b.get("weight", 1) for b in r["spec"]["rules"][0]["backendRefs"]}


def test_httproute_weights_follow_the_steps(k: Driver, sampler: ReadySampler) -> None:
    routed(k, [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}])

    k.patch("md", "fraud", {"spec": V2})
    k.wait("20/80", lambda: weights(k) == {"fraud-stable": 80, "fraud-canary": 20})
    new = paused_at(k, 20)["revision"]
    k.plugin("promote", "fraud")
    k.wait("60/40", lambda: weights(k) == {"fraud-stable": 40, "fraud-canary": 60})
    paused_at(k, 60)
    k.plugin("promote", "fraud")
    k.wait(
        "all traffic to the new stable",
        lambda: weights(k).get("fraud-stable") == 100 and weights(k).get("fraud-canary", 0) == 0,
    )
    ready_floor_held(k, sampler, 4)
    # the route keeps its backendRef to fraud-canary: the Service stays, on the new stable's pods
    k.wait("the promotion", lambda: status(k)["stable"]["revision"] == new)
    k.wait("fraud-canary on the stable's pods", lambda: selects(k, "fraud-canary") == new)


def test_httproute_applied_again_from_git_mid_canary_gets_its_weights_back(k: Driver) -> None:
    """The route is not watched: a sync that puts it back as it is in git (all to fraud-stable)
    while the canary has 25 % is undone at Slipway's next look, within ROUTE_RECHECK_SECONDS."""
    routed(k, [{"setWeight": 25}, {"pause": {}}])

    k.patch("md", "fraud", {"spec": V2})
    k.wait("25/75", lambda: weights(k) == {"fraud-stable": 75, "fraud-canary": 25})
    paused_at(k, 25)
    k.apply(fraud_route())  # what a GitOps sync does: all to fraud-stable
    k.wait("25/75 again", lambda: weights(k) == {"fraud-stable": 75, "fraud-canary": 25}, 30)


def test_httproute_ports_follow_a_revision_that_listens_on_another_port(k: Driver) -> None:
    """A canary on port 9090: every backendRef of the route names a port its Service has, during
    the canary and after the promotion (a route left on 8080 would send its share nowhere)."""
    routed(k, [{"setWeight": 25}, {"pause": {}}])

    def ports() -> dict[str, tuple[int, int]]:
        """Each backendRef's port beside the port of the Service it names."""
        refs = k.get("httproute", "fraud")["spec"]["rules"][0]["backendRefs"]
        services = {r["name"]: k.get("service", r["name"]) for r in refs}
        return {
            r["name"]: (r["port"], services[r["name"]]["spec"]["ports"][0]["port"])
            for r in refs
            if services[r["name"]] is not None
        }

    k.patch("md", "fraud", {"spec": {**V2, "runtime": {"port": 9090}}})
    paused_at(k, 25)
    k.wait(
        "the canary's backendRef on 9090",
        lambda: ports() == {"fraud-stable": (8080, 8080), "fraud-canary": (9090, 9090)},
    )
    k.plugin("promote", "--full", "fraud")
    k.wait_phase("fraud", "Ready")
    k.wait(
        "both backendRefs on 9090",
        lambda: ports() == {"fraud-stable": (9090, 9090), "fraud-canary": (9090, 9090)},
    )


def selects(k: Driver, service: str) -> str | None:
    found = k.get("service", service)
    return found["spec"]["selector"].get(REVISION) if found else None


def test_httproute_a_canary_at_full_weight_aborted_leaves_the_route_on_serving_pods(
    k: Driver, sampler: ReadySampler
) -> None:
    """The stable was scaled to nothing for the canary at 100 %; after the abort the route ends
    on the stable with all of its pods, and fraud-canary, still named by the route, stays."""
    first = routed(k, [{"setWeight": 100}, {"pause": {}}])
    k.patch("md", "fraud", {"spec": V2})
    paused_at(k, 100)
    k.wait("the stable scaled away", lambda: revision_replicas(k, "fraud", first) == 0)
    k.plugin("abort", "fraud")
    k.wait("RolledBack", lambda: status(k)["phase"] == "RolledBack")
    k.wait("the stable back", lambda: revision_replicas(k, "fraud", first) == 4)

    k.wait(
        "all traffic to the stable", lambda: weights(k) == {"fraud-stable": 100, "fraud-canary": 0}
    )
    # the route still names fraud-canary: the Service stays (on the rolled-back revision until a
    # retry or a new spec; on the stable's pods after a promotion)
    assert selects(k, "fraud-canary") is not None
