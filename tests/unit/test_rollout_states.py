"""The canary's explicit state, the facts the core decides on, and every condition from one writer
(issue 15): what serves is protected, ports follow what serves, an unservable spec stops nothing
that must go on, refusals are said, kstatus reads the truth, and a status of Slipway 0.1 goes on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from slipway.api import (
    CanaryReason,
    CanaryState,
    CanaryStatus,
    ModelDeploymentStatus,
    Phase,
)
from slipway.rollout import (
    TRANSITIONS,
    Action,
    Claim,
    Observed,
    Refusal,
    Trigger,
    decide,
    unreadable_spec_status,
)
from tests.unit.test_rollout import (
    PINS,
    T0,
    Rollout,
    canary_rollout,
    condition,
    desired,
    model_deployment,
    revision_of,
)

ROOT = Path(__file__).resolve().parents[2]
ARGOCD_CASES = (
    ROOT
    / "integrations"
    / "argocd"
    / "resource_customizations"
    / "serving.slipway.dev"
    / "ModelDeployment"
)
S, R = CanaryState, CanaryReason


def kstatus_of(status: ModelDeploymentStatus) -> tuple[str, str]:
    return condition(status, "Reconciling").status, condition(status, "Stalled").status


def partly_ready_first(rollout_spec: dict[str, Any], ready: int = 2) -> Rollout:
    """A first revision of 4 replicas of which only `ready` pods get Ready (a GPU shortage)."""
    rollout = Rollout(model_deployment(replicas=4, rollout=rollout_spec))
    first = rollout.revision
    rollout.cluster.broken[first] = "not-ready"
    rollout.reconcile()
    rollout.cluster.deployments[first].ready = ready
    rollout.reconcile()
    return rollout


# -- item 1: a revision that serves is never torn down for one that does not ----------------------


def test_a_partly_ready_first_revision_is_replaced_as_a_canary_and_kept_when_it_fails() -> None:
    rollout = partly_ready_first({"progressDeadlineSeconds": 60})
    first = rollout.revision
    assert rollout.status.phase is Phase.PROGRESSING
    rollout.change(version="2.0.0")
    second = rollout.revision
    rollout.cluster.broken[second] = "not-ready"
    rollout.converge()

    assert rollout.status.stable.revision == first
    assert rollout.status.canary.revision == second
    assert rollout.cluster.ready(first) == 2, "the serving pods of the first revision stay"
    decision = rollout.wait(60)
    assert decision.status.phase is Phase.ROLLED_BACK
    assert decision.status.canary.reason is R.PROGRESS_DEADLINE_EXCEEDED
    assert desired(decision)[first] == (4, "stable")
    assert rollout.cluster.ready(first) == 2


@pytest.mark.parametrize(
    ("rollout_spec", "turned_down"),
    [
        pytest.param({"progressDeadlineSeconds": 60}, "deadline", id="rolled-back"),
        pytest.param({"progressDeadlineSeconds": 60, "autoRollback": False}, "deadline", id="held"),
        pytest.param({}, "abort", id="aborted"),
    ],
)
def test_a_canary_turned_down_never_replaces_a_partly_ready_stable_whose_pods_dip(
    rollout_spec: dict[str, Any], turned_down: str
) -> None:
    """A first revision at 2 of 4 Ready (never at full size) whose canary was rolled back, held
    or aborted: its pods going unready for a moment (a readiness blip under load) must not hand
    the ModelDeployment to the revision just turned down, nor delete the one that served."""
    rollout = partly_ready_first(rollout_spec)
    first = rollout.revision
    rollout.change(version="2.0.0")
    second = rollout.revision
    rollout.cluster.broken[second] = "not-ready"
    rollout.converge()
    if turned_down == "abort":
        rollout.reconcile(action=Action.ABORT)
    else:
        rollout.wait(60)
    assert rollout.status.canary.state in (S.ROLLED_BACK, S.FAILED, S.ABORTED)

    kept = rollout.cluster.replicas(first)  # 4 once rolled back; held: the 2 Ready it had
    assert kept >= 2
    rollout.cluster.deployments[first].ready = 0  # the blip
    decision = rollout.reconcile()

    assert ("Normal", "Replaced") not in rollout.events()
    assert decision.status.stable.revision == first
    assert desired(decision)[first] == (kept, "stable"), "a pod of what served was removed"
    rollout.cluster.deployments[first].ready = 2  # back
    decision = rollout.reconcile()
    assert decision.status.stable.revision == first
    assert rollout.cluster.ready(first) == 2


@pytest.mark.parametrize("trouble", ["crash", "blip"])
def test_a_canary_at_full_weight_over_a_partly_ready_stable_is_judged_never_handed_over(
    trouble: str,
) -> None:
    """A first revision at 2 of 4 Ready (never at full size, so not in history) whose canary
    reached `setWeight: 100`: the stable is at 0 pods for it. Its pods crashing (or unready for
    a moment) leave nothing Ready, but that is the canary's failure to judge: it is rolled back
    and the stable scaled up again, never made the stable with the old one's Deployment deleted
    (a crash-looping model serving everything, and nothing left to undo to); a blip is waited
    out at the canary's step, with its pause and analysis still ahead."""
    rollout = partly_ready_first(
        canary_rollout(
            [{"setWeight": 100}, {"pause": {"duration": "1h"}}], progressDeadlineSeconds=60
        )
    )
    first = rollout.revision
    rollout.change(version="2.0.0")
    second = rollout.revision
    rollout.converge()
    assert (rollout.status.canary.revision, rollout.status.canary.step) == (second, 1)
    assert rollout.cluster.snapshot() == {first: (0, 0), second: (4, 4)}
    if trouble == "crash":
        rollout.cluster.broken[second] = "crash"
    rollout.cluster.deployments[second].ready = 0

    decision = rollout.reconcile()

    assert ("Normal", "Replaced") not in rollout.events()
    assert decision.status.stable.revision == first
    assert decision.status.canary.revision == second
    if trouble == "crash":
        assert decision.status.canary.state is S.ROLLED_BACK
        assert desired(decision)[first] == (4, "stable")
    else:
        assert decision.status.canary.state is S.PROGRESSING
        assert first in desired(decision), "the stable's Deployment is kept"
        rollout.cluster.deployments[second].ready = 4  # back
        decision = rollout.converge()
        assert (decision.status.canary.state, decision.status.canary.step) == (S.PROGRESSING, 1)
        assert decision.status.stable.revision == first


def test_a_retried_canary_replaces_a_stable_that_serves_nothing() -> None:
    """What was turned down can still be asked for again: a retry (or a new spec) replaces a
    stable with no Ready pod outright, as before."""
    rollout = partly_ready_first({"progressDeadlineSeconds": 60})
    rollout.change(version="2.0.0")
    second = rollout.revision
    rollout.cluster.broken[second] = "not-ready"
    rollout.converge()
    rollout.wait(60)
    rollout.cluster.deployments[rollout.status.stable.revision].ready = 0
    rollout.reconcile()
    del rollout.cluster.broken[second]

    rollout.reconcile(action=Action.RETRY)
    decision = rollout.converge()

    assert decision.status.stable.revision == second
    assert ("Normal", "Replaced") in rollout.events()


def test_a_partly_ready_first_revision_goes_only_once_its_replacement_serves_more() -> None:
    rollout = partly_ready_first({"scaleDownDelaySeconds": 30})
    first = rollout.revision
    rollout.change(version="2.0.0")
    second = rollout.revision
    for _ in range(20):
        rollout.reconcile()
        # its Ready pods go only as far as the replacement's Ready pods make up for them
        assert rollout.cluster.ready(first) == 2 or rollout.cluster.ready(second) >= 2, (
            rollout.cluster.snapshot()
        )
        rollout.cluster.settle()
    assert rollout.status.stable.revision == rollout.revision
    # it served, so it keeps its pods through the scale-down delay, and stays for undo
    assert rollout.cluster.replicas(first) > 0
    assert [h.revision for h in rollout.status.history][:2] == [rollout.revision, first]
    rollout.wait(30)
    assert rollout.cluster.replicas(first) == 0


def test_a_first_revision_with_no_ready_pod_is_still_replaced_outright() -> None:
    rollout = partly_ready_first({}, ready=0)
    first = rollout.revision
    rollout.change(version="2.0.0")
    decision = rollout.converge()
    assert decision.status.stable.revision == rollout.revision
    assert first not in rollout.cluster.deployments


# -- item 3: the port of what serves ---------------------------------------------------------------


def test_services_keep_the_stable_port_until_the_promotion() -> None:
    rollout = Rollout.deployed(
        model_deployment(rollout=canary_rollout([{"setWeight": 25}, {"pause": {}}]))
    )
    rollout.change(runtime={"port": 9090}, version="2.0.0")
    decision = rollout.converge()
    ports = {d.track: d.port for d in decision.revisions}
    assert (decision.port, ports) == (8080, {"stable": 8080, "canary": 9090})

    decision = rollout.reconcile(action=Action.PROMOTE)
    decision = rollout.converge()
    assert decision.status.canary is None
    assert decision.port == 9090


# -- item 4: a spec that cannot be served ----------------------------------------------------------


def test_a_first_spec_that_cannot_be_served_is_failed_with_the_field_and_nothing_runs() -> None:
    md = model_deployment()
    observed = Observed(claim=Claim(name="models", exists=False))
    decision = decide(md, revision_of(md), observed, None, Action.PROMOTE, T0, PINS)
    status = decision.status
    assert decision.revisions == []
    assert status.phase is Phase.FAILED
    degraded = condition(status, "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "ModelUnavailable")
    assert "spec.model.uri" in degraded.message and "'models'" in degraded.message
    assert kstatus_of(status) == ("False", "True")
    assert [e.reason for e in decision.events] == ["ActionIgnored"]
    assert decision.requeue_after == 30.0


def test_an_unservable_spec_holds_the_canary_but_judges_and_rolls_it_back() -> None:
    rollout = Rollout.deployed(
        model_deployment(
            rollout=canary_rollout(
                [{"setWeight": 25}, {"pause": {"duration": "10s"}}, {"setWeight": 50}],
                progressDeadlineSeconds=60,
            )
        )
    )
    stable = rollout.revision
    rollout.change(version="2.0.0")
    canary = rollout.revision
    rollout.cluster.broken[canary] = "not-ready"
    rollout.converge()
    rollout.change(version="3.0.0")
    rollout.unservable.add(rollout.revision)
    decision = rollout.converge()
    status = decision.status
    assert status.canary.revision == canary and status.canary.state is S.PROGRESSING
    assert status.phase is Phase.DEGRADED
    assert condition(status, "Progressing").reason == "CanaryHeld"
    assert condition(status, "Degraded").reason == "InvalidSpec"

    # promote moves nothing toward a spec that cannot be served, and says so
    decision = rollout.reconcile(action=Action.PROMOTE)
    assert [(e.reason, "cannot be served" in e.message) for e in decision.events] == [
        ("ActionIgnored", True)
    ]
    # the canary is still judged: its deadline rolls it back
    decision = rollout.wait(60)
    assert decision.status.phase is Phase.ROLLED_BACK
    assert decision.status.canary.reason is R.PROGRESS_DEADLINE_EXCEEDED
    degraded = condition(decision.status, "Degraded")
    assert "cannot be served" in degraded.message and "progressDeadlineSeconds" in degraded.message
    # and the stable follows spec.replicas (an HPA, kubectl scale)
    rollout.change(replicas=6)
    decision = rollout.converge()
    assert desired(decision)[stable] == (6, "stable")

    # once the spec can be served, it is rolled out
    rollout.unservable.clear()
    decision = rollout.converge()
    assert decision.status.canary.revision == rollout.revision
    assert condition(decision.status, "Degraded").status == "False"


# -- items 6, 7, 8: what the cluster says, in the conditions, once -------------------------------


def test_a_missing_route_is_degraded_and_deciding_again_writes_nothing() -> None:
    rollout = Rollout.deployed(model_deployment(rollout=canary_rollout([{"setWeight": 50}])))
    rollout.route_missing = True
    decision = rollout.converge()
    degraded = condition(decision.status, "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "TrafficRoutingUnavailable")
    assert decision.status.phase is Phase.READY
    again = rollout.reconcile()
    assert again.status == decision.status and again.events == []


def test_a_refused_write_is_named_with_the_servers_message() -> None:
    md = model_deployment()
    revision = revision_of(md)
    ready = decide(md, revision, Observed(), None, None, T0, PINS).status
    refusal = Refusal("Deployment", f"fraud-{revision}", "denied by policy X", revision)
    md = md.model_copy(update={"status": ready})
    decision = decide(md, revision, Observed(refusals=(refusal,)), None, None, T0, PINS)
    degraded = condition(decision.status, "Degraded")
    assert degraded.reason == "ApplyRefused" and "denied by policy X" in degraded.message
    assert decision.status.phase is Phase.FAILED  # nothing serves and it cannot start


def test_a_canary_whose_pods_are_refused_says_so_before_its_deadline() -> None:
    rollout = Rollout.deployed(model_deployment(rollout=canary_rollout([{"setWeight": 25}])))
    rollout.change(version="2.0.0")
    rollout.cluster.broken[rollout.revision] = "refused"
    decision = rollout.converge()
    assert decision.status.phase is Phase.PROGRESSING
    degraded = condition(decision.status, "Degraded")
    assert (degraded.reason, "exceeded quota" in degraded.message) == ("FailedCreate", True)
    assert kstatus_of(decision.status) == ("True", "False")


# -- the state machine says its states -------------------------------------------------------------


def test_every_state_can_be_left() -> None:
    """Retry, a new spec or the steps lead out of every state: none is a dead end."""
    leaves = {state for moves in TRANSITIONS.values() for state in moves}
    assert leaves == set(CanaryState)
    for state in CanaryState:
        assert state in TRANSITIONS[Trigger.SPEC_MOVED] or state is S.WITHDRAWN
    assert set(TRANSITIONS[Trigger.GONE]) == {S.WITHDRAWN}


def test_the_readme_state_table_is_the_transition_table() -> None:
    """Each trigger is one row of the README's table, its "from" cell the states it moves."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in {t.value for t in Trigger}:
            rows[Trigger(cells[0])] = set(re.findall(r"[A-Z][A-Za-z]+", cells[1]))
    assert set(rows) == set(Trigger), f"missing rows: {set(Trigger) - set(rows)}"
    for trigger, moves in TRANSITIONS.items():
        assert rows[trigger] == {s.value for s in moves}, trigger


@pytest.mark.parametrize(
    "phase, reconciling, stalled",
    [
        (Phase.PENDING, "True", "False"),
        (Phase.PROGRESSING, "True", "False"),
        (Phase.PAUSED, "True", "False"),
        (Phase.READY, "False", "False"),
        (Phase.DEGRADED, "False", "True"),
        (Phase.ROLLED_BACK, "False", "True"),
        (Phase.FAILED, "False", "True"),
    ],
)
def test_kstatus_conditions_follow_the_phase(phase: Phase, reconciling: str, stalled: str) -> None:
    from slipway.rollout.report import ConditionState, kstatus

    said = kstatus(phase, ConditionState(True, "P", "p"), ConditionState(True, "D", "d"))
    assert [("True" if c.status else "False") for c in said.values()] == [reconciling, stalled]


def test_an_unreadable_spec_is_stalled_and_keeps_what_serves() -> None:
    before = ModelDeploymentStatus(replicas=2, ready_replicas=2, phase=Phase.READY)
    after = unreadable_spec_status(before, "spec.replicas: too big", 3, "2026-11-30T00:00:00Z")
    assert after.phase is Phase.DEGRADED and after.observed_generation == 3
    assert condition(after, "Degraded").message == "spec.replicas: too big"
    assert kstatus_of(after) == ("False", "True")


# -- a status written by Slipway 0.1 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "case, state, reason",
    [
        ("paused-by-user.yaml", S.PAUSED, R.USER_PAUSED),
        ("paused-inconclusive.yaml", S.PAUSED, R.ANALYSIS_INCONCLUSIVE),
        ("rolled-back-analysis.yaml", S.ROLLED_BACK, R.ANALYSIS_FAILED),
        ("rolled-back.yaml", S.ROLLED_BACK, R.CANARY_CRASH_LOOPING),
        ("aborted.yaml", S.ABORTED, R.ABORTED),
        ("degraded-canary-held.yaml", S.FAILED, R.CANARY_CRASH_LOOPING),
        ("canary-progressing.yaml", S.PROGRESSING, None),
    ],
)
def test_a_canary_status_of_slipway_0_1_reads_as_its_state(
    case: str, state: CanaryState, reason: CanaryReason | None
) -> None:
    """The statuses the Argo CD health check is tested with were captured from Slipway 0.1."""
    body = yaml.safe_load((ARGOCD_CASES / "testdata" / case).read_text(encoding="utf-8"))
    raw = body["status"]["canary"]
    canary = CanaryStatus.model_validate(raw)
    assert (canary.state, canary.reason) == (state, reason)
    legacy = raw.get("failureReason") or raw.get("pauseReason") or ""
    assert canary.message in legacy
    assert "paused" not in canary.wire() and "failureReason" not in canary.wire()


def test_a_canary_paused_by_slipway_0_1_goes_on_when_resumed() -> None:
    steps = [{"setWeight": 25}, {"pause": {"duration": "1h"}}, {"setWeight": 50}]
    rollout = Rollout.deployed(model_deployment(rollout=canary_rollout(steps)))
    rollout.change(version="2.0.0")
    rollout.converge()
    status = rollout.status.wire()
    canary = status["canary"]
    for key in ("state", "reason", "message"):
        canary.pop(key, None)
    canary.update(paused=True, pauseReason="UserPaused: paused by the user at 2024-05-01T12:00Z")
    rollout.md = model_deployment(version="2.0.0", rollout=rollout.md.spec.rollout.wire(),
                                  generation=2, status=status)  # fmt: skip
    assert rollout.converge().status.phase is Phase.PAUSED
    decision = rollout.wait(3600)  # the user's pause holds the timed pause
    assert decision.status.canary.reason is R.USER_PAUSED and decision.status.canary.step == 1
    rollout.reconcile(action=Action.RESUME)
    decision = rollout.converge()
    assert decision.status.stable.version == "2.0.0" and decision.status.canary is None
