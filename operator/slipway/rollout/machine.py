"""The rollout state machine: (ModelDeployment, Observed, measurements, action, now) → Decision.

Pure: no clock, no client, no logging. All rollout state lives in `status` (so a restarted operator
resumes at the same step with the same timers), and `decide` on a status it produced, with the
same observations and time, returns that same status: a reconcile with nothing to do writes nothing.

The life of a revision:
- the first revision ever becomes stable directly; a new spec replaces a stable revision outright
  only when nothing of it (nor of a canary) serves, otherwise it is rolled out as a canary;
- a canary goes through its steps (Canary) or straight to full size (Rolling, or an undo to a
  revision from history), then is promoted: it becomes stable, and the old stable scales to zero
  after `scaleDownDelaySeconds` and is kept for undo;
- a spec that cannot be served (`Observed.spec_errors`, a missing claim) starts nothing: what runs
  is still judged and rolled back if it fails, but nothing moves toward the spec until it can be.

A canary's state is `status.canary.state` (with `reason`), and it moves only as `TRANSITIONS`
says: for each trigger (something observed, or an action of the user) and each state, one effect.
A trigger with no entry for the canary's state changes nothing (an action says why in an Event).
The README's state table is this table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from slipway.api import (
    AnalysisStatus,
    Approval,
    CanaryReason,
    CanaryState,
    CanaryStatus,
    CanaryStep,
    EvaluationStatus,
    HistoryEntry,
    Measurement,
    ModelDeployment,
    ModelDeploymentStatus,
    Phase,
    RevisionPins,
    RevisionStatus,
    RuntimeSpec,
    Verdict,
)
from slipway.rollout.capacity import (
    canary_replicas_for,
    handback_weight,
    plan_leaving,
    plan_replicas,
    stable_replicas_for,
    weight_in_effect,
)
from slipway.rollout.facts import (
    ROLLED_BACK,
    RUNNING,
    Facts,
    analysis_applies,
    is_undo,
    judged,
    next_measurement_at,
    running_canary,
    step_started,
    steps_of,
    was_ready,
)
from slipway.rollout.model import (
    Action,
    Decision,
    DesiredEvaluation,
    DesiredRevision,
    Event,
    EventType,
    Observed,
    Track,
)
from slipway.rollout.report import conditions_for, phase_of
from slipway.rollout.steps import (
    approvals_needed,
    canary_pods_at,
    current_evaluation,
    evaluate_at,
    kind_of,
    step_name,
    waits_for_promotion,
    weight_at,
)
from slipway.rollout.times import after, parse_time

# measurements kept in status.analysis (at least one per metric, so the latest round is whole)
MEASUREMENTS_KEPT = 10
# a timer that is already due asks again after this long (the shell may not have measured yet)
MIN_REQUEUE_SECONDS = 1.0
# a missing claim may be created any moment, a refused write may be let through: look again then
RECHECK_SECONDS = 30.0
# the HTTPRoute is read again this often while it sends the canary any traffic (_requeue_after)
ROUTE_RECHECK_SECONDS = 10.0
# a new ModelDeployment's first status waits this long (from its Deployment's creation) for its
# pods, so that a first deployment that comes up quickly is reported once, Ready
FIRST_REPORT_SECONDS = 10.0
# a pod's creationTimestamp is the API server's clock, an attempt's start the operator's: a pod
# of the attempt is one created no earlier than this before its start (a failed attempt's pods
# are older by the time its failure took to detect, its rollback and the retry)
CLOCK_SKEW = dt.timedelta(seconds=5)

S = CanaryState
R = CanaryReason


class Trigger(StrEnum):
    """What moves a canary: something observed, or an action of the user."""

    STEP_COMPLETE = "its step is complete"
    FULL_SIZE = "`replicas` of its pods are Ready"
    FAILED = "analysis failed beyond failureLimit, the progress deadline passed, its pods crash"
    INCONCLUSIVE = "a measurement is Inconclusive (or its query failed)"
    PASSED = "every metric passes"
    SPEC_MOVED = "the spec is at another revision"
    GONE = "its pods are gone"
    PROMOTE = Action.PROMOTE.value
    PROMOTE_FULL = Action.PROMOTE_FULL.value
    ABORT = Action.ABORT.value
    RETRY = Action.RETRY.value
    PAUSE = Action.PAUSE.value
    RESUME = Action.RESUME.value


@dataclass(frozen=True)
class Cause:
    """What a failure, an inconclusive measurement or a withdrawal is about."""

    reason: CanaryReason
    message: str


# -- the public entry points ----------------------------------------------------------------------


def analysis_due(md: ModelDeployment, revision: str, now: dt.datetime) -> bool:
    """Whether the shell should run the analysis queries before calling `decide`.

    True when analysis is configured for this canary (strategy Canary, not an undo), the canary of
    `revision` (see `heading_for`) runs and is not paused by the user, it had a Ready pod at the
    last reconcile and its step gives it user traffic (a canary evaluated before any weight has
    none to measure), and an interval has passed since the last measurement (the first one comes
    an interval after the canary's pods for its first step were all Ready, so it has seen traffic).
    """
    status = md.status
    canary = status.canary
    if canary is None or canary.revision != revision or canary.state not in RUNNING:
        return False
    if not analysis_applies(md, status, canary) or _user_paused(canary):
        return False
    if not _gets_traffic(md, status, canary):
        return False
    due = next_measurement_at(md, status, canary)
    return due is not None and now >= due


def decide(
    md: ModelDeployment,
    revision: str,
    observed: Observed,
    measurements: Sequence[Measurement] | None,
    action: Action | None,
    now: dt.datetime,
    pins: RevisionPins,
) -> Decision:
    """The next status, the Deployments that should exist, the traffic split, Events and timer.

    `md.status` is the state carried between reconciles, every revision in it pinned;
    `revision` is the hash of `md.spec.serving()` and `pins` what a new revision of it is pinned
    to; `observed` is everything else the decision rests on; `measurements` are fresh analysis
    results (when `analysis_due` said so); `action` is a consumed action annotation.
    """
    facts = Facts.of(md, revision, observed, now, pins)
    draft = _Draft(status=md.status.model_copy(deep=True))
    if action is not None:
        draft.status.last_action = f"{action.value} at {facts.stamp}"
    draft.status.history = _bounded_history(facts, draft.status)
    if draft.status.stable is None and facts.held:
        # nothing was ever deployed, and the spec cannot be: there is nothing to run
        if action is not None:
            _ignore(draft, action, f"the spec cannot be served: {_problems_text(facts)}")
        return _finish(facts, draft)
    _settle_revisions(facts, draft)
    _record_first_ready(facts, draft)
    if action is not None:
        seen, current = md.status.canary, draft.status.canary
        if seen is not None and current is not None and current.revision != seen.revision:
            # asked while canary `seen` ran, and a newer spec replaced it before the action was
            # taken: an action means the canary its author saw, never one nobody has seen yet
            _ignore(
                draft,
                action,
                f"it was asked for canary {seen.revision} ({seen.version}), which the spec "
                f"replaced with canary {current.revision} ({current.version}) meanwhile",
            )
        else:
            _act(facts, draft, action)
            # a retry or a promotion of a canary turned down asks for it again
            _replace_what_serves_nothing(facts, draft)
    if measurements:
        _record_measurements(facts, draft, measurements)
    _record_evaluation(facts, draft)
    _note_readiness(facts, draft)
    _detect_failure(facts, draft)
    _advance(facts, draft)
    _start_evaluation(facts, draft)
    return _finish(facts, draft)


# -- the draft a decision writes ------------------------------------------------------------------


@dataclass
class _Draft:
    """The status being written (a private copy) and the Events to emit."""

    status: ModelDeploymentStatus
    events: list[Event] = field(default_factory=list)
    evaluated: list[Measurement] = field(default_factory=list)  # gates judged now
    first_step: dict[str, int] = field(default_factory=dict)  # a revision's first step entered now

    def note(
        self,
        type_: EventType,
        reason: str,
        message: str,
        revision: str = "",
        step: int | None = None,
    ) -> None:
        self.events.append(Event(type_, reason, message, revision=revision, step=step))

    def unsay(self, reason: str, revision: str) -> None:
        """Drop this decision's Events of `reason` about `revision`: a later one says it too."""
        self.events = [e for e in self.events if (e.reason, e.revision) != (reason, revision)]

    @property
    def stable(self) -> RevisionStatus:
        assert self.status.stable is not None, "the stable revision is settled first"
        return self.status.stable


@dataclass(frozen=True)
class _Plan:
    targets: dict[str, int]  # where each revision is going, in the order they give up pods
    replicas: dict[str, int]  # what each revision gets now
    weight: int  # the canary's traffic in effect
    service_revision: str | None = None  # Service <name> selects this revision alone


# -- the transition table --------------------------------------------------------------------------

# An effect moves the canary (and says so in an Event); an action's effect returns why it does
# not apply when, in that state, it does not.
Effect = Callable[[Facts, "_Draft", CanaryStatus, Cause | None], str | None]


def _transitions() -> dict[Trigger, dict[CanaryState, Effect]]:
    running = RUNNING
    movable = (*RUNNING, S.FAILED)  # a failure held without autoRollback can still be moved
    return {
        # what is observed
        Trigger.STEP_COMPLETE: {S.PROGRESSING: _next_step},
        Trigger.FULL_SIZE: {S.PROMOTING: _promote},
        Trigger.FAILED: {state: _fail for state in running},
        Trigger.INCONCLUSIVE: {state: _pause_inconclusive for state in running},
        Trigger.PASSED: {S.PAUSED: _lift_inconclusive_pause},
        Trigger.SPEC_MOVED: {state: _withdraw for state in S if state is not S.WITHDRAWN},
        Trigger.GONE: {S.WITHDRAWN: _forget},
        # what the user asks
        Trigger.PROMOTE: {state: _promote_step for state in movable},
        Trigger.PROMOTE_FULL: {state: _promote_full for state in movable},
        Trigger.ABORT: {state: _abort for state in movable},
        Trigger.RETRY: {S.FAILED: _retry, S.ROLLED_BACK: _retry, S.ABORTED: _retry},
        Trigger.PAUSE: {state: _user_pause for state in running},
        Trigger.RESUME: {S.PAUSED: _resume},
    }


def _fire(
    facts: Facts, draft: _Draft, canary: CanaryStatus, trigger: Trigger, cause: Cause | None = None
) -> str | None:
    """Move the canary as the table says; for an action that does not apply, why not."""
    effect = TRANSITIONS[trigger].get(canary.state)
    if effect is None:
        return _why_not(facts, canary, trigger)
    return effect(facts, draft, canary, cause)


# -- effects: what each transition does -----------------------------------------------------------


def _next_step(facts: Facts, draft: _Draft, canary: CanaryStatus, cause: Cause | None) -> None:
    _enter_step(facts, draft, canary, canary.step + 1)


def _promote(facts: Facts, draft: _Draft, canary: CanaryStatus, cause: Cause | None) -> None:
    status = draft.status
    old = draft.stable
    promoted = RevisionStatus(
        revision=canary.revision,
        version=canary.version,
        uri=canary.uri,
        template=canary.template,
        pinned=canary.pinned,
        replicas=canary.replicas,
        ready_replicas=canary.ready_replicas,
    )
    others = [h for h in status.history if h.revision != canary.revision]
    if not was_ready(status, old.revision):
        # it never reached full size, but it served: it keeps serving through the delay too
        others = [_history_entry(old, None), *others]
    status.stable, status.canary = promoted, None
    status.history = [_history_entry(promoted, facts.stamp), *others]
    status.history = _bounded_history(facts, status)
    draft.note(
        "Normal",
        "Promoted",
        f"revision {promoted.revision} ({promoted.version}) is stable and serves all traffic; "
        f"revision {old.revision} ({old.version}) scales to zero in "
        f"{facts.rollout.scale_down_delay_seconds}s and is kept for undo",
        promoted.revision,
    )


def _fail(facts: Facts, draft: _Draft, canary: CanaryStatus, cause: Cause | None) -> None:
    """Roll the canary back (autoRollback), or hold it where it is."""
    assert cause is not None
    stable = draft.stable
    rolls_back = facts.rollout.auto_rollback
    canary.state = S.ROLLED_BACK if rolls_back else S.FAILED
    canary.reason, canary.message = cause.reason, cause.message
    if rolls_back:
        draft.note(
            "Warning",
            "RolledBack",
            f"{cause.reason.value}: {cause.message}; canary {canary.revision} ({canary.version}) "
            f"is rolled back, stable revision {stable.revision} ({stable.version}) serves all "
            "traffic",
            canary.revision,
            canary.step,
        )
        return
    draft.note(
        "Warning",
        cause.reason.value,
        f"{cause.message}; canary {canary.revision} is held where it is (autoRollback is false): "
        "abort, retry or promote it",
        canary.revision,
        canary.step,
    )


def _pause_inconclusive(
    facts: Facts, draft: _Draft, canary: CanaryStatus, cause: Cause | None
) -> None:
    assert cause is not None
    if _user_paused(canary):
        return  # the user's pause holds; a measurement does not take it over
    noted = canary.state is S.PAUSED and canary.reason is R.ANALYSIS_INCONCLUSIVE
    canary.state, canary.reason, canary.message = S.PAUSED, cause.reason, cause.message
    if not noted:
        draft.note(
            "Warning",
            R.ANALYSIS_INCONCLUSIVE.value,
            f"{cause.message}; the rollout pauses (it never rolls back on missing data) and goes "
            "on by itself after a successful measurement, or with promote or resume",
            canary.revision,
            canary.step,
        )


def _lift_inconclusive_pause(
    facts: Facts, draft: _Draft, canary: CanaryStatus, cause: Cause | None
) -> None:
    if canary.reason is not R.ANALYSIS_INCONCLUSIVE or _evaluation_holds(canary):
        return
    _align_with_step(facts, draft, canary)
    draft.note(
        "Normal",
        "AnalysisResumed",
        "every metric passes again; the rollout goes on",
        canary.revision,
        canary.step,
    )


def _withdraw(facts: Facts, draft: _Draft, canary: CanaryStatus, cause: Cause | None) -> None:
    """The spec moved away from the canary: stable back to full first, then the canary goes."""
    stable = draft.stable
    canary.state = S.WITHDRAWN
    if facts.revision == stable.revision:
        canary.reason = R.REVERTED_TO_STABLE
        canary.message = (
            f"spec is back at stable revision {stable.revision} ({stable.version}): canary "
            f"{canary.revision} ({canary.version}) is withdrawn once the stable is at full size"
        )
    else:
        canary.reason = R.SUPERSEDED
        canary.message = (
            f"revision {facts.revision} replaces canary {canary.revision} ({canary.version}); "
            "it starts from the first step once the stable is back at full size"
        )
    draft.note("Normal", canary.reason.value, canary.message, canary.revision)


def _forget(facts: Facts, draft: _Draft, canary: CanaryStatus, cause: Cause | None) -> None:
    draft.status.canary = None


def _promote_step(
    facts: Facts, draft: _Draft, canary: CanaryStatus, cause: Cause | None
) -> str | None:
    return _promote_to(facts, draft, canary, Action.PROMOTE, canary.step + 1)


def _promote_full(
    facts: Facts, draft: _Draft, canary: CanaryStatus, cause: Cause | None
) -> str | None:
    return _promote_to(facts, draft, canary, Action.PROMOTE_FULL, len(_steps(facts, draft, canary)))


def _promote_to(
    facts: Facts, draft: _Draft, canary: CanaryStatus, action: Action, target: int
) -> str | None:
    steps = _steps(facts, draft, canary)
    if approvals_needed(steps, canary.step):
        # a promote at an approval step is one approval: the step ends with the last one needed
        complete, why = _approve(facts, draft, canary, steps)
        if why is not None:
            return why
        if not complete:
            _align_with_step(facts, draft, canary)
            return None
    # nobody skips an approval step by promoting past it: the canary stops at the next one
    gates = [i for i in range(canary.step + 1, len(steps)) if approvals_needed(steps, i)]
    target = min([target, *gates[:1]])
    draft.note(
        "Normal",
        "PromoteFull" if action is Action.PROMOTE_FULL else "Promote",
        f"{action.value} by the user at {step_name(steps, canary.step)} of canary "
        f"{canary.revision}",
        canary.revision,
        canary.step,
    )
    if canary.step < len(steps):
        _enter_step(facts, draft, canary, min(target, len(steps)))
    else:
        _align_with_step(facts, draft, canary)
    return None


def _approve(
    facts: Facts, draft: _Draft, canary: CanaryStatus, steps: Sequence[CanaryStep]
) -> tuple[bool, str | None]:
    """Count the promote of `facts.observed.actor` as an approval of the canary's step: whether
    the step now has every approval it needs, and why the promote cannot count, if it cannot."""
    needed = approvals_needed(steps, canary.step)
    actor = facts.observed.actor
    if actor is None and needed > 1:
        return False, (
            f"{step_name(steps, canary.step)} needs {needed} distinct people, and this promote "
            "does not say who asked (the chart's governance policies stamp it)"
        )
    if actor is not None and any(a.by == actor for a in canary.approvals):
        return False, f"{actor} has approved {step_name(steps, canary.step)} already"
    canary.approvals = [*canary.approvals, Approval(by=actor or "", at=facts.stamp)]
    draft.note(
        "Normal",
        "Approved",
        f"approval {len(canary.approvals)} of {needed} for {step_name(steps, canary.step)} of "
        f"canary {canary.revision}" + (f" ({_approvers(canary)})" if actor else ""),
        canary.revision,
        canary.step,
    )
    return len(canary.approvals) >= needed, None


def _approvers(canary: CanaryStatus) -> str:
    return ", ".join(a.by for a in canary.approvals if a.by)


def _approval_message(steps: Sequence[CanaryStep], canary: CanaryStatus) -> str:
    needed = approvals_needed(steps, canary.step)
    given = len(canary.approvals)
    so_far = f"{given} so far" + (f" ({_approvers(canary)})" if _approvers(canary) else "")
    return (
        f"{step_name(steps, canary.step)} waits for {needed} approval"
        + ("s" if needed > 1 else "")
        + f" (kubectl slipway promote, by distinct people with the promote verb); {so_far}"
    )


def _abort(facts: Facts, draft: _Draft, canary: CanaryStatus, cause: Cause | None) -> None:
    stable = draft.stable
    canary.state, canary.reason, canary.message = S.ABORTED, R.ABORTED, "aborted by the user"
    draft.note(
        "Warning",
        "Aborted",
        f"Aborted: aborted by the user; canary {canary.revision} ({canary.version}) is rolled "
        f"back, stable revision {stable.revision} ({stable.version}) serves all traffic",
        canary.revision,
        canary.step,
    )


def _retry(facts: Facts, draft: _Draft, canary: CanaryStatus, cause: Cause | None) -> None:
    canary.step, canary.started_at = 0, facts.stamp
    if judged(facts.md, draft.status, canary):
        draft.status.analysis = AnalysisStatus(revision=canary.revision)
    if canary.evaluation is not None:
        # every evaluation runs again, each in a Job of its own
        canary.evaluation = _next_evaluation(canary, canary.evaluation.step)
    draft.note(
        "Normal",
        "Retry",
        f"canary {canary.revision} ({canary.version}) starts again from the first step",
        canary.revision,
        0,
    )
    _enter_step(facts, draft, canary, 0, quiet=True)


def _user_pause(
    facts: Facts, draft: _Draft, canary: CanaryStatus, cause: Cause | None
) -> str | None:
    if _user_paused(canary):
        return "the canary is already paused"
    canary.state, canary.reason = S.PAUSED, R.USER_PAUSED
    canary.message = f"paused by the user at {facts.stamp}"
    draft.note(
        "Normal", "Paused", f"canary {canary.revision} paused by the user", canary.revision,
        canary.step,
    )  # fmt: skip
    return None


def _resume(facts: Facts, draft: _Draft, canary: CanaryStatus, cause: Cause | None) -> str | None:
    if canary.reason is R.WAITING_FOR_APPROVAL:
        return f"resume does not approve: {canary.message}"
    if _evaluation_holds(canary):
        # an evaluation that gave no verdict is run again (a Job of its own), not skipped
        canary.evaluation = _next_evaluation(canary, canary.step)
    if canary.reason is R.WAITING_FOR_PROMOTION:
        _enter_step(facts, draft, canary, canary.step + 1)
        steps = _steps(facts, draft, canary)
        message = f"resume by the user: {_where(facts, canary, steps)}"
    else:
        _align_with_step(facts, draft, canary)
        message = f"canary {canary.revision} resumed by the user"
    draft.note("Normal", "Resumed", message, canary.revision, canary.step)
    return None


# -- why an action does not apply ------------------------------------------------------------------


def _why_not(facts: Facts, canary: CanaryStatus, trigger: Trigger) -> str | None:
    """Why `trigger` (an action) does not apply to the canary in its state; None for what the
    machine observes (those are simply not moves of that state)."""
    if trigger not in _ACTIONS:
        return None
    state = canary.state
    if state is S.WITHDRAWN:
        return f"canary {canary.revision} is being withdrawn (spec moved on)"
    if trigger is Trigger.RETRY:
        return "the canary has neither failed nor been aborted"
    if state in ROLLED_BACK:
        reason = canary.reason.value if canary.reason else state.value
        return f"the canary was rolled back ({reason}: {canary.message}); retry runs it again"
    if state is S.FAILED:
        reason = canary.reason.value if canary.reason else state.value
        return (
            f"the canary is held after a failure ({reason}: {canary.message}); abort, retry or "
            "promote"
        )
    return "the canary is not paused"


_ACTIONS = {Trigger(action.value) for action in Action}


def _act(facts: Facts, draft: _Draft, action: Action) -> None:
    canary = draft.status.canary
    if canary is None:
        stable = draft.stable
        why: str | None = (
            f"no canary is in progress; revision {stable.revision} ({stable.version}) is stable"
        )
    elif facts.held and action in (Action.PROMOTE, Action.PROMOTE_FULL, Action.RETRY):
        why = (
            f"the spec cannot be served ({_problems_text(facts)}); canary {canary.revision} "
            "holds where it is until it can"
        )
    else:
        why = _fire(facts, draft, canary, Trigger(action.value))
    if why is not None:
        _ignore(draft, action, why)


def _ignore(draft: _Draft, action: Action, why: str) -> None:
    draft.note("Normal", "ActionIgnored", f"{action.value} ignored: {why}")


# -- who is stable, who is the canary -------------------------------------------------------------


def _settle_revisions(facts: Facts, draft: _Draft) -> None:
    status = draft.status
    stable = status.stable
    if stable is None:
        fresh = _revision_status(facts)
        draft.note(
            "Normal",
            "Deploying",
            f"revision {fresh.revision} ({fresh.version}) with {facts.total} replicas",
            fresh.revision,
        )
        status.stable = fresh
        return
    if _replace_what_serves_nothing(facts, draft):
        return
    canary = status.canary
    replaced: tuple[CanaryStatus, CanaryState] | None = None
    if canary is not None and canary.revision != facts.revision:
        state = canary.state
        _fire(facts, draft, canary, Trigger.SPEC_MOVED)
        if _plan(facts, status).replicas[canary.revision] == 0:
            _fire(facts, draft, canary, Trigger.GONE)
            if state is not S.WITHDRAWN:  # withdrawn now, not in an earlier decision
                replaced = canary, state
    if status.canary is None and facts.revision != stable.revision:
        _start_canary(facts, draft, replaced)


def _replace_what_serves_nothing(facts: Facts, draft: _Draft) -> bool:
    """Replace the stable outright by the spec's revision when nothing serves (no capacity to
    protect), unless the spec's revision is the canary just turned down, or a canary running
    with pods of its own. True if replaced."""
    status = draft.status
    stable = draft.stable
    if (
        stable.revision == facts.revision
        or _serves(facts, status)
        or _turned_down(status, facts.revision)
        or _running_with_pods(facts, status)
    ):
        return False
    fresh = _revision_status(facts)
    draft.note(
        "Normal",
        "Replaced",
        f"revision {stable.revision} ({stable.version}) has no Ready pod; revision "
        f"{fresh.revision} ({fresh.version}) replaces it",
        fresh.revision,
    )
    status.stable, status.canary = fresh, None
    return True


def _serves(facts: Facts, status: ModelDeploymentStatus) -> bool:
    """Whether the stable (or the canary) serves, or ever served at full size."""
    stable = status.stable
    assert stable is not None
    serving = [stable.revision] + ([status.canary.revision] if status.canary else [])
    return was_ready(status, stable.revision) or any(facts.observed.ready(r) for r in serving)


def _turned_down(status: ModelDeploymentStatus, revision: str) -> bool:
    """Whether `revision` is the canary just rolled back, aborted or held failed: it replaces
    nothing outright (a stable whose pods dip is kept; a retry or a new spec asks again)."""
    canary = status.canary
    return (
        canary is not None
        and canary.revision == revision
        and canary.state in (*ROLLED_BACK, S.FAILED)
    )


def _running_with_pods(facts: Facts, status: ModelDeploymentStatus) -> bool:
    """Whether the spec's revision is a running canary that has pods: when none of them is
    Ready either (a canary at 100 % that crashes, whose stable it scaled to nothing), its
    failure is for `_detect_failure` to judge and roll back, its slowness for its steps. It is
    not handed the ModelDeployment, nor is the stable it took over from deleted."""
    canary = status.canary
    return (
        canary is not None
        and canary.revision == facts.revision
        and canary.state in RUNNING
        and facts.observed.replicas(canary.revision) > 0
    )


def _start_canary(
    facts: Facts, draft: _Draft, replaced: tuple[CanaryStatus, CanaryState] | None = None
) -> None:
    """Start the spec's revision as the canary. A canary `replaced` in the same decision (it had
    no pod left: rolled back, aborted) was never seen Withdrawn: the start's Event names it in
    place of its own CanarySuperseded, one Event for one step (as Deploying and Deployed)."""
    status = draft.status
    stable = draft.stable
    fresh = _revision_status(facts)
    canary = CanaryStatus(
        revision=fresh.revision,
        version=fresh.version,
        uri=fresh.uri,
        template=fresh.template,
        pinned=fresh.pinned,
        started_at=facts.stamp,
        step_started_at=facts.stamp,
    )
    status.canary = canary
    if judged(facts.md, status, canary):
        status.analysis = AnalysisStatus(revision=canary.revision)
    instead = ""
    if replaced is not None:
        old, state = replaced
        draft.unsay(R.SUPERSEDED.value, old.revision)
        instead = f" in place of canary {old.revision} ({old.version}, {state.value})"
    if is_undo(status, canary.revision):
        draft.note(
            "Normal",
            "Undo",
            f"back to revision {canary.revision} ({canary.version}) from history{instead}: no "
            f"steps, no analysis; it becomes stable once {facts.total} of its pods are Ready",
            canary.revision,
        )
    else:
        steps = _steps(facts, draft, canary)
        plan = f"{len(steps)} steps" if steps else "no steps"
        draft.note(
            "Normal",
            "CanaryStarted",
            f"revision {canary.revision} ({canary.version}) is the canary ({plan}){instead}; "
            f"stable revision {stable.revision} ({stable.version}) keeps serving",
            canary.revision,
            0,
        )
    _enter_step(facts, draft, canary, 0, quiet=True)


def _record_first_ready(facts: Facts, draft: _Draft) -> None:
    """The first time a revision serves at full size without a canary, it enters history."""
    status = draft.status
    stable = draft.stable
    ready = facts.observed.ready(stable.revision)
    if status.canary is not None or was_ready(status, stable.revision) or ready < facts.total:
        return
    status.history = [_history_entry(stable, facts.stamp), *status.history]
    status.history = _bounded_history(facts, status)
    # deployed as soon as decided on: one Event says both
    draft.unsay("Deploying", stable.revision)
    draft.note(
        "Normal",
        "Deployed",
        f"revision {stable.revision} ({stable.version}) serves with {ready}/{facts.total} pods "
        "Ready",
        stable.revision,
    )


# -- steps -----------------------------------------------------------------------------------------


def _steps(facts: Facts, draft: _Draft, canary: CanaryStatus) -> list[CanaryStep]:
    return steps_of(facts.md, draft.status, canary)


def _enter_step(
    facts: Facts, draft: _Draft, canary: CanaryStatus, index: int, *, quiet: bool = False
) -> None:
    steps = _steps(facts, draft, canary)
    canary.step = min(index, len(steps))
    canary.step_started_at = facts.stamp
    canary.approvals = []  # approvals belong to the step they were given at
    canary.ready_at = facts.stamp if _ready_at_weight(facts, draft, canary) else None
    _align_with_step(facts, draft, canary)
    if quiet:
        return
    # steps passed within one decision (a 0 s pause, a step already at its weight) say so in the
    # last one's Event: one Event per decision on where the canary stands, not one per step
    first = draft.first_step.setdefault(canary.revision, canary.step)
    message = _where(facts, canary, steps)
    if first < canary.step:
        names = ", ".join(step_name(steps, i) for i in range(first, canary.step))
        message = f"{message} ({names} passed at once)"
    draft.unsay("CanaryStep", canary.revision)
    draft.note("Normal", "CanaryStep", message, canary.revision, canary.step)


def _align_with_step(facts: Facts, draft: _Draft, canary: CanaryStatus) -> None:
    """A canary that goes on takes the state its step gives it: Paused (WaitingForPromotion) at a
    pause without a duration, Promoting after the last step, Progressing otherwise. The steps
    may have been edited since the last decision, so this runs on every decision too."""
    steps = _steps(facts, draft, canary)
    if canary.step >= len(steps):
        canary.state, canary.reason, canary.message = S.PROMOTING, None, ""
    elif approvals_needed(steps, canary.step):
        canary.state, canary.reason = S.PAUSED, R.WAITING_FOR_APPROVAL
        canary.message = _approval_message(steps, canary)
    elif waits_for_promotion(steps, canary.step):
        canary.state, canary.reason = S.PAUSED, R.WAITING_FOR_PROMOTION
        canary.message = f"{step_name(steps, canary.step)} waits for `kubectl slipway promote`"
    else:
        canary.state, canary.reason, canary.message = S.PROGRESSING, None, ""


def _follows_its_step(canary: CanaryStatus) -> bool:
    """Whether the canary's state is the one its step gives it (not a pause or a failure)."""
    return canary.state in (S.PROGRESSING, S.PROMOTING) or (
        canary.state is S.PAUSED
        and canary.reason in (R.WAITING_FOR_PROMOTION, R.WAITING_FOR_APPROVAL)
    )


def _ready_at_weight(facts: Facts, draft: _Draft, canary: CanaryStatus) -> bool:
    steps = _steps(facts, draft, canary)
    target = canary_pods_at(steps, canary.step, facts.total)
    return facts.observed.ready(canary.revision) >= target


def _step_complete(facts: Facts, status: ModelDeploymentStatus, canary: CanaryStatus) -> bool:
    if facts.total == 0:
        # scaled to zero (KEDA at night, kubectl scale): no pod to judge, no traffic to measure;
        # the canary holds at its step until there are replicas again, never promoted unseen
        return False
    steps = steps_of(facts.md, status, canary)
    step = steps[canary.step]
    weight = weight_at(steps, canary.step)
    # no step passes on no evidence while the canary serves (measured only with a Ready pod)
    if canary_replicas_for(weight, facts.total) > 0 and not _evidence_allows(facts, status, canary):
        return False
    return kind_of(step).complete(facts, status, canary, step, weight)


def _advance(facts: Facts, draft: _Draft) -> None:
    """Complete every step that is complete now, and promote after the last one; nothing moves
    toward a spec that cannot be served."""
    status = draft.status
    canary = running_canary(facts, status)
    if canary is not None and _follows_its_step(canary):
        _align_with_step(facts, draft, canary)
    while not facts.held:
        canary = running_canary(facts, status)
        if canary is None:
            return
        if canary.state is S.PROMOTING:
            if facts.total > 0 and facts.observed.ready(canary.revision) >= facts.total:
                _fire(facts, draft, canary, Trigger.FULL_SIZE)
            return
        if canary.state is not S.PROGRESSING or not _step_complete(facts, status, canary):
            return
        _fire(facts, draft, canary, Trigger.STEP_COMPLETE)


# -- analysis --------------------------------------------------------------------------------------


def _record_measurements(facts: Facts, draft: _Draft, measurements: Sequence[Measurement]) -> None:
    """One round of measurements: count it, keep it, and act on its verdict."""
    status = draft.status
    canary = running_canary(facts, status)
    spec = facts.rollout.analysis
    if canary is None or spec is None or not analysis_applies(facts.md, status, canary):
        return
    before = status.analysis
    if before is None or before.revision != canary.revision:
        before = AnalysisStatus(revision=canary.revision)
    # a round started before this attempt did (one in flight through a rollback and a retry)
    # measured the attempt before: never counted against this one
    since = parse_time(canary.started_at) if canary.started_at else None
    taken = [
        m if m.revision else m.model_copy(update={"revision": canary.revision})
        for m in measurements
        if since is None or parse_time(m.at) >= since
    ]
    if not taken:
        return
    kept = max(MEASUREMENTS_KEPT, len(spec.metrics))
    analysis = before.model_copy(
        update={
            "measurements": [*before.measurements, *taken][-kept:],
            "last_measured_at": facts.stamp,
        }
    )
    status.analysis = analysis
    failed = [m for m in taken if m.verdict is Verdict.FAILED]
    unsure = [m for m in taken if m.verdict in (Verdict.INCONCLUSIVE, Verdict.ERROR)]
    if failed:
        analysis.failures += 1
        evidence = "; ".join(_describe_measurement(m) for m in failed)
        if analysis.failures > spec.failure_limit:
            message = (
                f"{evidence} ({analysis.failures} failed measurements, failureLimit "
                f"{spec.failure_limit})"
            )
            _fire(facts, draft, canary, Trigger.FAILED, Cause(R.ANALYSIS_FAILED, message))
        else:
            draft.note(
                "Warning",
                "AnalysisMeasurementFailed",
                f"{evidence} (failure {analysis.failures}, failureLimit {spec.failure_limit} "
                "tolerated); the steps wait for a successful measurement",
                canary.revision,
                canary.step,
            )
    elif unsure:
        analysis.inconclusive += 1
        evidence = "; ".join(_describe_measurement(m) for m in unsure)
        cause = Cause(R.ANALYSIS_INCONCLUSIVE, evidence)
        _fire(facts, draft, canary, Trigger.INCONCLUSIVE, cause)
    else:
        analysis.successes += 1
        _fire(facts, draft, canary, Trigger.PASSED)


def _describe_measurement(m: Measurement) -> str:
    """One measurement for people: metric, value, threshold, verdict and the query as sent."""
    value = "no data" if m.value is None else f"{m.value:g}"
    bounds = [
        f"min {m.min:g}" if m.min is not None else "",
        f"max {m.max:g}" if m.max is not None else "",
    ]
    limits = ", ".join(b for b in bounds if b)
    text = f"{m.metric} = {value}" + (f" ({limits})" if limits else "") + f": {m.verdict.value}"
    if m.message:
        text += f", {m.message}"
    if m.query:
        text += f" [query: {m.query}]"
    return text


def _evidence_allows(facts: Facts, status: ModelDeploymentStatus, canary: CanaryStatus) -> bool:
    """Whether the latest measurement of every metric is Successful (or no analysis applies)."""
    spec = facts.rollout.analysis
    if spec is None or not analysis_applies(facts.md, status, canary):
        return True
    analysis = status.analysis
    if analysis is None or analysis.revision != canary.revision:
        return False
    latest = {
        m.metric: m
        for m in analysis.measurements
        if m.revision in ("", canary.revision) and m.step is None  # not an evaluation's gate
    }
    return all(
        metric.name in latest and latest[metric.name].verdict is Verdict.SUCCESSFUL
        for metric in spec.metrics
    )


def _user_paused(canary: CanaryStatus) -> bool:
    return canary.state is S.PAUSED and canary.reason is R.USER_PAUSED


def _gets_traffic(md: ModelDeployment, status: ModelDeploymentStatus, canary: CanaryStatus) -> bool:
    """Whether user traffic reaches the canary: it has a Ready pod and its step a weight (before
    the first weight, a canary's pod is there for an evaluation only)."""
    steps = steps_of(md, status, canary)
    return canary.ready_replicas >= 1 and weight_at(steps, canary.step) > 0


# -- evaluation ------------------------------------------------------------------------------------

_WORST_FIRST = (Verdict.FAILED, Verdict.ERROR, Verdict.INCONCLUSIVE, Verdict.SUCCESSFUL)


def _next_evaluation(canary: CanaryStatus, step: int) -> EvaluationStatus:
    """A new evaluation of `step`, not started yet; its attempt number is the canary's next, so
    that its Job has a name of its own."""
    previous = canary.evaluation.attempt if canary.evaluation is not None else 0
    return EvaluationStatus(step=step, attempt=previous + 1)


def _evaluation_holds(canary: CanaryStatus) -> bool:
    """The current step's evaluation was judged and gave no verdict to go on (Inconclusive or
    Error): only resume (which runs it again) or promote (which skips it) moves the canary."""
    run = current_evaluation(canary)
    return run is not None and run.verdict in (Verdict.INCONCLUSIVE, Verdict.ERROR)


def _start_evaluation(facts: Facts, draft: _Draft) -> None:
    """At an evaluate step: its evaluation starts once the canary's pod for it is Ready."""
    canary = running_canary(facts, draft.status)
    if canary is None or canary.state is not S.PROGRESSING or facts.held:
        return
    steps = _steps(facts, draft, canary)
    evaluate = evaluate_at(steps, canary.step)
    if evaluate is None:
        return
    run = current_evaluation(canary)
    if run is None:
        run = canary.evaluation = _next_evaluation(canary, canary.step)
    if run.started_at is not None or not _ready_at_weight(facts, draft, canary):
        return
    run.started_at = facts.stamp
    draft.note(
        "Normal",
        "EvaluationStarted",
        f"evaluation {run.attempt} of canary {canary.revision} at "
        f"{step_name(steps, canary.step)}: {evaluate.data.uri} goes to the canary and to stable, "
        f"judged by {len(evaluate.gates)} gates",
        canary.revision,
        canary.step,
    )


def _record_evaluation(facts: Facts, draft: _Draft) -> None:
    """The judged gates of a finished evaluation: kept in status.analysis, and acted on as an
    analysis round is (a failed gate fails the canary at once: an evaluation is not repeated)."""
    status = draft.status
    canary = running_canary(facts, status)
    seen = facts.observed.evaluation
    run = canary.evaluation if canary is not None else None
    if canary is None or run is None or seen is None:
        return
    if run.started_at is None or run.verdict is not None:
        return
    if (seen.revision, seen.step, seen.attempt) != (canary.revision, run.step, run.attempt):
        return
    stamped = {"step": run.step, "revision": canary.revision}
    measured = [m.model_copy(update=stamped) for m in seen.measurements]
    draft.evaluated.extend(measured)
    verdicts = {m.verdict for m in measured} or {Verdict.ERROR}
    run.verdict = next(v for v in _WORST_FIRST if v in verdicts)
    run.finished_at = facts.stamp
    before = status.analysis
    if before is None or before.revision != canary.revision:
        before = AnalysisStatus(revision=canary.revision)
    metrics = len(facts.rollout.analysis.metrics) if facts.rollout.analysis else 0
    kept = max(MEASUREMENTS_KEPT, metrics, len(measured))
    analysis = before.model_copy(update={"measurements": [*before.measurements, *measured][-kept:]})
    status.analysis = analysis
    steps = _steps(facts, draft, canary)
    where = f"evaluation {run.attempt} at {step_name(steps, run.step)}"
    if run.verdict is Verdict.SUCCESSFUL:
        analysis.successes += 1
        draft.note(
            "Normal",
            "EvaluationPassed",
            f"{where}: " + "; ".join(_describe_measurement(m) for m in measured),
            canary.revision,
            run.step,
        )
        return
    if run.verdict is Verdict.FAILED:
        analysis.failures += 1
        failed = [m for m in measured if m.verdict is Verdict.FAILED]
        evidence = "; ".join(_describe_measurement(m) for m in failed)
        cause = Cause(R.ANALYSIS_FAILED, f"{where}: {evidence}")
        _fire(facts, draft, canary, Trigger.FAILED, cause)
        return
    analysis.inconclusive += 1
    unsure = [m for m in measured if m.verdict is not Verdict.SUCCESSFUL]
    evidence = "; ".join(_describe_measurement(m) for m in unsure)
    cause = Cause(R.ANALYSIS_INCONCLUSIVE, f"{where}: {evidence}; resume runs it again")
    _fire(facts, draft, canary, Trigger.INCONCLUSIVE, cause)


def _evaluation_job(facts: Facts, status: ModelDeploymentStatus) -> DesiredEvaluation | None:
    """The evaluation Job that should exist: the running evaluation's, while its canary runs at
    its step; a judged one's (never created again) while its canary is in status."""
    canary = status.canary
    run = canary.evaluation if canary is not None else None
    if canary is None or run is None or run.started_at is None:
        return None
    if run.verdict is not None:
        return DesiredEvaluation(canary.revision, run.step, run.attempt, None)
    if canary.state not in RUNNING or run.step != canary.step:
        return None  # rolled back, withdrawn or moved on meanwhile: it stops
    evaluate = evaluate_at(steps_of(facts.md, status, canary), run.step)
    if evaluate is None:
        return None
    return DesiredEvaluation(canary.revision, run.step, run.attempt, evaluate)


# -- progress and failure --------------------------------------------------------------------------


def _note_readiness(facts: Facts, draft: _Draft) -> None:
    canary = running_canary(facts, draft.status)
    if canary is not None and canary.ready_at is None and _ready_at_weight(facts, draft, canary):
        canary.ready_at = facts.stamp


def _detect_failure(facts: Facts, draft: _Draft) -> None:
    canary = running_canary(facts, draft.status)
    if canary is None:
        return
    cause = _failure_of(facts, draft, canary)
    if cause is not None:
        _fire(facts, draft, canary, Trigger.FAILED, cause)


def _failure_of(facts: Facts, draft: _Draft, canary: CanaryStatus) -> Cause | None:
    # this attempt's pods only: those of a failed attempt may still be there when it is retried
    since = parse_time(canary.started_at) - CLOCK_SKEW if canary.started_at else None
    failing = facts.observed.failing(canary.revision, since)
    if failing is not None:
        reason = failing.failing_reason or f"pods of revision {canary.revision} crash-loop"
        return Cause(R.CANARY_CRASH_LOOPING, reason)
    steps = _steps(facts, draft, canary)
    if canary.step < len(steps):
        step = steps[canary.step]
        failed = kind_of(step).failure(facts, canary, step)
        if failed is not None:
            return Cause(*failed)
    deadline = facts.rollout.progress_deadline_seconds
    if canary.ready_at is None and facts.now >= after(step_started(facts, canary), deadline):
        target = canary_pods_at(steps, canary.step, facts.total)
        ready = facts.observed.ready(canary.revision)
        return Cause(
            R.PROGRESS_DEADLINE_EXCEEDED,
            f"canary revision {canary.revision} has {ready}/{target} Ready pods {deadline}s "
            f"after {step_name(steps, canary.step)} started (progressDeadlineSeconds)",
        )
    return None


# -- the result ------------------------------------------------------------------------------------


def _finish(facts: Facts, draft: _Draft) -> Decision:
    status = draft.status
    status.history = _bounded_history(facts, status)
    stable = status.stable
    canary = status.canary
    observed = facts.observed
    plan = _plan(facts, status)
    ready = 0
    if stable is not None:
        stable.replicas = plan.replicas[stable.revision]
        stable.ready_replicas = observed.ready(stable.revision)
        ready += stable.ready_replicas
    if canary is not None:
        canary.replicas = plan.replicas[canary.revision]
        canary.ready_replicas = observed.ready(canary.revision)
        canary.weight = plan.weight
        # a canary pod that no user reaches (an evaluation's, before any weight) serves nobody
        ready += facts.reaching_users(canary.revision)
    status.replicas = facts.total
    status.ready_replicas = ready
    status.observed_generation = facts.md.metadata.generation
    canary_target = plan.targets.get(canary.revision, 0) if canary is not None else 0
    status.phase = phase_of(facts, status)
    status.conditions = conditions_for(facts, status, plan.weight, canary_target)
    # Service <name> and status.url follow the stable revision's port until a promotion
    port = facts.md.spec.runtime.port
    if stable is not None and stable.template is not None:
        port = _port_of(stable.template)
    return Decision(
        status=status,
        revisions=_desired_revisions(facts, status, plan),
        stable_weight=100 - plan.weight,
        canary_weight=plan.weight,
        events=draft.events,
        requeue_after=_requeue_after(facts, status, plan.weight),
        port=port,
        service_revision=plan.service_revision,
        evaluation=_evaluation_job(facts, status),
        evaluated=draft.evaluated,
        report_after=_first_report_wait(facts, draft),
    )


def _first_report_wait(facts: Facts, draft: _Draft) -> float | None:
    """Seconds a new ModelDeployment's first status may wait for its pods (None: none).

    Only a plain first deployment that goes well waits: nothing recorded yet, nothing to warn
    about, its pods on their way and none of them Ready yet (once one serves, the record that
    protects it from a spec edit must exist). Until then the object keeps the status the CRD
    defaults (observedGeneration 0: kstatus and Argo CD read it as in progress); when its pods
    get Ready together, one status write and one Event (Deployed) say it all.
    """
    status = draft.status
    if facts.md.status.stable is not None or status.stable is None or status.canary is not None:
        return None
    if status.phase is not Phase.PROGRESSING or facts.held or facts.observed.refusals:
        return None
    if any(event.type == "Warning" for event in draft.events):
        return None
    found = facts.observed.revisions.get(status.stable.revision)
    if found is not None and found.ready_replicas > 0:
        return None
    if any(revision != status.stable.revision for revision in facts.observed.revisions):
        return None  # another revision's Deployment: whatever it is, say what is decided
    created = found.created_at if found is not None and found.created_at else facts.now
    wait = (created - facts.now).total_seconds() + FIRST_REPORT_SECONDS
    return wait if wait > 0 else None


def _plan(facts: Facts, status: ModelDeploymentStatus) -> _Plan:
    """Where every revision is going, and the safe move toward it this reconcile."""
    stable = status.stable
    if stable is None:
        return _Plan(targets={}, replicas={}, weight=0)
    canary = status.canary
    observed = facts.observed
    # canary first: it is the one to give up Ready pods when both shrink
    targets: dict[str, int] = {}
    weight = 0
    stable_target = facts.total
    service_revision = None
    idle: set[str] = set()
    going = False
    if canary is not None:
        canary_ready = facts.reaching_users(canary.revision)
        stable_ready = observed.ready(stable.revision)
        steps = steps_of(facts.md, status, canary)
        step_weight = weight_at(steps, canary.step)
        going = canary.state in (*ROLLED_BACK, S.WITHDRAWN) or canary.revision != facts.revision
        if going:
            # with the ratio the weight goes with the pods; with a route it is taken back below,
            # as fast as the stable's Ready pods can carry it
            if not facts.gateway:
                weight = weight_in_effect(
                    100, canary_ready, stable_ready, facts.total, gateway=False
                )
            targets[canary.revision] = 0
        else:
            weight = weight_in_effect(
                step_weight, canary_ready, stable_ready, facts.total, gateway=facts.gateway
            )
            targets[canary.revision] = canary_pods_at(steps, canary.step, facts.total)
            stable_target = stable_replicas_for(
                step_weight, weight, facts.total, gateway=facts.gateway
            )
            # a pod the step needs beyond its weight's (an evaluation's) comes from the surge;
            # without one, from a stable pod that maxUnavailable lets go
            extra = targets[canary.revision] - canary_replicas_for(step_weight, facts.total)
            stable_target -= max(0, extra - facts.budget.surge)
        if _shields_canary(facts, canary.revision, step_weight, targets[canary.revision]):
            service_revision = stable.revision
            if observed.service_revision != stable.revision:
                # no new canary pod before Service <name> leaves the canary's pods out
                targets[canary.revision] = min(
                    targets[canary.revision], observed.replicas(canary.revision)
                )
        if not facts.gateway and observed.service_revision == stable.revision:
            idle.add(canary.revision)  # its Ready pods get no user traffic: no capacity
    targets[stable.revision] = stable_target
    # held where it is: the stable gives up no pod to a canary that failed, not even one that
    # is not Ready for a moment
    canary_held = canary is not None and canary.state is S.FAILED
    replicas = plan_replicas(
        targets,
        observed,
        total=facts.total,
        budget=facts.budget,
        grow_freely={stable.revision},
        idle=idle,
        steady={stable.revision} if canary_held else (),
    )
    # old revisions (the stable until the last promotion, kept through the scale-down delay):
    # no capacity to count on, but what serves through Service <name> until the others make up
    kept = _kept_revisions(facts, status)
    ready_elsewhere = sum(
        min(observed.ready(rev), replicas[rev]) for rev in targets if rev not in idle
    )
    replicas = {
        **plan_leaving(
            kept, observed, ready_elsewhere=ready_elsewhere, total=facts.total, budget=facts.budget
        ),
        **replicas,
    }
    targets = {**kept, **targets}
    if canary is not None and going and facts.gateway:
        staying = min(facts.reaching_users(canary.revision), replicas[canary.revision])
        weight = handback_weight(staying, observed.ready(stable.revision), facts.total)
    return _Plan(
        targets=targets,
        replicas=replicas,
        weight=weight,
        service_revision=service_revision,
    )


def _shields_canary(facts: Facts, revision: str, step_weight: int, target: int) -> bool:
    """Whether Service <name> must select the stable revision alone: the canary must get no user
    traffic (its step's weight is 0: an evaluation before the first weight) but has, or is to
    get, pods. Replica ratio only: with an HTTPRoute its weight of 0 does it."""
    if facts.gateway or step_weight > 0:
        return False
    observed = facts.observed
    return target > 0 or observed.replicas(revision) > 0 or observed.ready(revision) > 0


def _kept_revisions(facts: Facts, status: ModelDeploymentStatus) -> dict[str, int]:
    """Old revisions from history and their target replicas: zero, except the one stable until
    the last promotion, which keeps its pods through the scale-down delay."""
    current = {r.revision for r in (status.stable, status.canary) if r is not None}
    delayed = _scale_down_until(facts, status) is not None
    kept: dict[str, int] = {}
    for index, entry in enumerate(status.history):
        if entry.revision in current:
            continue
        previous_stable = index == 1 and delayed
        kept[entry.revision] = facts.observed.replicas(entry.revision) if previous_stable else 0
    return kept


def _desired_revisions(
    facts: Facts, status: ModelDeploymentStatus, plan: _Plan
) -> list[DesiredRevision]:
    stable = status.stable
    if stable is None:
        return []
    wanted: list[RevisionStatus | HistoryEntry] = [stable]
    if status.canary is not None:
        wanted.append(status.canary)
    wanted.extend(h for h in status.history if h.revision in plan.targets)
    tracks: dict[str, Track] = {stable.revision: "stable"}
    if status.canary is not None:
        tracks[status.canary.revision] = "canary"
    result: list[DesiredRevision] = []
    seen: set[str] = set()
    for entry in wanted:
        revision = entry.revision
        serving = entry.template if entry.template is not None else _spec_template(facts, revision)
        if revision in seen or serving is None:
            continue  # without its serving spec a Deployment cannot be rebuilt: let it go
        seen.add(revision)
        result.append(
            DesiredRevision(
                revision=revision,
                serving=dict(serving),
                replicas=plan.replicas[revision],
                track=tracks.get(revision),
                # the shell pins every recorded revision before deciding (pin_revisions)
                pinned=entry.pinned or facts.pins,
                port=_port_of(serving),
            )
        )
    return result


def _port_of(serving: dict[str, Any]) -> int:
    """The port a revision's server listens on, from its serving spec (as status keeps it)."""
    port = (serving.get("runtime") or {}).get("port")
    return int(port) if port is not None else int(RuntimeSpec.model_fields["port"].default)


def _requeue_after(facts: Facts, status: ModelDeploymentStatus, weight: int) -> float | None:
    """Seconds until a timer matters; Pods changing wake the reconcile through watches instead.

    The HTTPRoute is not watched (it is the user's, applied by people and GitOps tools): while
    any of its traffic goes to the canary (`weight`), it is read again every ROUTE_RECHECK_SECONDS,
    so that a route applied again from git mid-canary gets its weights back, even one that was
    missing or unwired at the last look; otherwise a missing or unwired route is read again
    every RECHECK_SECONDS, so that its Degraded condition goes when it is fixed.
    """
    moments: list[dt.datetime] = []
    canary = running_canary(facts, status)
    if canary is not None:
        steps = steps_of(facts.md, status, canary)
        started = step_started(facts, canary)
        waiting = canary.state is S.PAUSED and canary.reason is R.WAITING_FOR_APPROVAL
        running = canary.state is S.PROGRESSING and not facts.held
        if canary.step < len(steps) and (running or waiting):
            step = steps[canary.step]
            due = kind_of(step).due(facts, canary, step)
            if due is not None:
                moments.append(due)
        if canary.ready_at is None:
            moments.append(after(started, facts.rollout.progress_deadline_seconds))
        measured = (
            analysis_applies(facts.md, status, canary)
            and not _user_paused(canary)
            and _gets_traffic(facts.md, status, canary)
        )
        # a round in flight wakes the reconcile when it ends; the bound of its time is a safety net
        in_flight = facts.observed.measuring_until
        due = (in_flight or next_measurement_at(facts.md, status, canary)) if measured else None
        if due is not None:
            moments.append(due)
    scale_down = _scale_down_until(facts, status)
    if scale_down is not None:
        moments.append(scale_down)
    recheck = facts.observed.refusals or (facts.observed.claim and not facts.observed.claim.exists)
    seconds = [(m - facts.now).total_seconds() for m in moments]
    if recheck:
        seconds.append(RECHECK_SECONDS)
    route = facts.observed.route
    if weight > 0 and route is not None:
        # also while it is missing or not wired to our Services: applied again (from git, with
        # its own weights) it must get ours back soon, or its weights would stand
        seconds.append(ROUTE_RECHECK_SECONDS)
    elif route is not None and (not route.exists or route.unwired is not None):
        seconds.append(RECHECK_SECONDS)  # Degraded until it is there: look again, as for a claim
    if not seconds:
        return None
    return max(MIN_REQUEUE_SECONDS, min(seconds))


# -- small helpers ---------------------------------------------------------------------------------


def _revision_status(facts: Facts) -> RevisionStatus:
    serving = facts.md.spec.serving()
    return RevisionStatus(
        revision=facts.revision,
        version=serving.model.version,
        uri=serving.model.uri,
        template=serving.wire(),
        pinned=facts.pins,
    )


def _spec_template(facts: Facts, revision: str) -> dict[str, Any] | None:
    if revision != facts.spec_revision or facts.held:
        return None
    return facts.md.spec.serving().wire()


def _history_entry(revision: RevisionStatus, stamp: str | None) -> HistoryEntry:
    return HistoryEntry(
        revision=revision.revision,
        version=revision.version,
        uri=revision.uri,
        promoted_at=stamp,
        template=revision.template,
        pinned=revision.pinned,
    )


def _bounded_history(facts: Facts, status: ModelDeploymentStatus) -> list[HistoryEntry]:
    """The stable and `revisionHistoryLimit` older revisions; the previous stable stays through
    its scale-down delay even when no old revision is kept, and past the bound, any revision
    whose Deployment still has pods: it leaves as every old revision does (its Ready pods only
    as far as the stable makes up for them), then goes from history, never deleted outright."""
    keep = facts.md.spec.revision_history_limit + 1
    if _scale_down_until(facts, status) is not None:
        keep = max(keep, 2)
    leaving = [h for h in status.history[keep:] if facts.observed.replicas(h.revision) > 0]
    return status.history[:keep] + leaving


def _scale_down_until(facts: Facts, status: ModelDeploymentStatus) -> dt.datetime | None:
    """When the previous stable scales to zero, while that is still ahead."""
    history = status.history
    stable = status.stable
    if len(history) < 2 or stable is None or history[0].revision != stable.revision:
        return None
    promoted_at = history[0].promoted_at
    if promoted_at is None:
        return None
    until = after(promoted_at, facts.rollout.scale_down_delay_seconds)
    return until if facts.now < until else None


def _where(facts: Facts, canary: CanaryStatus, steps: Sequence[CanaryStep]) -> str:
    if canary.step < len(steps):
        return f"canary {canary.revision} at {step_name(steps, canary.step)}"
    done = f"all {len(steps)} steps done; " if steps else ""
    return f"{done}canary {canary.revision} is promoted once {facts.total} of its pods are Ready"


def _problems_text(facts: Facts) -> str:
    return "; ".join(message for _, message in facts.problems)


TRANSITIONS = _transitions()
