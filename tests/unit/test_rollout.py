"""The rollout state machine, scenario by scenario, driven through a small fake cluster.

`Rollout` plays the imperative shell: it observes the fake Deployments, asks for measurements when
`analysis_due` says so, calls `decide`, applies the Decision and stores the status. `FakeCluster`
plays Kubernetes: pods asked for become Ready one reconcile later (unless the revision is broken),
and a scale-down removes not-Ready pods first, as a ReplicaSet does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from slipway.api import (
    CanaryReason,
    CanaryState,
    CanaryStep,
    Measurement,
    ModelDeployment,
    PauseStep,
    Phase,
    RevisionPins,
    Verdict,
)
from slipway.rollout import (
    Action,
    Decision,
    Observed,
    ObservedRevision,
    PodFailure,
    Route,
    analysis_due,
    decide,
    heading_for,
)
from slipway.rollout.machine import FIRST_REPORT_SECONDS, RECHECK_SECONDS, ROUTE_RECHECK_SECONDS
from slipway.rollout.times import after, rfc3339

T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
# what the shell pins a new revision to (slipway.resources.pins_for)
PINS = RevisionPins(
    server_image="docker.io/seldonio/mlserver:1.7.1",
    preset_image="docker.io/seldonio/mlserver:1.7.1",
    fetcher_image="ghcr.io/slipway-dev/slipway:0.1.0",
    pod_shape=2,
)

# -- building ModelDeployments ---------------------------------------------------------------------


def model_deployment(
    *,
    version: str = "1.0.0",
    replicas: int = 4,
    rollout: dict[str, Any] | None = None,
    history_limit: int = 3,
    generation: int = 1,
    status: dict[str, Any] | None = None,
) -> ModelDeployment:
    return ModelDeployment.from_body(
        {
            "metadata": {"name": "fraud", "namespace": "ml", "generation": generation},
            "spec": {
                "model": {
                    "version": version,
                    "uri": f"s3://models/fraud/{version}",
                    "format": "sklearn",
                },
                "replicas": replicas,
                "rollout": rollout or {},
                "revisionHistoryLimit": history_limit,
            },
            "status": status or {},
        }
    )


def revision_of(md: ModelDeployment) -> str:
    """The test's own revision hash (the real one lives in slipway.resources)."""
    canonical = json.dumps(md.spec.serving().wire(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def canary_rollout(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"strategy": "Canary", "steps": steps, **extra}


GATEWAY = {"trafficRouting": {"gatewayAPI": {"httpRoute": "fraud"}}}
ANALYSIS = {
    "interval": "30s",
    "failureLimit": 1,
    "prometheus": {"address": "http://prometheus:9090"},
    "metrics": [{"name": "error-rate", "query": "errors{rev='{{canary.revision}}'}", "max": 0.01}],
}


def measured(verdict: Verdict, value: float | None = 0.001, message: str = "") -> list[Measurement]:
    return [
        Measurement(
            metric="error-rate",
            value=value,
            max=0.01,
            verdict=verdict,
            message=message,
            query="errors{rev='abc'}",
            at="2024-05-01T12:00:00Z",
        )
    ]


GOOD = measured(Verdict.SUCCESSFUL, 0.001, "0.001 <= max 0.01")
BAD = measured(Verdict.FAILED, 0.08, "0.08 > max 0.01")
NO_DATA = measured(Verdict.INCONCLUSIVE, None, "no data")


# -- the fake cluster and the fake shell -----------------------------------------------------------


@dataclass
class Pods:
    replicas: int
    ready: int = 0


@dataclass
class FakeCluster:
    """Deployments by revision; broken ones are "not-ready" (never Ready), "crash", or
    "refused" (the cluster refuses to create their pods: quota, Pod Security)."""

    deployments: dict[str, Pods] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    # pods still listed whatever their Deployment wants (one of an attempt before, not yet gone)
    lingering: dict[str, PodFailure] = field(default_factory=dict)

    def observe(self) -> Observed:
        return Observed(
            revisions={
                rev: ObservedRevision(
                    revision=rev,
                    replicas=pods.replicas,
                    ready_replicas=pods.ready,
                    failures=(
                        PodFailure(
                            f"fraud-{rev}-x",
                            True,
                            f"pod fraud-{rev}-x: CrashLoopBackOff (restarts 4)",
                        ),
                    )
                    if self.broken.get(rev) == "crash" and pods.replicas > 0
                    else tuple(f for r, f in self.lingering.items() if r == rev),
                    refused='pods "x" is forbidden: exceeded quota: pods'
                    if self.broken.get(rev) == "refused" and pods.replicas > pods.ready
                    else None,
                )
                for rev, pods in self.deployments.items()
            }
        )

    def apply(self, decision: Decision) -> None:
        wanted = {d.revision: d.replicas for d in decision.revisions}
        for rev in list(self.deployments):
            if rev not in wanted:
                del self.deployments[rev]
        for rev, replicas in wanted.items():
            pods = self.deployments.setdefault(rev, Pods(replicas=0))
            pods.replicas = replicas
            pods.ready = min(pods.ready, replicas)  # not-Ready pods go first

    def settle(self) -> None:
        """Pods asked for become Ready (a reconcile later), unless their revision is broken."""
        for rev, pods in self.deployments.items():
            if rev not in self.broken:
                pods.ready = pods.replicas

    def ready(self, rev: str) -> int:
        pods = self.deployments.get(rev)
        return pods.ready if pods else 0

    def replicas(self, rev: str) -> int:
        pods = self.deployments.get(rev)
        return pods.replicas if pods else 0

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return {rev: (p.replicas, p.ready) for rev, p in self.deployments.items()}


Metrics = Callable[[str], list[Measurement]]


@dataclass
class Rollout:
    """A ModelDeployment, its fake cluster and a clock, reconciled the way the shell does."""

    md: ModelDeployment
    cluster: FakeCluster = field(default_factory=FakeCluster)
    now: dt.datetime = T0
    metrics: Metrics | None = None  # what Prometheus would answer, per canary revision
    decisions: list[Decision] = field(default_factory=list)
    measured_at: list[dt.datetime] = field(default_factory=list)
    pins: RevisionPins = field(
        default_factory=lambda: PINS
    )  # what the operator running now pins new revisions to
    unservable: set[str] = field(default_factory=set)  # revisions whose spec cannot be built
    route_missing: bool = False  # spec.rollout.trafficRouting names an HTTPRoute that is not there

    @classmethod
    def deployed(cls, md: ModelDeployment, **kwargs: Any) -> Rollout:
        """The first revision, Ready at full size."""
        rollout = cls(md=md, **kwargs)
        rollout.converge()
        assert rollout.status.phase is Phase.READY
        return rollout

    @property
    def status(self) -> Any:
        return self.md.status

    @property
    def revision(self) -> str:
        return revision_of(self.md)

    @property
    def last(self) -> Decision:
        return self.decisions[-1]

    def events(self) -> list[tuple[str, str]]:
        return [(e.type, e.reason) for d in self.decisions for e in d.events]

    def reconcile(
        self,
        action: Action | None = None,
        measurements: Sequence[Measurement] | None = None,
    ) -> Decision:
        revision = self.revision
        observed = self.observe()
        target = heading_for(self.md.status, revision, observed)
        due = self.metrics is not None and analysis_due(self.md, target, self.now)
        if measurements is None and due and self.metrics is not None:
            # a round started now (its measurements say when, as the analysis runner's do)
            at = rfc3339(self.now)
            measurements = [m.model_copy(update={"at": at}) for m in self.metrics(target)]
            self.measured_at.append(self.now)
        decision = decide(self.md, revision, observed, measurements, action, self.now, self.pins)
        self.cluster.apply(decision)
        self.md = stored(self.md, decision.status.wire())
        self.decisions.append(decision)
        return decision

    def observe(self) -> Observed:
        """What the shell would gather: the cluster, and the facts about the spec."""
        observed = self.cluster.observe()
        errors = ("spec.model.uri: cannot be served (test)",)
        routing = self.md.spec.rollout.traffic_routing
        wired = routing is not None and routing.gateway_api is not None
        route = Route(name="fraud", exists=True) if wired else None
        if self.route_missing:
            route = Route(name="fraud", exists=False)
        return Observed(
            revisions=observed.revisions,
            spec_errors=errors if self.revision in self.unservable else (),
            route=route,
        )

    def converge(self, max_rounds: int = 40) -> Decision:
        """Reconcile and let pods get Ready until nothing moves, with no time passing."""
        for _ in range(max_rounds):
            before = (self.md.status.wire(), self.cluster.snapshot())
            decision = self.reconcile()
            self.cluster.settle()
            if (self.md.status.wire(), self.cluster.snapshot()) == before:
                return decision
        raise AssertionError(f"no fixed point after {max_rounds} reconciles: {self.md.status}")

    def wait(self, seconds: float) -> Decision:
        self.now += dt.timedelta(seconds=seconds)
        return self.converge()

    def wait_for_requeue(self) -> Decision:
        requeue = self.last.requeue_after
        assert requeue is not None, "expected a timer"
        return self.wait(requeue)

    def change(self, **spec: Any) -> None:
        """A new spec (as `kubectl apply` or Argo CD would write it)."""
        current = self.md.spec.wire()
        version = spec.pop("version", None)
        if version is not None:
            current["model"] = {
                **current["model"],
                "version": version,
                "uri": f"s3://models/fraud/{version}",
            }
        current.update(spec)
        body = {
            "metadata": {**self.md.metadata.wire(), "generation": self.md.metadata.generation + 1},
            "spec": current,
            "status": self.md.status.wire(),
        }
        self.md = ModelDeployment.from_body(body)


def stored(md: ModelDeployment, status: dict[str, Any]) -> ModelDeployment:
    """`md` with `status`, as the API server returns it: only what survives JSON survives."""
    body = {"metadata": md.metadata.wire(), "spec": md.spec.wire(), "status": status}
    return ModelDeployment.from_body(json.loads(json.dumps(body)))


def condition(status: Any, kind: str) -> Any:
    return next(c for c in status.conditions if c.type == kind)


def desired(decision: Decision) -> dict[str, tuple[int, str | None]]:
    return {d.revision: (d.replicas, d.track) for d in decision.revisions}


# -- the first revision ----------------------------------------------------------------------------


def test_first_revision_becomes_stable_directly_without_a_canary() -> None:
    md = model_deployment(replicas=3, rollout=canary_rollout([{"setWeight": 50}]))
    decision = decide(md, revision_of(md), Observed(), None, None, T0, PINS)

    status = decision.status
    assert status.stable is not None and status.canary is None
    assert (status.stable.revision, status.stable.version) == (revision_of(md), "1.0.0")
    assert status.stable.template == md.spec.serving().wire()
    assert status.phase is Phase.PROGRESSING
    assert desired(decision) == {revision_of(md): (3, "stable")}
    assert (decision.stable_weight, decision.canary_weight) == (100, 0)
    assert condition(status, "Ready").status == "False"
    assert condition(status, "Ready").reason == "Deploying"
    assert condition(status, "Progressing").status == "True"
    assert condition(status, "Degraded").status == "False"
    assert status.history == []
    assert decision.requeue_after is None  # pods getting Ready wake the reconcile, not a timer


def test_first_revision_is_ready_and_enters_history_once_all_pods_are_ready() -> None:
    rollout = Rollout(model_deployment(replicas=3))
    rollout.reconcile()
    rollout.cluster.settle()
    decision = rollout.reconcile()

    status = decision.status
    assert status.phase is Phase.READY
    assert (status.replicas, status.ready_replicas) == (3, 3)
    assert [h.revision for h in status.history] == [rollout.revision]
    assert status.history[0].promoted_at == "2024-05-01T12:00:00Z"
    assert condition(status, "Ready").reason == "Serving"
    assert condition(status, "Progressing").status == "False"
    assert ("Normal", "Deployed") in rollout.events()


def first_look(md: ModelDeployment, seconds: float, ready: int, broken: bool = False) -> Decision:
    """A decision on a new ModelDeployment whose status was never written, `seconds` after its
    Deployment was created, with `ready` of its pods Ready."""
    revision = revision_of(md)
    observed = Observed(
        revisions={
            revision: ObservedRevision(
                revision=revision,
                replicas=md.spec.replicas,
                ready_replicas=ready,
                failures=(PodFailure("x", True, "pod x: CrashLoopBackOff (restarts 4)"),)
                if broken
                else (),
                created_at=T0,
            )
        }
    )
    now = T0 + dt.timedelta(seconds=seconds)
    return decide(md, revision, observed, None, None, now, PINS)


def test_a_new_modeldeployments_first_status_waits_for_its_pods_and_says_it_all_once() -> None:
    md = model_deployment(replicas=2)
    first = decide(md, revision_of(md), Observed(), None, None, T0, PINS)
    assert first.report_after == FIRST_REPORT_SECONDS  # no Deployment yet: it is created now
    assert [e.reason for e in first.events] == ["Deploying"]

    assert first_look(md, 4, ready=0).report_after == FIRST_REPORT_SECONDS - 4

    ready = first_look(md, 4, ready=2)
    assert ready.report_after is None
    assert ready.status.phase is Phase.READY
    assert [(e.type, e.reason) for e in ready.events] == [("Normal", "Deployed")]


def test_a_route_sending_the_canary_traffic_is_read_again_until_it_sends_it_none() -> None:
    """The HTTPRoute is not watched: applied again from git mid-canary, its weights are put back
    at the next look, at most ROUTE_RECHECK_SECONDS later."""
    steps = [{"setWeight": 25}, {"pause": {}}]
    rollout = Rollout.deployed(model_deployment(rollout=canary_rollout(steps, **GATEWAY)))
    assert rollout.last.requeue_after is None  # all to the stable: nothing to guard
    rollout.change(version="2.0.0")
    paused = rollout.converge()
    assert paused.canary_weight == 25
    assert paused.requeue_after == ROUTE_RECHECK_SECONDS
    # deleted (a prune) and applied again from git with its own weights: looked at as soon
    rollout.route_missing = True
    assert rollout.reconcile().requeue_after == ROUTE_RECHECK_SECONDS
    rollout.reconcile(action=Action.ABORT)
    rollout.converge()
    # nothing to put back, but Degraded (TrafficRoutingUnavailable) until it is there again
    assert rollout.last.canary_weight == 0
    assert rollout.last.requeue_after == RECHECK_SECONDS
    rollout.route_missing = False
    assert rollout.reconcile().requeue_after is None


def test_a_new_modeldeployment_is_recorded_as_soon_as_one_of_its_pods_serves() -> None:
    """A spec edit must find the revision that serves recorded: without a record the next
    decision would replace it outright."""
    partly = first_look(model_deployment(replicas=2), 1, ready=1)
    assert partly.report_after is None
    assert partly.status.phase is Phase.PROGRESSING


def test_a_new_modeldeployment_whose_pods_take_long_is_reported_progressing() -> None:
    md = model_deployment(replicas=2)
    late = first_look(md, FIRST_REPORT_SECONDS, ready=0)
    assert late.report_after is None
    assert late.status.phase is Phase.PROGRESSING
    assert [e.reason for e in late.events] == ["Deploying"]


def test_a_new_modeldeployment_in_trouble_is_reported_at_once() -> None:
    md = model_deployment(replicas=2)
    crashing = first_look(md, 1, ready=0, broken=True)
    assert crashing.report_after is None
    assert crashing.status.phase is Phase.FAILED


def test_a_new_modeldeployment_with_another_revisions_deployment_is_reported_at_once() -> None:
    md = model_deployment(replicas=2)
    other = ObservedRevision(revision="0ld0ld0ld0", replicas=2, ready_replicas=0)
    observed = Observed(revisions={"0ld0ld0ld0": other})
    assert decide(md, revision_of(md), observed, None, None, T0, PINS).report_after is None


def test_only_the_first_status_of_a_modeldeployment_waits() -> None:
    rollout = Rollout.deployed(model_deployment(replicas=2, rollout=canary_rollout([])))
    rollout.change(version="2.0.0")
    assert rollout.reconcile().report_after is None  # a canary starts: said at once
    scaled = Rollout.deployed(model_deployment(replicas=2))
    scaled.change(replicas=4)
    assert scaled.reconcile().report_after is None


def test_zero_replicas_is_ready_with_zero_pods() -> None:
    md = model_deployment(replicas=0)
    decision = decide(md, revision_of(md), Observed(), None, None, T0, PINS)

    assert decision.status.phase is Phase.READY
    assert condition(decision.status, "Ready").reason == "ScaledToZero"


def test_a_canary_scaled_to_zero_holds_at_its_step_and_is_judged_once_scaled_up() -> None:
    """KEDA scales the model to zero during a canary: its steps do not run out with no pod and
    no traffic to judge, and it is not promoted unseen; scaled up, it is judged (and fails)."""
    rollout = analysed(
        [{"setWeight": 25}, {"pause": {"duration": "1m"}}, {"setWeight": 50}], lambda rev: BAD
    )
    first = rollout.revision
    rollout.change(version="2.0.0")
    rollout.reconcile()  # canary 2.0.0 starts; its pod is not Ready yet
    rollout.change(replicas=0)
    for _ in range(5):
        decision = rollout.wait(120)
        assert decision.status.stable.revision == first
        assert decision.status.canary is not None
        assert decision.status.canary.step == 0

    rollout.change(replicas=4)
    rollout.converge()
    decision = rollout.wait(60)
    assert decision.status.phase is Phase.ROLLED_BACK
    assert decision.status.stable.revision == first


def test_a_canary_promoting_when_scaled_to_zero_waits_for_replicas() -> None:
    rollout = canary_at_first_pause([{"setWeight": 50}, {"pause": {}}])
    rollout.change(replicas=0)
    rollout.reconcile(action=Action.PROMOTE)  # its last step done: it is to be promoted
    decision = rollout.converge()
    assert decision.status.canary is not None
    assert decision.status.canary.state is CanaryState.PROMOTING
    rollout.change(replicas=2)
    decision = rollout.converge()
    assert decision.status.canary is None
    assert decision.status.stable.revision == rollout.revision


def test_a_first_revision_that_never_got_ready_is_replaced_outright_by_a_new_spec() -> None:
    rollout = Rollout(model_deployment(rollout=canary_rollout([{"setWeight": 50}])))
    first = rollout.revision
    rollout.cluster.broken[first] = "not-ready"
    rollout.converge()
    rollout.change(version="2.0.0")
    decision = rollout.converge()

    assert decision.status.stable.revision == rollout.revision
    assert decision.status.canary is None
    assert first not in rollout.cluster.deployments
    assert ("Normal", "Replaced") in rollout.events()


# -- the steady state ------------------------------------------------------------------------------


def test_scaling_up_a_ready_stable_is_progress_until_the_new_pods_are_ready() -> None:
    rollout = Rollout.deployed(model_deployment(replicas=2))
    rollout.change(replicas=4)
    decision = rollout.reconcile()

    assert desired(decision) == {rollout.revision: (4, "stable")}
    assert decision.status.phase is Phase.PROGRESSING
    assert decision.status.replicas == 4
    assert condition(decision.status, "Ready").reason == "ReplicasUnavailable"
    assert condition(decision.status, "Degraded").status == "False"
    rollout.cluster.settle()
    assert rollout.reconcile().status.phase is Phase.READY


def test_a_crash_looping_stable_is_degraded_and_says_which_pod() -> None:
    rollout = Rollout.deployed(model_deployment(replicas=2))
    rollout.cluster.broken[rollout.revision] = "crash"
    rollout.cluster.deployments[rollout.revision].ready = 1
    decision = rollout.reconcile()

    assert decision.status.phase is Phase.DEGRADED
    degraded = condition(decision.status, "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "StableCrashLooping")
    assert "CrashLoopBackOff" in degraded.message


# -- canary steps and traffic ----------------------------------------------------------------------

PAUSED_STEPS = [
    {"setWeight": 25},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 75},
    {"pause": {}},
]


@pytest.mark.parametrize(
    ("routing", "replicas", "expected"),
    [
        pytest.param(
            {},
            4,
            # (step, canary replicas, stable replicas, weight in effect)
            [(1, 1, 3, 25), (3, 2, 2, 50), (5, 3, 1, 75)],
            id="replica-ratio-4",
        ),
        pytest.param(
            {},
            10,
            [(1, 3, 7, 30), (3, 5, 5, 50), (5, 8, 2, 80)],
            id="replica-ratio-10-is-the-share-of-ready-pods",
        ),
        pytest.param(
            GATEWAY,
            10,
            [(1, 3, 8, 25), (3, 5, 5, 50), (5, 8, 3, 75)],
            id="httproute-10-is-the-step-weight",
        ),
    ],
)
def test_a_canary_goes_through_every_step_to_promotion_with_the_weight_of_each_step(
    routing: dict[str, Any], replicas: int, expected: list[tuple[int, int, int, int]]
) -> None:
    rollout = Rollout.deployed(
        model_deployment(replicas=replicas, rollout=canary_rollout(PAUSED_STEPS, **routing))
    )
    stable = rollout.revision
    rollout.change(version="2.0.0")
    canary = rollout.revision

    for step, canary_replicas, stable_replicas, weight in expected:
        decision = rollout.converge()
        status = decision.status
        assert status.canary.step == step
        assert status.phase is Phase.PAUSED
        assert condition(status, "Progressing").reason == "WaitingForPromotion"
        assert (status.canary.replicas, status.stable.replicas) == (
            canary_replicas,
            stable_replicas,
        )
        assert (status.canary.weight, decision.canary_weight) == (weight, weight)
        assert decision.stable_weight == 100 - weight
        assert status.ready_replicas >= replicas
        rollout.reconcile(action=Action.PROMOTE)

    decision = rollout.converge()
    status = decision.status
    assert status.phase is Phase.READY
    assert status.canary is None
    assert status.stable.revision == canary
    assert [h.revision for h in status.history] == [canary, stable]
    assert (decision.stable_weight, decision.canary_weight) == (100, 0)
    assert desired(decision)[canary] == (replicas, "stable")
    assert ("Normal", "Promoted") in rollout.events()


def test_weights_never_go_to_a_canary_without_ready_pods_and_never_go_backwards_on_the_way() -> (
    None
):
    rollout = Rollout.deployed(
        model_deployment(replicas=10, rollout=canary_rollout(PAUSED_STEPS, **GATEWAY))
    )
    rollout.change(version="2.0.0")
    for _ in range(3):
        rollout.converge()
        rollout.reconcile(action=Action.PROMOTE)
    rollout.converge()

    weights = [d.canary_weight for d in rollout.decisions if d.status.canary is not None]
    assert weights == sorted(weights)
    for decision in rollout.decisions:
        canary = decision.status.canary
        if canary is not None and canary.ready_replicas == 0:
            assert decision.canary_weight == 0


def at_full_weight_behind_a_route(replicas: int) -> Rollout:
    """A canary at setWeight 100 and paused there: the stable has no pod left."""
    steps = [{"setWeight": 100}, {"pause": {}}]
    md = model_deployment(replicas=replicas, rollout=canary_rollout(steps, **GATEWAY))
    rollout = Rollout.deployed(md)
    rollout.change(version="2.0.0")
    rollout.converge()
    stable = rollout.status.stable.revision
    assert rollout.cluster.snapshot()[stable] == (0, 0)
    assert rollout.last.canary_weight == 100
    return rollout


def route_weights_while_pods_come(rollout: Rollout) -> list[tuple[int, int, int]]:
    """(canary weight, Ready stable pods, Ready canary pods) of each reconcile until it settles,
    the pods asked for getting Ready one reconcile later."""
    seen = []
    for _ in range(20):
        decision = rollout.reconcile()
        stable, canary = rollout.status.stable.revision, rollout.status.canary
        seen.append(
            (
                decision.canary_weight,
                rollout.cluster.ready(stable),
                rollout.cluster.ready(canary.revision) if canary else 0,
            )
        )
        rollout.cluster.settle()
    return seen


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"replicas": 8}, id="replicas-raised"),
        pytest.param(
            {"rollout": canary_rollout([{"setWeight": 50}, {"pause": {}}], **GATEWAY)},
            id="the-steps-weight-lowered",
        ),
    ],
)
def test_a_route_gives_a_stable_no_more_than_its_ready_pods_carry_while_the_canary_serves(
    change: dict[str, Any],
) -> None:
    """At 100 % the stable has no pod. More replicas (an HPA) or a lower step weight must not send
    the stable a share before its pods are Ready: until then the canary keeps the traffic."""
    rollout = at_full_weight_behind_a_route(replicas=4)
    rollout.change(**change)

    seen = route_weights_while_pods_come(rollout)

    for weight, stable_ready, canary_ready in seen:
        if stable_ready == 0 and canary_ready > 0:
            assert weight == 100, seen
        if stable_ready > 0 and canary_ready > 0:
            # the share of each no more than its share of the Ready pods allows
            assert 100 - weight <= 100 * stable_ready // (stable_ready + canary_ready) + 1, seen
    expected = 100 if "replicas" in change else 50
    assert seen[-1][0] == expected, seen


def test_a_timed_pause_waits_its_duration_and_asks_to_be_woken_then() -> None:
    steps = [{"setWeight": 50}, {"pause": {"duration": "2m"}}, {"setWeight": 100}]
    rollout = Rollout.deployed(model_deployment(replicas=2, rollout=canary_rollout(steps)))
    rollout.change(version="2.0.0")
    decision = rollout.converge()

    assert decision.status.canary.step == 1
    assert decision.status.phase is Phase.PROGRESSING
    assert decision.requeue_after == 120
    decision = rollout.wait(119)
    assert decision.status.canary.step == 1
    assert decision.requeue_after == 1
    decision = rollout.wait(1)
    assert decision.status.canary is None
    assert decision.status.stable.revision == rollout.revision


def test_stable_pods_go_only_after_the_canary_pods_that_replace_them_are_ready() -> None:
    rollout = Rollout.deployed(
        model_deployment(replicas=4, rollout=canary_rollout([{"setWeight": 50}, {"pause": {}}]))
    )
    stable = rollout.revision
    rollout.change(version="2.0.0")
    canary = rollout.revision

    first = rollout.reconcile()
    assert desired(first) == {stable: (4, "stable"), canary: (1, "canary")}  # a surge of one
    second = rollout.reconcile()  # the canary pod is not Ready yet: nothing moves
    assert desired(second) == desired(first)
    assert second.canary_weight == 0
    rollout.cluster.settle()
    third = rollout.reconcile()
    assert desired(third) == {stable: (3, "stable"), canary: (2, "canary")}


def test_max_unavailable_lets_a_model_without_room_to_surge_move_one_pod_at_a_time() -> None:
    rollout = Rollout.deployed(
        model_deployment(
            replicas=2,
            rollout=canary_rollout(
                [{"setWeight": 50}, {"pause": {}}], maxSurge=0, maxUnavailable=1
            ),
        )
    )
    stable = rollout.revision
    rollout.change(version="2.0.0")
    decision = rollout.reconcile()

    assert desired(decision) == {stable: (1, "stable"), rollout.revision: (1, "canary")}


def test_rolling_brings_the_new_revision_to_full_size_and_promotes_it_when_ready() -> None:
    rollout = Rollout.deployed(model_deployment(replicas=4, rollout={"strategy": "Rolling"}))
    old = rollout.revision
    rollout.change(version="2.0.0")
    decision = rollout.converge()

    assert decision.status.canary is None
    assert decision.status.stable.revision == rollout.revision
    assert desired(decision)[rollout.revision] == (4, "stable")
    assert desired(rollout.wait(30)) == {rollout.revision: (4, "stable"), old: (0, None)}
    surges = [sum(r.replicas for r in d.revisions) for d in rollout.decisions]
    assert max(surges) <= 5  # maxSurge 25% of 4


def test_promotion_keeps_the_old_stable_serving_through_the_scale_down_delay() -> None:
    rollout = Rollout.deployed(
        model_deployment(
            replicas=4,
            rollout=canary_rollout([{"setWeight": 50}], scaleDownDelaySeconds=60, **GATEWAY),
        )
    )
    old = rollout.revision
    rollout.change(version="2.0.0")
    decision = rollout.converge()

    assert decision.status.stable.revision == rollout.revision
    kept = desired(decision)[old]
    assert kept[1] is None and kept[0] > 0
    assert decision.requeue_after == 60
    decision = rollout.wait(60)
    assert desired(decision)[old] == (0, None)
    assert decision.requeue_after is None


@pytest.mark.parametrize(
    "routing", [pytest.param({}, id="ratio"), pytest.param(GATEWAY, id="route")]
)
@pytest.mark.parametrize("history_limit", [3, 0])
def test_an_old_stable_past_its_delay_goes_only_as_its_successor_serves(
    routing: dict[str, Any], history_limit: int
) -> None:
    """Through Service <name> the old stable serves until its delay ends (with a route too: the
    route's traffic goes to <name>-stable, but <name> selects every serving pod); a new stable
    that is all unready just then keeps it until the new stable is back. With no history kept
    (`revisionHistoryLimit: 0`) too: the old stable leaves history only once its pods are gone,
    its Deployment is not deleted under the users it serves."""
    steps = [{"setWeight": 50}]
    md = model_deployment(
        replicas=4,
        history_limit=history_limit,
        rollout=canary_rollout(steps, scaleDownDelaySeconds=60, **routing),
    )
    rollout = Rollout.deployed(md)
    old = rollout.revision
    rollout.change(version="2.0.0")
    rollout.converge()
    kept = rollout.cluster.replicas(old)
    assert kept > 0
    rollout.cluster.deployments[rollout.revision].ready = 0  # the new stable blips

    rollout.now += dt.timedelta(seconds=60)
    decision = rollout.reconcile()

    assert desired(decision)[old][0] == kept
    rollout.cluster.settle()
    decision = rollout.converge()
    if history_limit:
        assert desired(decision)[old] == (0, None)
    else:
        assert old not in desired(decision)
        assert [h.revision for h in decision.status.history] == [rollout.revision]


def test_a_next_canary_gets_its_surge_while_an_old_stable_is_kept() -> None:
    """An old stable kept through a long delay takes no room from the next canary's surge."""
    steps = [{"setWeight": 50}]
    md = model_deployment(
        replicas=4,
        rollout=canary_rollout(
            steps, scaleDownDelaySeconds=900, progressDeadlineSeconds=600, **GATEWAY
        ),
    )
    rollout = Rollout.deployed(md)
    first = rollout.revision
    rollout.change(version="2.0.0")
    rollout.converge()
    assert rollout.cluster.replicas(first) > 0
    rollout.change(version="3.0.0")
    rollout.converge()

    assert rollout.status.stable.revision == rollout.revision, rollout.cluster.snapshot()


@pytest.mark.parametrize(
    "routing", [pytest.param({}, id="ratio"), pytest.param(GATEWAY, id="route")]
)
def test_an_old_stable_that_its_successor_cannot_replace_whole_keeps_no_room(
    routing: dict[str, Any],
) -> None:
    """A new stable left at 3 of 4 Ready after the delay: the old stable's Ready pod stays as
    capacity (replica ratio), and the next canary still gets its surge and is promoted."""
    md = model_deployment(
        replicas=4,
        rollout=canary_rollout([{"setWeight": 50}], scaleDownDelaySeconds=30, **routing),
    )
    rollout = Rollout.deployed(md)
    rollout.change(version="2.0.0")
    rollout.converge()
    second = rollout.revision
    rollout.cluster.broken[second] = "not-ready"
    rollout.cluster.deployments[second].ready = 3
    rollout.wait(300)
    rollout.change(version="3.0.0")
    rollout.converge()

    assert rollout.status.stable.revision == rollout.revision, rollout.cluster.snapshot()


def test_a_held_canary_keeps_the_stable_within_the_surge_when_scaled() -> None:
    """Held (autoRollback false), the stable gives up no pod it has, but follows kubectl scale
    and the surge budget both ways."""
    md = model_deployment(
        replicas=4,
        rollout=canary_rollout(
            [{"setWeight": 50}, {"pause": {}}], analysis=ANALYSIS, autoRollback=False, **GATEWAY
        ),
    )
    rollout = Rollout.deployed(md, metrics=lambda rev: BAD)
    rollout.change(version="2.0.0")
    rollout.converge()
    for _ in range(4):
        rollout.wait(60)
    assert rollout.status.canary.state is CanaryState.FAILED
    stable, canary = rollout.status.stable.revision, rollout.status.canary.revision

    for replicas, surge in ((8, 2), (3, 1)):
        rollout.change(replicas=replicas)
        rollout.converge()
        pods = rollout.cluster.replicas(stable) + rollout.cluster.replicas(canary)
        assert pods <= replicas + surge, (replicas, rollout.cluster.snapshot())


# -- analysis --------------------------------------------------------------------------------------


def analysed(steps: list[dict[str, Any]], metrics: Metrics, **extra: Any) -> Rollout:
    md = model_deployment(replicas=4, rollout=canary_rollout(steps, analysis=ANALYSIS, **extra))
    return Rollout.deployed(md, metrics=metrics)


def test_analysis_waits_an_interval_after_the_canary_is_ready_then_measures_every_interval() -> (
    None
):
    rollout = analysed([{"setWeight": 25}, {"pause": {"duration": "5m"}}], lambda rev: GOOD)
    rollout.change(version="2.0.0")
    decision = rollout.converge()

    assert rollout.measured_at == []
    assert decision.status.canary.step == 0  # no step passes on no evidence
    assert decision.requeue_after == 30
    decision = rollout.wait(30)
    assert rollout.measured_at == [T0 + dt.timedelta(seconds=30)]
    assert decision.status.canary.step == 1
    assert decision.status.analysis.successes == 1
    assert decision.requeue_after == 30
    rollout.wait(30)
    assert len(rollout.measured_at) == 2


def test_a_canary_with_analysis_but_no_steps_is_promoted_only_after_a_successful_measurement() -> (
    None
):
    rollout = analysed([], lambda rev: GOOD)
    rollout.change(version="2.0.0")
    decision = rollout.converge()

    assert decision.status.canary is not None
    decision = rollout.wait(30)
    assert decision.status.canary is None
    assert decision.status.stable.revision == rollout.revision


def test_failed_analysis_rolls_back_and_keeps_stable_serving_with_the_measurement_in_status() -> (
    None
):
    rollout = analysed([{"setWeight": 50}, {"pause": {}}], lambda rev: BAD)
    stable = rollout.revision
    rollout.change(version="2.0.0")
    canary = rollout.revision
    rollout.converge()
    rollout.wait(30)  # failure 1: tolerated (failureLimit 1)
    assert rollout.status.canary.state is CanaryState.PROGRESSING
    assert rollout.status.canary.step == 0
    assert ("Warning", "AnalysisMeasurementFailed") in rollout.events()

    rollout.now += dt.timedelta(seconds=30)
    decision = rollout.reconcile()  # failure 2: rolled back
    status = decision.status
    assert status.phase is Phase.ROLLED_BACK
    assert status.canary.state is CanaryState.ROLLED_BACK
    assert status.canary.reason is CanaryReason.ANALYSIS_FAILED
    # by replica ratio its two Ready pods still take their share until the stable is back
    assert decision.canary_weight == 50
    degraded = condition(status, "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "AnalysisFailed")
    for text in ("error-rate", "0.08", "max 0.01", "errors{rev='abc'}"):
        assert text in degraded.message
    warning = [e for e in decision.events if e.type == "Warning"]
    assert [e.reason for e in warning] == ["RolledBack"]
    assert "error-rate = 0.08" in warning[0].message
    # stable back to full first; the canary keeps its Ready pods until then
    assert desired(decision) == {stable: (4, "stable"), canary: (2, "canary")}
    decision = rollout.converge()
    assert desired(decision) == {stable: (4, "stable"), canary: (0, "canary")}
    assert decision.canary_weight == 0
    assert condition(decision.status, "Ready").status == "True"
    assert [m.verdict for m in decision.status.analysis.measurements] == [Verdict.FAILED] * 2


def test_no_data_pauses_the_canary_and_never_rolls_it_back_and_data_lets_it_go_on() -> None:
    answers = {"now": NO_DATA}
    rollout = analysed(
        [{"setWeight": 50}, {"pause": {"duration": "1m"}}], lambda rev: answers["now"]
    )
    rollout.change(version="2.0.0")
    rollout.converge()
    decision = rollout.wait(30)

    status = decision.status
    assert status.phase is Phase.PAUSED
    assert status.canary.state is CanaryState.PAUSED
    assert status.canary.reason is CanaryReason.ANALYSIS_INCONCLUSIVE
    progressing = condition(status, "Progressing")
    assert (progressing.status, progressing.reason) == ("True", "AnalysisInconclusive")
    assert "error-rate = no data" in progressing.message
    assert "errors{rev='abc'}" in progressing.message
    for _ in range(30):  # 15 minutes without data: past the progress deadline, never rolled back
        decision = rollout.wait(30)
    assert decision.status.phase is Phase.PAUSED
    assert decision.status.canary.state is CanaryState.PAUSED
    assert decision.status.analysis.inconclusive == 31
    assert rollout.events().count(("Warning", "AnalysisInconclusive")) == 1

    answers["now"] = GOOD
    decision = rollout.wait(30)
    assert decision.status.phase is Phase.PROGRESSING
    assert decision.status.canary.state is CanaryState.PROGRESSING
    assert decision.status.canary.step == 1
    assert ("Normal", "AnalysisResumed") in rollout.events()
    decision = rollout.wait(60)
    assert decision.status.stable.revision == rollout.revision


def test_a_query_error_pauses_like_missing_data() -> None:
    error = measured(Verdict.ERROR, None, "query failed: cannot query Prometheus")
    rollout = analysed([{"setWeight": 50}], lambda rev: error)
    rollout.change(version="2.0.0")
    rollout.converge()
    decision = rollout.wait(30)

    assert decision.status.phase is Phase.PAUSED
    assert "cannot query Prometheus" in condition(decision.status, "Progressing").message


def test_the_user_pausing_stops_analysis_and_an_inconclusive_pause_does_not_override_it() -> None:
    rollout = analysed([{"setWeight": 50}, {"pause": {}}], lambda rev: GOOD)
    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.reconcile(action=Action.PAUSE)
    rollout.wait(300)

    assert rollout.measured_at == []
    assert condition(rollout.status, "Progressing").reason == "RolloutPaused"


def test_measurements_are_bounded_and_counts_reset_for_a_new_canary() -> None:
    rollout = analysed([{"setWeight": 50}, {"pause": {}}], lambda rev: GOOD)
    rollout.change(version="2.0.0")
    rollout.converge()
    for _ in range(15):
        rollout.wait(30)
    assert rollout.status.analysis.successes == 15
    assert len(rollout.status.analysis.measurements) == 10

    rollout.change(version="3.0.0")
    rollout.converge()
    assert rollout.status.analysis.revision == rollout.revision
    assert (rollout.status.analysis.successes, rollout.status.analysis.measurements) == (0, [])


def test_a_round_started_before_a_retry_is_not_counted_against_it() -> None:
    """An analysis round in flight through a rollback and a quick retry (a round can take a
    minute against a slow Prometheus) measured the attempt before: it must not fail this one."""
    rollout = analysed([{"setWeight": 50}, {"pause": {}}], lambda rev: GOOD)
    rollout.change(version="2.0.0")
    rollout.converge()
    round_started = rfc3339(rollout.now)
    rollout.reconcile(action=Action.ABORT)
    rollout.converge()
    rollout.now += dt.timedelta(seconds=20)
    rollout.reconcile(action=Action.RETRY)
    stale = [m.model_copy(update={"at": round_started}) for m in BAD]
    decision = rollout.reconcile(measurements=stale)

    assert decision.status.canary.state is CanaryState.PROGRESSING
    assert decision.status.analysis is None or decision.status.analysis.failures == 0
    rollout.converge()  # its pods Ready again: a round of its own counts
    fresh = [m.model_copy(update={"at": rfc3339(rollout.now)}) for m in BAD]
    assert rollout.reconcile(measurements=fresh).status.analysis.failures == 1


def test_a_rolled_back_canary_can_be_retried_with_its_counts_reset() -> None:
    verdicts = {"now": BAD}
    rollout = analysed(
        [{"setWeight": 50}, {"pause": {"duration": "1m"}}],
        lambda rev: verdicts["now"],
    )
    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.wait(30)
    rollout.wait(30)
    assert rollout.status.phase is Phase.ROLLED_BACK
    rollout.wait(3600)  # rolled back stays rolled back while spec stays
    assert rollout.status.phase is Phase.ROLLED_BACK
    assert rollout.cluster.replicas(rollout.revision) == 0

    verdicts["now"] = GOOD
    decision = rollout.reconcile(action=Action.RETRY)
    assert decision.status.canary.step == 0
    assert decision.status.canary.state is CanaryState.PROGRESSING
    assert decision.status.analysis.failures == 0
    assert condition(decision.status, "Degraded").status == "False"
    rollout.converge()
    rollout.wait(30)
    rollout.wait(60)
    assert rollout.status.stable.revision == rollout.revision


# -- other failures --------------------------------------------------------------------------------


def test_a_canary_that_never_gets_ready_is_rolled_back_at_the_progress_deadline() -> None:
    rollout = Rollout.deployed(
        model_deployment(
            replicas=3,
            rollout=canary_rollout([{"setWeight": 50}], progressDeadlineSeconds=300),
        )
    )
    stable = rollout.revision
    rollout.change(version="2.0.0")
    rollout.cluster.broken[rollout.revision] = "not-ready"
    decision = rollout.converge()

    assert decision.requeue_after == 300
    assert decision.status.ready_replicas == 3  # it took no capacity from the stable
    decision = rollout.wait(299)
    assert decision.status.phase is Phase.PROGRESSING
    decision = rollout.wait(1)
    assert decision.status.phase is Phase.ROLLED_BACK
    degraded = condition(decision.status, "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "ProgressDeadlineExceeded")
    assert "0/2 Ready pods 300s after step 1/1 (setWeight 50)" in degraded.message
    assert desired(decision) == {stable: (3, "stable"), rollout.revision: (0, "canary")}
    assert ("Warning", "RolledBack") in rollout.events()


def test_a_crash_looping_canary_is_rolled_back_at_once_with_the_pod_that_crashes() -> None:
    rollout = Rollout.deployed(
        model_deployment(replicas=3, rollout=canary_rollout([{"setWeight": 50}]))
    )
    rollout.change(version="2.0.0")
    rollout.cluster.broken[rollout.revision] = "crash"
    rollout.reconcile()
    decision = rollout.reconcile()

    assert decision.status.phase is Phase.ROLLED_BACK
    degraded = condition(decision.status, "Degraded")
    assert degraded.reason == "CanaryCrashLooping"
    assert "CrashLoopBackOff (restarts 4)" in degraded.message


def test_a_retried_canary_is_judged_on_its_own_pods_not_on_those_of_the_attempt_before() -> None:
    """Found on a real node: the retry of a canary rolled back for crashing pods was rolled back
    again at once, on a pod of the failed attempt that was still listed."""
    rollout = Rollout.deployed(
        model_deployment(replicas=3, rollout=canary_rollout([{"setWeight": 50}]))
    )
    rollout.change(version="2.0.0")
    canary = rollout.revision
    rollout.cluster.broken[canary] = "crash"
    rollout.reconcile()
    rollout.reconcile()
    assert rollout.status.phase is Phase.ROLLED_BACK
    crashed_at = rollout.now
    rollout.cluster.broken.pop(canary)  # the bytes are fixed
    old = PodFailure("fraud-old", True, "pod fraud-old: CrashLoopBackOff (restarts 4)", crashed_at)
    rollout.cluster.lingering[canary] = old

    rollout.now += dt.timedelta(seconds=20)
    decision = rollout.reconcile(action=Action.RETRY)
    assert decision.status.canary.state is CanaryState.PROGRESSING
    decision = rollout.reconcile()
    assert decision.status.canary.state is CanaryState.PROGRESSING, decision.status.canary
    assert condition(decision.status, "Degraded").status == "False"

    # a pod of this attempt that crashes fails it, and is the one named
    rollout.now += dt.timedelta(seconds=5)
    new = PodFailure("fraud-new", True, "pod fraud-new: CrashLoopBackOff (restarts 3)", rollout.now)
    rollout.cluster.lingering[canary] = new
    decision = rollout.reconcile()
    assert decision.status.phase is Phase.ROLLED_BACK
    assert "fraud-new" in condition(decision.status, "Degraded").message


@pytest.mark.parametrize("ahead", [0, 1, 4])
def test_a_canary_crashing_is_rolled_back_with_the_operators_clock_ahead_of_the_api_servers(
    ahead: int,
) -> None:
    """A pod's creationTimestamp is the API server's clock, the attempt's start the operator's:
    an operator whose node runs a few seconds ahead must still judge its canary's own pods (a
    container's restarts make no new pod: missed once, missed for the whole attempt)."""
    rollout = Rollout.deployed(
        model_deployment(replicas=3, rollout=canary_rollout([{"setWeight": 50}, {"pause": {}}]))
    )
    rollout.change(version="2.0.0")
    canary = rollout.revision
    rollout.converge()
    assert rollout.status.phase is Phase.PAUSED
    created = rollout.now - dt.timedelta(seconds=ahead)  # the same moment, on the server's clock
    rollout.cluster.lingering[canary] = PodFailure(
        "fraud-x", True, "pod fraud-x: CrashLoopBackOff (restarts 4)", created
    )

    decision = rollout.reconcile()

    assert decision.status.phase is Phase.ROLLED_BACK
    assert "fraud-x" in condition(decision.status, "Degraded").message


def test_without_auto_rollback_a_failed_canary_is_held_degraded_where_it_is() -> None:
    rollout = analysed([{"setWeight": 50}, {"pause": {}}], lambda rev: BAD, autoRollback=False)
    stable = rollout.revision
    rollout.change(version="2.0.0")
    canary = rollout.revision
    rollout.converge()
    rollout.wait(30)
    decision = rollout.wait(30)

    status = decision.status
    assert status.phase is Phase.DEGRADED
    assert status.canary.state is CanaryState.FAILED
    assert status.canary.reason is CanaryReason.ANALYSIS_FAILED
    assert condition(status, "Degraded").reason == "AnalysisFailed"
    assert condition(status, "Progressing").status == "False"
    assert desired(decision) == {stable: (2, "stable"), canary: (2, "canary")}
    assert ("Warning", "AnalysisFailed") in rollout.events()
    rollout.wait(3600)
    assert rollout.status.canary.step == 0  # held: no more progress, no more analysis
    assert len(rollout.measured_at) == 2

    decision = rollout.reconcile(action=Action.ABORT)
    assert decision.status.phase is Phase.ROLLED_BACK


def beyond_the_schema(md: ModelDeployment, **rollout: Any) -> ModelDeployment:
    """`md` with rollout fields the schema refuses: an object stored before the bounds were."""
    spec = md.spec.model_copy(update={"rollout": md.spec.rollout.model_copy(update=rollout)})
    return md.model_copy(update={"spec": spec})


def decided(rollout: Rollout, md: ModelDeployment) -> Decision:
    return decide(md, rollout.revision, rollout.observe(), None, None, rollout.now, PINS)


ENDLESS = "9" * 30 + "h"


def test_a_wait_longer_than_the_calendar_never_ends_and_never_fails_the_reconcile() -> None:
    steps = [{"setWeight": 50}, {"pause": {"duration": "1m"}}]
    rollout = Rollout.deployed(
        model_deployment(replicas=2, rollout=canary_rollout(steps, **GATEWAY))
    )
    stable = rollout.revision
    rollout.change(version="2.0.0")
    rollout.reconcile()  # the canary's pod is not Ready yet: the progress deadline runs

    decision = decided(rollout, beyond_the_schema(rollout.md, progress_deadline_seconds=10**15))
    assert decision.status.phase is Phase.PROGRESSING
    assert decision.requeue_after is not None and decision.requeue_after > 10**9

    rollout.converge()
    assert rollout.status.canary.step == 1
    endless = CanaryStep.model_construct(pause=PauseStep.model_construct(duration=ENDLESS))
    paused = [rollout.md.spec.rollout.steps[0], endless]
    decision = decided(rollout, beyond_the_schema(rollout.md, steps=paused))
    assert decision.status.canary.step == 1
    # no timer but the route's next look (it sends the canary 50 %): the pause never ends
    assert decision.requeue_after == ROUTE_RECHECK_SECONDS

    rollout.wait(60)
    assert rollout.status.stable.revision == rollout.revision
    rollout.now += dt.timedelta(seconds=30)  # past the scale-down delay of 30s
    decision = decided(rollout, beyond_the_schema(rollout.md, scale_down_delay_seconds=10**15))
    assert desired(decision)[stable][0] > 0  # the old stable keeps serving, with no end


@pytest.mark.parametrize("seconds", [10**15, 1e30, float("inf")])
def test_a_moment_past_the_last_one_a_datetime_holds_is_the_end_of_time(seconds: float) -> None:
    assert after("2024-05-01T12:00:00Z", seconds) == dt.datetime.max.replace(tzinfo=dt.UTC)


# -- actions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps, passed",
    [
        ([{"setWeight": 50}, {"pause": {"duration": "0s"}}], "step 2/2 (pause 0s)"),
        (
            [{"setWeight": 50}, {"pause": {"duration": "0s"}}, {"setWeight": 50}],
            "step 2/3 (pause 0s), step 3/3 (setWeight 50)",
        ),
    ],
)
def test_steps_passed_in_one_decision_give_one_canary_step_event_naming_them(
    steps: list[dict[str, Any]], passed: str
) -> None:
    """A 0 s pause (or a step already at its weight) is entered and passed in the decision that
    entered it: that decision says where the canary stands once, naming what it passed, in
    place of one CanaryStep Event per step (an API write each)."""
    rollout = Rollout.deployed(model_deployment(replicas=2, rollout=canary_rollout(steps)))
    rollout.change(version="2.0.0")
    rollout.converge()

    assert rollout.status.phase is Phase.READY
    per_decision = [[e for e in d.events if e.reason == "CanaryStep"] for d in rollout.decisions]
    assert all(len(events) <= 1 for events in per_decision)
    messages = [events[0].message for events in per_decision if events]
    assert len(messages) == 1
    assert messages[0].startswith("all ")
    assert messages[0].endswith(f"({passed} passed at once)")


def canary_at_first_pause(steps: list[dict[str, Any]] | None = None, **extra: Any) -> Rollout:
    rollout = Rollout.deployed(
        model_deployment(replicas=4, rollout=canary_rollout(steps or PAUSED_STEPS, **extra))
    )
    rollout.change(version="2.0.0")
    rollout.converge()
    return rollout


def test_promote_completes_the_current_step() -> None:
    rollout = canary_at_first_pause()
    decision = rollout.reconcile(action=Action.PROMOTE)

    assert decision.status.canary.step == 2
    assert decision.status.last_action == "promote at 2024-05-01T12:00:00Z"
    assert ("Normal", "Promote") in [(e.type, e.reason) for e in decision.events]


def test_promote_also_lifts_an_inconclusive_pause() -> None:
    rollout = analysed([{"setWeight": 50}, {"pause": {}}, {"setWeight": 75}], lambda rev: NO_DATA)
    rollout.change(version="2.0.0")
    rollout.converge()
    assert rollout.wait(30).status.phase is Phase.PAUSED
    decision = rollout.reconcile(action=Action.PROMOTE)

    assert decision.status.canary.step == 1
    # step 2 is a pause without a duration: the inconclusive pause is lifted, that one holds
    assert decision.status.canary.reason is CanaryReason.WAITING_FOR_PROMOTION


def test_promote_overrides_a_failure_held_without_auto_rollback() -> None:
    rollout = analysed([{"setWeight": 50}, {"pause": {}}], lambda rev: BAD, autoRollback=False)
    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.wait(30)
    rollout.wait(30)
    assert rollout.status.phase is Phase.DEGRADED
    decision = rollout.reconcile(action=Action.PROMOTE)

    assert decision.status.canary.reason is CanaryReason.WAITING_FOR_PROMOTION
    assert decision.status.canary.step == 1
    assert decision.status.phase is Phase.PAUSED
    assert condition(decision.status, "Degraded").status == "False"


def test_promote_full_skips_the_steps_but_gives_weight_only_to_ready_pods() -> None:
    rollout = canary_at_first_pause()
    decision = rollout.reconcile(action=Action.PROMOTE_FULL)

    assert decision.status.canary.step == len(PAUSED_STEPS)
    assert decision.canary_weight == 25  # the one Ready pod of four
    decision = rollout.converge()
    assert decision.status.stable.revision == rollout.revision


def test_promote_full_on_a_canary_without_ready_pods_waits_for_them() -> None:
    rollout = Rollout.deployed(
        model_deployment(replicas=4, rollout=canary_rollout(PAUSED_STEPS, **GATEWAY))
    )
    rollout.change(version="2.0.0")
    rollout.cluster.broken[rollout.revision] = "not-ready"
    rollout.reconcile()
    decision = rollout.reconcile(action=Action.PROMOTE_FULL)

    assert decision.canary_weight == 0
    assert decision.status.canary is not None
    del rollout.cluster.broken[rollout.revision]
    assert rollout.converge().status.stable.revision == rollout.revision


def test_abort_rolls_back_with_reason_aborted() -> None:
    rollout = canary_at_first_pause()
    decision = rollout.reconcile(action=Action.ABORT)

    assert decision.status.phase is Phase.ROLLED_BACK
    assert condition(decision.status, "Degraded").reason == "Aborted"
    assert condition(decision.status, "Progressing").reason == "Aborted"
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "Aborted")]
    decision = rollout.converge()
    assert decision.status.canary.replicas == 0
    assert decision.canary_weight == 0


def test_with_a_route_a_rolled_back_canary_hands_its_weight_back_as_the_stable_gets_ready() -> None:
    rollout = canary_at_first_pause([{"setWeight": 50}, {"pause": {}}], **GATEWAY)
    stable = rollout.status.stable.revision
    assert rollout.last.canary_weight == 50
    assert rollout.cluster.snapshot()[stable] == (2, 2)  # the route needs half of it
    decision = rollout.reconcile(action=Action.ABORT)

    # two Ready stable pods carry half of the traffic, not all of it
    assert (decision.stable_weight, decision.canary_weight) == (50, 50)
    assert decision.status.canary.replicas == 2  # its pods stay until the stable is back
    assert rollout.cluster.replicas(stable) == 4
    decision = rollout.converge()
    assert (decision.stable_weight, decision.canary_weight) == (100, 0)
    assert decision.status.canary.weight == 0
    assert decision.status.canary.replicas == 0


def test_with_a_route_a_canary_at_full_weight_keeps_it_until_stable_pods_are_ready() -> None:
    """The stable was scaled to nothing for a canary at 100 %: taking the weight back at once
    would send every request to a Service with no endpoints."""
    rollout = canary_at_first_pause([{"setWeight": 100}, {"pause": {}}], **GATEWAY)
    stable = rollout.status.stable.revision
    assert rollout.cluster.snapshot()[stable] == (0, 0)
    assert rollout.last.canary_weight == 100
    decision = rollout.reconcile(action=Action.ABORT)

    assert decision.status.phase is Phase.ROLLED_BACK
    assert (decision.stable_weight, decision.canary_weight) == (0, 100)
    assert rollout.cluster.replicas(stable) == 4
    # one stable pod Ready at a time: the canary gives back what the stable can carry
    weights = []
    for ready in (1, 2, 3, 4):
        rollout.cluster.deployments[stable].ready = ready
        decision = rollout.reconcile()
        weights.append(decision.canary_weight)
        assert rollout.cluster.ready(rollout.status.canary.revision) > 0 or ready == 4
    assert weights[0] > weights[1] > weights[2] > weights[3] == 0, weights
    assert rollout.converge().status.canary.replicas == 0


def test_with_a_route_a_spec_that_moves_on_takes_a_full_canary_s_weight_back_as_slowly() -> None:
    rollout = canary_at_first_pause([{"setWeight": 100}, {"pause": {}}], **GATEWAY)
    first = rollout.status.stable.revision
    rollout.change(version="1.0.0")  # a revert to what the stable serves
    decision = rollout.reconcile()

    assert decision.canary_weight == 100
    assert rollout.cluster.replicas(first) == 4
    decision = rollout.converge()
    assert decision.status.stable.revision == first
    assert (decision.stable_weight, decision.canary_weight) == (100, 0)


def test_pause_holds_a_timed_pause_and_resume_lets_it_finish() -> None:
    steps = [{"setWeight": 25}, {"pause": {"duration": "1m"}}, {"setWeight": 50}, {"pause": {}}]
    rollout = canary_at_first_pause(steps)
    decision = rollout.reconcile(action=Action.PAUSE)
    assert decision.status.phase is Phase.PAUSED
    assert condition(decision.status, "Progressing").reason == "RolloutPaused"

    decision = rollout.wait(600)
    assert decision.status.canary.step == 1
    rollout.reconcile(action=Action.RESUME)
    assert rollout.converge().status.canary.step == 3


def test_resume_completes_a_pause_without_duration() -> None:
    rollout = canary_at_first_pause()
    assert rollout.reconcile(action=Action.RESUME).status.canary.step == 2


@pytest.mark.parametrize(
    ("action", "why"),
    [
        (Action.PROMOTE, "no canary is in progress"),
        (Action.PROMOTE_FULL, "no canary is in progress"),
        (Action.ABORT, "no canary is in progress"),
        (Action.RETRY, "no canary is in progress"),
        (Action.PAUSE, "no canary is in progress"),
        (Action.RESUME, "no canary is in progress"),
    ],
)
def test_actions_without_a_canary_are_ignored_with_an_event_saying_why(
    action: Action, why: str
) -> None:
    rollout = Rollout.deployed(model_deployment())
    before = rollout.status.model_copy(deep=True)
    decision = rollout.reconcile(action=action)

    assert [(e.type, e.reason) for e in decision.events] == [("Normal", "ActionIgnored")]
    assert why in decision.events[0].message
    assert decision.status.last_action == f"{action.value} at 2024-05-01T12:00:00Z"
    assert decision.status.model_copy(update={"last_action": None}) == before


@pytest.mark.parametrize(
    ("action", "why"),
    [
        (Action.RETRY, "neither failed nor been aborted"),
        (Action.RESUME, "not paused"),
    ],
)
def test_actions_that_do_not_fit_the_canary_are_ignored(action: Action, why: str) -> None:
    rollout = canary_at_first_pause([{"setWeight": 25}, {"pause": {"duration": "1h"}}])
    decision = rollout.reconcile(action=action)

    assert [e.reason for e in decision.events] == ["ActionIgnored"]
    assert why in decision.events[0].message


def test_a_second_pause_is_ignored() -> None:
    rollout = canary_at_first_pause()
    rollout.reconcile(action=Action.PAUSE)
    decision = rollout.reconcile(action=Action.PAUSE)
    assert "already paused" in decision.events[0].message


# -- GitOps: revert, newer spec, undo --------------------------------------------------------------


def test_a_spec_reverted_to_the_stable_aborts_the_canary_and_restores_the_stable_first() -> None:
    rollout = canary_at_first_pause([{"setWeight": 50}, {"pause": {}}])
    stable, canary = rollout.status.stable.revision, rollout.status.canary.revision
    rollout.change(version="1.0.0")
    assert rollout.revision == stable

    decision = rollout.reconcile()
    assert decision.status.phase is Phase.PROGRESSING
    assert condition(decision.status, "Progressing").reason == "RevertedToStable"
    assert desired(decision) == {stable: (4, "stable"), canary: (2, "canary")}
    assert ("Normal", "RevertedToStable") in rollout.events()
    decision = rollout.converge()
    assert decision.status.canary is None
    assert decision.status.phase is Phase.READY
    assert condition(decision.status, "Degraded").status == "False"
    assert canary not in rollout.cluster.deployments


def test_a_newer_spec_during_a_canary_replaces_it_and_starts_from_the_first_step() -> None:
    rollout = canary_at_first_pause()
    first_canary = rollout.status.canary.revision
    rollout.change(version="3.0.0")
    decision = rollout.converge()

    assert decision.status.canary.revision == rollout.revision
    assert decision.status.canary.step == 1
    assert decision.status.canary.version == "3.0.0"
    assert first_canary not in rollout.cluster.deployments
    assert ("Normal", "CanarySuperseded") in rollout.events()


def test_a_newer_spec_after_a_rollback_starts_with_one_event_naming_the_old_canary() -> None:
    """A rolled-back canary has no pod left: the newer spec's canary replaces it in the same
    decision, so nobody ever sees it Withdrawn. One Event says both (CanaryStarted, naming it),
    not a CanarySuperseded about a state that was never written beside it."""
    rollout = Rollout.deployed(
        model_deployment(replicas=3, rollout=canary_rollout([{"setWeight": 50}]))
    )
    rollout.change(version="2.0.0")
    rolled_back = rollout.revision
    rollout.cluster.broken[rolled_back] = "crash"
    rollout.converge()
    assert rollout.status.phase is Phase.ROLLED_BACK
    assert rollout.cluster.replicas(rolled_back) == 0

    rollout.change(version="3.0.0")
    decision = rollout.reconcile()

    assert decision.status.canary.revision == rollout.revision
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", "CanaryStarted")]
    assert f"in place of canary {rolled_back} (2.0.0, RolledBack)" in decision.events[0].message


def test_a_newer_spec_during_a_canary_with_pods_says_canary_superseded_then_starts() -> None:
    """The other side of the fold above: a canary with pods is withdrawn first (the stable back
    at full size), and says so; its replacement starts in a later decision, naming nothing."""
    rollout = canary_at_first_pause()
    first_canary = rollout.status.canary.revision
    rollout.change(version="3.0.0")
    decision = rollout.reconcile()

    assert decision.status.canary.revision == first_canary
    assert decision.status.canary.state is CanaryState.WITHDRAWN
    assert [e.reason for e in decision.events] == ["CanarySuperseded"]
    rollout.converge()
    started = [e for d in rollout.decisions for e in d.events if e.reason == "CanaryStarted"]
    assert "in place of" not in started[-1].message


@pytest.mark.parametrize("action", [Action.PROMOTE_FULL, Action.PROMOTE, Action.ABORT])
def test_an_action_asked_for_a_canary_is_not_taken_by_the_one_a_newer_spec_starts(
    action: Action,
) -> None:
    """promote-full for canary 2.0.0; before the operator takes it, Argo CD syncs 3.0.0. The
    action is not applied to 3.0.0, which nobody has seen yet: it goes through its steps."""
    rollout = Rollout.deployed(
        model_deployment(replicas=4, rollout=canary_rollout(PAUSED_STEPS, analysis=ANALYSIS))
    )
    rollout.change(version="2.0.0")
    rollout.reconcile()  # canary 2.0.0: its surge pod is not Ready yet
    seen = rollout.status.canary.revision
    rollout.change(version="3.0.0")
    decision = rollout.reconcile(action=action)

    canary = decision.status.canary
    assert canary.revision == rollout.revision != seen
    assert canary.state is CanaryState.PROGRESSING
    assert canary.step == 0
    ignored = [e.message for e in decision.events if e.reason == "ActionIgnored"]
    assert len(ignored) == 1 and seen in ignored[0], decision.events


def test_an_action_asked_right_after_a_new_spec_is_taken_by_its_canary() -> None:
    """kubectl apply, then kubectl slipway promote-full, both seen in one reconcile: no canary
    ran when it was asked, so it is for the one the spec starts."""
    rollout = Rollout.deployed(model_deployment(replicas=4, rollout=canary_rollout(PAUSED_STEPS)))
    rollout.change(version="2.0.0")
    decision = rollout.reconcile(action=Action.PROMOTE_FULL)

    assert decision.status.canary.step == len(PAUSED_STEPS)
    assert "ActionIgnored" not in [e.reason for e in decision.events]


def test_undo_to_a_revision_from_history_skips_steps_and_analysis() -> None:
    rollout = Rollout.deployed(
        model_deployment(
            replicas=3, rollout=canary_rollout([{"setWeight": 50}], analysis=ANALYSIS)
        ),
        metrics=lambda rev: GOOD,
    )
    first = rollout.revision
    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.wait(30)
    rollout.wait(60)
    assert rollout.status.stable.revision == rollout.revision
    assert rollout.cluster.replicas(first) == 0  # kept for undo, at zero

    measured_before = len(rollout.measured_at)
    rollout.change(version="1.0.0")
    decision = rollout.converge()
    assert decision.status.stable.revision == first
    assert len(rollout.measured_at) == measured_before
    assert ("Normal", "Undo") in rollout.events()
    assert [h.version for h in decision.status.history] == ["1.0.0", "2.0.0"]


def test_without_history_the_previous_stable_still_serves_through_the_scale_down_delay() -> None:
    rollout = Rollout.deployed(
        model_deployment(
            replicas=2, history_limit=0, rollout=canary_rollout([{"setWeight": 50}], **GATEWAY)
        )
    )
    old = rollout.revision
    rollout.change(version="2.0.0")
    decision = rollout.converge()

    assert [h.revision for h in decision.status.history] == [rollout.revision, old]
    assert desired(decision)[old] == (1, None)
    decision = rollout.wait(30)
    assert [h.revision for h in decision.status.history] == [rollout.revision]
    assert desired(decision) == {rollout.revision: (2, "stable")}


def test_revision_history_limit_bounds_history_and_the_deployments_kept_for_undo() -> None:
    rollout = Rollout.deployed(
        model_deployment(
            replicas=2,
            history_limit=2,
            rollout={"strategy": "Rolling", "scaleDownDelaySeconds": 0},
        )
    )
    for version in ("2.0.0", "3.0.0", "4.0.0", "5.0.0"):
        rollout.change(version=version)
        rollout.converge()

    history = rollout.status.history
    assert [h.version for h in history] == ["5.0.0", "4.0.0", "3.0.0"]
    assert desired(rollout.last) == {
        history[0].revision: (2, "stable"),
        history[1].revision: (0, None),
        history[2].revision: (0, None),
    }


# -- conditions, idempotence, purity ---------------------------------------------------------------


def test_a_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    rollout = Rollout(model_deployment(replicas=2))
    rollout.reconcile()
    rollout.now += dt.timedelta(seconds=10)
    rollout.reconcile()
    assert condition(rollout.status, "Ready").last_transition_time == "2024-05-01T12:00:00Z"
    rollout.cluster.settle()
    rollout.now += dt.timedelta(seconds=10)
    rollout.reconcile()
    assert condition(rollout.status, "Ready").last_transition_time == "2024-05-01T12:00:20Z"
    assert condition(rollout.status, "Degraded").last_transition_time == "2024-05-01T12:00:00Z"


def test_status_records_generation_and_the_scale_subresource_numbers() -> None:
    rollout = Rollout.deployed(model_deployment(replicas=3, generation=7))
    status = rollout.status
    assert status.observed_generation == 7
    assert {c.observed_generation for c in status.conditions} == {7}
    assert (status.replicas, status.ready_replicas) == (3, 3)


def test_decide_on_its_own_status_changes_nothing() -> None:
    rollout = canary_at_first_pause()
    again = decide(
        rollout.md, rollout.revision, rollout.cluster.observe(), None, None, rollout.now, PINS
    )
    assert again.status == rollout.status
    assert again.events == []


def test_decide_leaves_its_input_alone() -> None:
    rollout = canary_at_first_pause()
    before = rollout.md.model_copy(deep=True)
    decide(
        rollout.md,
        rollout.revision,
        rollout.cluster.observe(),
        BAD,
        Action.ABORT,
        rollout.now,
        PINS,
    )
    assert rollout.md == before


def test_a_restarted_operator_resumes_at_the_same_step_with_the_same_timers() -> None:
    steps = [{"setWeight": 25}, {"pause": {"duration": "10m"}}, {"setWeight": 50}]
    rollout = canary_at_first_pause(steps)
    rollout.wait(240)
    # a new operator reads the object from the API server: only what status carries survives
    reread = ModelDeployment.from_body(
        json.loads(
            json.dumps(
                {
                    "metadata": rollout.md.metadata.wire(),
                    "spec": rollout.md.spec.wire(),
                    "status": rollout.status.wire(),
                }
            )
        )
    )
    decision = decide(
        reread, rollout.revision, rollout.cluster.observe(), None, None, rollout.now, PINS
    )
    assert decision.status == rollout.status
    assert decision.requeue_after == 360


def test_analysis_due_only_for_a_running_canary_with_ready_pods_after_its_interval() -> None:
    rollout = analysed([{"setWeight": 50}, {"pause": {}}], lambda rev: GOOD)
    md = rollout.md
    assert not analysis_due(md, rollout.revision, rollout.now)  # no canary
    rollout.change(version="2.0.0")
    rollout.converge()
    md, rev, now = rollout.md, rollout.revision, rollout.now
    assert not analysis_due(md, rev, now + dt.timedelta(seconds=29))
    assert analysis_due(md, rev, now + dt.timedelta(seconds=30))
    assert not analysis_due(md, "another", now + dt.timedelta(seconds=30))
    rollout.reconcile(action=Action.PAUSE)
    assert not analysis_due(rollout.md, rev, now + dt.timedelta(seconds=30))


# -- pins ----------------------------------------------------------------------------------------

NEWER_PINS = RevisionPins(
    server_image="docker.io/seldonio/mlserver:1.8.0",
    fetcher_image="ghcr.io/slipway-dev/slipway:0.2.0",
    pod_shape=3,
)


def pins_of(decision: Decision) -> dict[str, RevisionPins]:
    return {d.revision: d.pinned for d in decision.revisions}


def test_a_revision_keeps_its_pins_through_operator_upgrades_promotion_and_history() -> None:
    rollout = Rollout.deployed(
        model_deployment(rollout=canary_rollout([{"setWeight": 50}, {"pause": {"duration": "1m"}}]))
    )
    first = rollout.revision
    assert rollout.status.stable.pinned == PINS
    rollout.pins = NEWER_PINS  # the operator was upgraded
    rollout.converge()
    assert pins_of(rollout.last) == {first: PINS}
    rollout.change(version="2.0.0")
    rollout.converge()
    second = rollout.revision
    assert pins_of(rollout.last) == {first: PINS, second: NEWER_PINS}
    rollout.wait(60)
    assert rollout.status.stable.revision == second
    assert rollout.status.stable.pinned == NEWER_PINS
    assert [(h.revision, h.pinned) for h in rollout.status.history] == [
        (second, NEWER_PINS),
        (first, PINS),
    ]
    rollout.wait(60)  # after the scale-down delay the old revision is kept at zero, as it was
    assert pins_of(rollout.last)[first] == PINS
