"""The rollout state machine: (spec, status, observed, measurements, action, now) → Decision.

Pure: no clock, no client, no logging. All rollout state lives in `status` (so a restarted operator
resumes at the same step with the same timers), and `decide` on a status it produced, with the
same observations and time, returns that same status: a reconcile with nothing to do writes nothing.

The life of a revision:
- the first revision ever becomes stable directly;
- a new revision becomes the canary and goes through the steps (Canary), or straight to full size
  (Rolling, or an undo to a revision from history), then is promoted: it becomes stable, and the
  old stable scales to zero after `scaleDownDelaySeconds` and is kept for undo;
- a failed canary (analysis, progress deadline, crash loop) is rolled back (`autoRollback`) or held
  (phase Degraded); a rolled-back canary stays at zero until `retry` or a new spec;
- a spec back at the stable revision (a git revert), or a newer spec, withdraws the canary: the
  stable is scaled back to full first, then the canary goes.

Reasons are stored as "Reason: message" in `failure_reason` and `pause_reason`, so conditions can be
rebuilt from status alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from slipway.api import (
    AnalysisStatus,
    CanaryStatus,
    CanaryStep,
    ConditionType,
    HistoryEntry,
    Measurement,
    ModelDeployment,
    ModelDeploymentStatus,
    Phase,
    RevisionPins,
    RevisionStatus,
    RolloutSpec,
    Strategy,
    Verdict,
    duration_seconds,
)
from slipway.rollout.capacity import (
    Budget,
    budget_of,
    canary_replicas_for,
    plan_replicas,
    stable_replicas_for,
    weight_in_effect,
)
from slipway.rollout.conditions import ConditionState, updated_conditions
from slipway.rollout.model import (
    Action,
    Decision,
    DesiredRevision,
    Event,
    EventType,
    Observed,
    Track,
)
from slipway.rollout.times import after, rfc3339

# measurements kept in status.analysis (at least one per metric, so the latest round is whole)
MEASUREMENTS_KEPT = 10
# a timer that is already due asks again after this long (the shell may not have measured yet)
MIN_REQUEUE_SECONDS = 1.0

# pause kinds (the prefix of pause_reason)
USER_PAUSED = "UserPaused"
ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
# failure reasons (the prefix of failure_reason and the Degraded condition's reason)
ANALYSIS_FAILED = "AnalysisFailed"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
CANARY_CRASH_LOOPING = "CanaryCrashLooping"
ABORTED = "Aborted"


# -- the public entry points ----------------------------------------------------------------------


def analysis_due(md: ModelDeployment, revision: str, now: dt.datetime) -> bool:
    """Whether the shell should run the analysis queries before calling `decide`.

    True when analysis is configured for this canary (strategy Canary, not an undo), the canary of
    `revision` runs (not rolled back, failed or paused by the user), it had a Ready pod at the last
    reconcile, and an interval has passed since the last measurement (the first one comes an
    interval after the canary's pods for its first step were all Ready, so it has seen traffic).
    """
    status = md.status
    canary = status.canary
    if canary is None or canary.revision != revision or not _runs(canary):
        return False
    if not _analysis_applies(md, status, canary) or _pause_kind(canary) == USER_PAUSED:
        return False
    if canary.ready_replicas < 1:
        return False
    due = _next_measurement_at(md, status, canary)
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
    to; `measurements` are fresh analysis results (when `analysis_due` said so); `action` is a
    consumed action annotation.
    """
    facts = _Facts.of(md, revision, observed, now, pins)
    draft = _Draft(status=md.status.model_copy(deep=True))
    if action is not None:
        draft.status.last_action = f"{action.value} at {facts.stamp}"
    draft.status.history = _bounded_history(facts, draft.status)
    _settle_revisions(facts, draft)
    _record_first_ready(facts, draft)
    if action is not None:
        _apply_action(facts, draft, action)
    if measurements:
        _record_measurements(facts, draft, measurements)
    _note_readiness(facts, draft)
    _detect_failure(facts, draft)
    _advance(facts, draft)
    return _finish(facts, draft)


# -- the facts of one decision, and the draft it writes -------------------------------------------


@dataclass(frozen=True)
class _Facts:
    md: ModelDeployment
    revision: str
    observed: Observed
    now: dt.datetime
    stamp: str
    total: int
    budget: Budget
    gateway: bool
    pins: RevisionPins  # what a new revision of the spec is pinned to

    @classmethod
    def of(
        cls,
        md: ModelDeployment,
        revision: str,
        observed: Observed,
        now: dt.datetime,
        pins: RevisionPins,
    ) -> _Facts:
        routing = md.spec.rollout.traffic_routing
        return cls(
            md=md,
            revision=revision,
            observed=observed,
            now=now,
            stamp=rfc3339(now),
            total=md.spec.replicas,
            budget=budget_of(md.spec.rollout, md.spec.replicas),
            gateway=routing is not None and routing.gateway_api is not None,
            pins=pins,
        )

    @property
    def rollout(self) -> RolloutSpec:
        return self.md.spec.rollout


@dataclass
class _Draft:
    """The status being written (a private copy) and the Events to emit."""

    status: ModelDeploymentStatus
    events: list[Event] = field(default_factory=list)

    def note(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append(Event(type=type_, reason=reason, message=message))

    @property
    def stable(self) -> RevisionStatus:
        assert self.status.stable is not None, "the stable revision is settled first"
        return self.status.stable


@dataclass(frozen=True)
class _Plan:
    targets: dict[str, int]  # where each revision is going, in the order they give up pods
    replicas: dict[str, int]  # what each revision gets now
    weight: int  # the canary's traffic in effect


# -- who is stable, who is the canary -------------------------------------------------------------


def _settle_revisions(facts: _Facts, draft: _Draft) -> None:
    status = draft.status
    stable = status.stable
    if stable is None or (
        stable.revision != facts.revision and not _was_ready(status, stable.revision)
    ):
        fresh = _revision_status(facts)
        if stable is None:
            draft.note(
                "Normal",
                "Deploying",
                f"revision {fresh.revision} ({fresh.version}) with {facts.total} replicas",
            )
        else:
            # a revision that never served has no capacity to protect: replace it outright
            draft.note(
                "Normal",
                "Replaced",
                f"revision {stable.revision} ({stable.version}) never became Ready; revision "
                f"{fresh.revision} ({fresh.version}) replaces it",
            )
        status.stable, status.canary = fresh, None
        return
    canary = status.canary
    if canary is not None and canary.revision != facts.revision:
        _withdraw_canary(facts, draft, canary)
    if status.canary is None and facts.revision != stable.revision:
        _start_canary(facts, draft)


def _withdraw_canary(facts: _Facts, draft: _Draft, canary: CanaryStatus) -> None:
    """Spec moved away from the canary: stable back to full first, then the canary goes."""
    stable = draft.stable
    if not canary.aborted:
        canary.aborted = True
        canary.paused, canary.pause_reason = False, None
        if facts.revision == stable.revision:
            draft.note(
                "Normal",
                "RevertedToStable",
                f"spec is back at stable revision {stable.revision} ({stable.version}): canary "
                f"{canary.revision} ({canary.version}) is withdrawn once the stable is at full "
                "size",
            )
        else:
            draft.note(
                "Normal",
                "CanarySuperseded",
                f"revision {facts.revision} replaces canary {canary.revision} ({canary.version}); "
                "it starts from the first step once the stable is back at full size",
            )
    if _plan(facts, draft.status).replicas[canary.revision] == 0:
        draft.status.canary = None


def _start_canary(facts: _Facts, draft: _Draft) -> None:
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
    if _analysis_applies(facts.md, status, canary):
        status.analysis = AnalysisStatus(revision=canary.revision)
    if _is_undo(status, canary.revision):
        draft.note(
            "Normal",
            "Undo",
            f"back to revision {canary.revision} ({canary.version}) from history: no steps, no "
            f"analysis; it becomes stable once {facts.total} of its pods are Ready",
        )
        return
    steps = _steps_of(facts.md, status, canary)
    plan = f"{len(steps)} steps" if steps else "no steps"
    draft.note(
        "Normal",
        "CanaryStarted",
        f"revision {canary.revision} ({canary.version}) is the canary ({plan}); stable revision "
        f"{stable.revision} ({stable.version}) keeps serving",
    )


def _record_first_ready(facts: _Facts, draft: _Draft) -> None:
    """The first time a revision serves at full size without a canary, it enters history."""
    status = draft.status
    stable = draft.stable
    ready = facts.observed.ready(stable.revision)
    if status.canary is not None or _was_ready(status, stable.revision) or ready < facts.total:
        return
    status.history = [_history_entry(stable, facts.stamp), *status.history]
    status.history = _bounded_history(facts, status)
    draft.note(
        "Normal",
        "Deployed",
        f"revision {stable.revision} ({stable.version}) serves with {ready}/{facts.total} pods "
        "Ready",
    )


# -- actions ---------------------------------------------------------------------------------------


def _apply_action(facts: _Facts, draft: _Draft, action: Action) -> None:
    ignored = _why_not(facts, draft, action)
    if ignored is not None:
        draft.note("Normal", "ActionIgnored", f"{action.value} ignored: {ignored}")


def _why_not(facts: _Facts, draft: _Draft, action: Action) -> str | None:
    """Apply `action`; or say why it does not apply."""
    status = draft.status
    canary = status.canary
    if canary is None:
        stable = draft.stable
        return f"no canary is in progress; revision {stable.revision} ({stable.version}) is stable"
    if canary.revision != facts.revision:
        return f"canary {canary.revision} is being withdrawn (spec moved on)"
    if action is Action.RETRY:
        if _runs(canary):
            return "the canary has neither failed nor been aborted"
        _restart(facts, draft, canary)
        return None
    if canary.aborted:
        return f"the canary was rolled back ({canary.failure_reason}); retry runs it again"
    if action is Action.ABORT:
        _fail(facts, draft, canary, ABORTED, "aborted by the user")
        return None
    steps = _steps_of(facts.md, status, canary)
    if action in (Action.PROMOTE, Action.PROMOTE_FULL):
        draft.note(
            "Normal",
            "PromoteFull" if action is Action.PROMOTE_FULL else "Promote",
            f"{action.value} by the user at {_step_name(steps, canary.step)} of canary "
            f"{canary.revision}",
        )
        canary.failure_reason = None
        canary.paused, canary.pause_reason = False, None
        target = len(steps) if action is Action.PROMOTE_FULL else canary.step + 1
        if canary.step < len(steps):
            _enter_step(facts, draft, canary, min(target, len(steps)))
        return None
    if canary.failure_reason is not None:
        return (
            f"the canary is held after a failure ({canary.failure_reason}); abort, retry or promote"
        )
    if action is Action.PAUSE:
        if _pause_kind(canary) == USER_PAUSED:
            return "the canary is already paused"
        canary.paused = True
        canary.pause_reason = f"{USER_PAUSED}: paused by the user at {facts.stamp}"
        draft.note("Normal", "Paused", f"canary {canary.revision} paused by the user")
        return None
    # Action.RESUME
    if canary.paused:
        canary.paused, canary.pause_reason = False, None
        draft.note("Normal", "Resumed", f"canary {canary.revision} resumed by the user")
        return None
    if _waits_for_promotion(steps, canary):
        _enter_step(facts, draft, canary, canary.step + 1)
        draft.note("Normal", "Resumed", f"resume by the user: {_where(facts, canary, steps)}")
        return None
    return "the canary is not paused"


def _restart(facts: _Facts, draft: _Draft, canary: CanaryStatus) -> None:
    canary.aborted, canary.failure_reason = False, None
    canary.paused, canary.pause_reason = False, None
    canary.step, canary.started_at, canary.step_started_at = 0, facts.stamp, facts.stamp
    canary.ready_at = None
    if _analysis_applies(facts.md, draft.status, canary):
        draft.status.analysis = AnalysisStatus(revision=canary.revision)
    draft.note(
        "Normal",
        "Retry",
        f"canary {canary.revision} ({canary.version}) starts again from the first step",
    )


# -- analysis --------------------------------------------------------------------------------------


def _record_measurements(facts: _Facts, draft: _Draft, measurements: Sequence[Measurement]) -> None:
    """One round of measurements: count it, keep it, and act on its verdict."""
    status = draft.status
    canary = _running_canary(facts, status)
    spec = facts.rollout.analysis
    if canary is None or spec is None or not _analysis_applies(facts.md, status, canary):
        return
    before = status.analysis
    if before is None or before.revision != canary.revision:
        before = AnalysisStatus(revision=canary.revision)
    taken = [
        m if m.revision else m.model_copy(update={"revision": canary.revision})
        for m in measurements
    ]
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
            _fail(
                facts,
                draft,
                canary,
                ANALYSIS_FAILED,
                f"{evidence} ({analysis.failures} failed measurements, failureLimit "
                f"{spec.failure_limit})",
            )
        else:
            draft.note(
                "Warning",
                "AnalysisMeasurementFailed",
                f"{evidence} (failure {analysis.failures}, failureLimit {spec.failure_limit} "
                "tolerated); the steps wait for a successful measurement",
            )
    elif unsure:
        analysis.inconclusive += 1
        kind = _pause_kind(canary)
        if kind == USER_PAUSED:
            return
        evidence = "; ".join(_describe_measurement(m) for m in unsure)
        canary.paused = True
        canary.pause_reason = f"{ANALYSIS_INCONCLUSIVE}: {evidence}"
        if kind != ANALYSIS_INCONCLUSIVE:
            draft.note(
                "Warning",
                ANALYSIS_INCONCLUSIVE,
                f"{evidence}; the rollout pauses (it never rolls back on missing data) and goes "
                "on by itself after a successful measurement, or with promote or resume",
            )
    else:
        analysis.successes += 1
        if _pause_kind(canary) == ANALYSIS_INCONCLUSIVE:
            canary.paused, canary.pause_reason = False, None
            draft.note(
                "Normal", "AnalysisResumed", "every metric passes again; the rollout goes on"
            )


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


def _evidence_allows(facts: _Facts, status: ModelDeploymentStatus, canary: CanaryStatus) -> bool:
    """Whether the latest measurement of every metric is Successful (or no analysis applies)."""
    spec = facts.rollout.analysis
    if spec is None or not _analysis_applies(facts.md, status, canary):
        return True
    analysis = status.analysis
    if analysis is None or analysis.revision != canary.revision:
        return False
    latest = {m.metric: m for m in analysis.measurements if m.revision in ("", canary.revision)}
    return all(
        metric.name in latest and latest[metric.name].verdict is Verdict.SUCCESSFUL
        for metric in spec.metrics
    )


def _next_measurement_at(
    md: ModelDeployment, status: ModelDeploymentStatus, canary: CanaryStatus
) -> dt.datetime | None:
    spec = md.spec.rollout.analysis
    if spec is None:
        return None
    interval = duration_seconds(spec.interval)
    analysis = status.analysis
    if analysis is not None and analysis.revision == canary.revision and analysis.last_measured_at:
        return after(analysis.last_measured_at, interval)
    if canary.ready_at is not None:
        return after(canary.ready_at, interval)
    return None


# -- progress and failure --------------------------------------------------------------------------


def _note_readiness(facts: _Facts, draft: _Draft) -> None:
    canary = _running_canary(facts, draft.status)
    if (
        canary is not None
        and canary.ready_at is None
        and _canary_ready_at_target(facts, draft, canary)
    ):
        canary.ready_at = facts.stamp


def _detect_failure(facts: _Facts, draft: _Draft) -> None:
    canary = _running_canary(facts, draft.status)
    if canary is None:
        return
    failing = facts.observed.failing(canary.revision)
    if failing is not None:
        reason = failing.failing_reason or f"pods of revision {canary.revision} crash-loop"
        _fail(facts, draft, canary, CANARY_CRASH_LOOPING, reason)
        return
    deadline = facts.rollout.progress_deadline_seconds
    if canary.ready_at is None and facts.now >= after(_step_started(facts, canary), deadline):
        steps = _steps_of(facts.md, draft.status, canary)
        target = canary_replicas_for(_weight_at(steps, canary.step), facts.total)
        ready = facts.observed.ready(canary.revision)
        _fail(
            facts,
            draft,
            canary,
            PROGRESS_DEADLINE_EXCEEDED,
            f"canary revision {canary.revision} has {ready}/{target} Ready pods {deadline}s "
            f"after {_step_name(steps, canary.step)} started (progressDeadlineSeconds)",
        )


def _fail(facts: _Facts, draft: _Draft, canary: CanaryStatus, reason: str, message: str) -> None:
    """Roll the canary back (autoRollback, or an abort), or hold it where it is."""
    stable = draft.stable
    canary.failure_reason = f"{reason}: {message}"
    canary.paused, canary.pause_reason = False, None
    if reason == ABORTED or facts.rollout.auto_rollback:
        canary.aborted = True
        draft.note(
            "Warning",
            ABORTED if reason == ABORTED else "RolledBack",
            f"{reason}: {message}; canary {canary.revision} ({canary.version}) is rolled back, "
            f"stable revision {stable.revision} ({stable.version}) serves all traffic",
        )
        return
    draft.note(
        "Warning",
        reason,
        f"{message}; canary {canary.revision} is held where it is (autoRollback is false): abort, "
        "retry or promote it",
    )


def _advance(facts: _Facts, draft: _Draft) -> None:
    """Complete every step that is complete now, and promote after the last one."""
    status = draft.status
    while True:
        canary = _running_canary(facts, status)
        if canary is None or canary.paused:
            return
        steps = _steps_of(facts.md, status, canary)
        if canary.step >= len(steps):
            if facts.observed.ready(canary.revision) >= facts.total:
                _promote(facts, draft, canary)
            return
        if not _step_complete(facts, status, canary, steps):
            return
        _enter_step(facts, draft, canary, canary.step + 1)


def _step_complete(
    facts: _Facts, status: ModelDeploymentStatus, canary: CanaryStatus, steps: list[CanaryStep]
) -> bool:
    step = steps[canary.step]
    weight = _weight_at(steps, canary.step)
    target = canary_replicas_for(weight, facts.total)
    # no step passes on no evidence while the canary serves (measured only with a Ready pod)
    if target > 0 and not _evidence_allows(facts, status, canary):
        return False
    if step.pause is not None:
        if step.pause.duration is None:
            return False
        ends = after(_step_started(facts, canary), duration_seconds(step.pause.duration))
        return facts.now >= ends
    ready = facts.observed.ready(canary.revision)
    if ready < target:
        return False
    stable = status.stable
    assert stable is not None
    in_effect = weight_in_effect(
        weight, ready, facts.observed.ready(stable.revision), facts.total, gateway=facts.gateway
    )
    stable_target = stable_replicas_for(weight, in_effect, facts.total, gateway=facts.gateway)
    return facts.observed.replicas(stable.revision) <= stable_target


def _enter_step(facts: _Facts, draft: _Draft, canary: CanaryStatus, index: int) -> None:
    steps = _steps_of(facts.md, draft.status, canary)
    canary.step = min(index, len(steps))
    canary.step_started_at = facts.stamp
    canary.ready_at = facts.stamp if _canary_ready_at_target(facts, draft, canary) else None
    draft.note("Normal", "CanaryStep", _where(facts, canary, steps))


def _promote(facts: _Facts, draft: _Draft, canary: CanaryStatus) -> None:
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
    status.stable, status.canary = promoted, None
    status.history = [_history_entry(promoted, facts.stamp), *others]
    status.history = _bounded_history(facts, status)
    draft.note(
        "Normal",
        "Promoted",
        f"revision {promoted.revision} ({promoted.version}) is stable and serves all traffic; "
        f"revision {old.revision} ({old.version}) scales to zero in "
        f"{facts.rollout.scale_down_delay_seconds}s and is kept for undo",
    )


# -- the result ------------------------------------------------------------------------------------


def _finish(facts: _Facts, draft: _Draft) -> Decision:
    status = draft.status
    stable = draft.stable
    canary = status.canary
    status.history = _bounded_history(facts, status)
    plan = _plan(facts, status)
    observed = facts.observed
    stable.replicas = plan.replicas[stable.revision]
    stable.ready_replicas = observed.ready(stable.revision)
    ready = stable.ready_replicas
    if canary is not None:
        canary.replicas = plan.replicas[canary.revision]
        canary.ready_replicas = observed.ready(canary.revision)
        canary.weight = plan.weight
        ready += canary.ready_replicas
    status.replicas = facts.total
    status.ready_replicas = ready
    status.observed_generation = facts.md.metadata.generation
    status.phase = _phase(facts, status)
    status.conditions = updated_conditions(
        status.conditions,
        _condition_states(facts, status, plan),
        now=facts.stamp,
        generation=facts.md.metadata.generation,
    )
    return Decision(
        status=status,
        revisions=_desired_revisions(facts, status, plan),
        stable_weight=100 - plan.weight,
        canary_weight=plan.weight,
        events=draft.events,
        requeue_after=_requeue_after(facts, status),
    )


def _plan(facts: _Facts, status: ModelDeploymentStatus) -> _Plan:
    """Where every revision is going, and the safe move toward it this reconcile."""
    stable = status.stable
    assert stable is not None
    canary = status.canary
    observed = facts.observed
    # canary first: it is the one to give up Ready pods when both shrink
    targets: dict[str, int] = {}
    weight = 0
    stable_target = facts.total
    if canary is not None:
        canary_ready = observed.ready(canary.revision)
        stable_ready = observed.ready(stable.revision)
        if canary.aborted or canary.revision != facts.revision:
            # with a route the weight is ours to take back; with the ratio it goes with the pods
            if not facts.gateway:
                weight = weight_in_effect(
                    100, canary_ready, stable_ready, facts.total, gateway=False
                )
            targets[canary.revision] = 0
        else:
            steps = _steps_of(facts.md, status, canary)
            step_weight = _weight_at(steps, canary.step)
            weight = weight_in_effect(
                step_weight, canary_ready, stable_ready, facts.total, gateway=facts.gateway
            )
            targets[canary.revision] = canary_replicas_for(step_weight, facts.total)
            stable_target = stable_replicas_for(
                step_weight, weight, facts.total, gateway=facts.gateway
            )
    targets[stable.revision] = stable_target
    replicas = plan_replicas(
        targets, observed, total=facts.total, budget=facts.budget, grow_freely={stable.revision}
    )
    # old revisions serve no track: their pods are neither capacity to count on nor to protect
    kept = _kept_revisions(facts, status)
    return _Plan(targets={**kept, **targets}, replicas={**kept, **replicas}, weight=weight)


def _kept_revisions(facts: _Facts, status: ModelDeploymentStatus) -> dict[str, int]:
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
    facts: _Facts, status: ModelDeploymentStatus, plan: _Plan
) -> list[DesiredRevision]:
    stable = status.stable
    assert stable is not None
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
            )
        )
    return result


def _requeue_after(facts: _Facts, status: ModelDeploymentStatus) -> float | None:
    """Seconds until a timer matters; Pods changing wake the reconcile through watches instead."""
    moments: list[dt.datetime] = []
    canary = _running_canary(facts, status)
    if canary is not None:
        steps = _steps_of(facts.md, status, canary)
        started = _step_started(facts, canary)
        if canary.step < len(steps) and not canary.paused:
            pause = steps[canary.step].pause
            if pause is not None and pause.duration is not None:
                moments.append(after(started, duration_seconds(pause.duration)))
        if canary.ready_at is None:
            moments.append(after(started, facts.rollout.progress_deadline_seconds))
        measured = (
            _analysis_applies(facts.md, status, canary)
            and _pause_kind(canary) != USER_PAUSED
            and canary.ready_replicas >= 1
        )
        due = _next_measurement_at(facts.md, status, canary) if measured else None
        if due is not None:
            moments.append(due)
    scale_down = _scale_down_until(facts, status)
    if scale_down is not None:
        moments.append(scale_down)
    if not moments:
        return None
    return max(MIN_REQUEUE_SECONDS, min((m - facts.now).total_seconds() for m in moments))


# -- phase and conditions --------------------------------------------------------------------------


def _phase(facts: _Facts, status: ModelDeploymentStatus) -> Phase:
    stable = status.stable
    assert stable is not None
    canary = status.canary
    if canary is not None:
        if canary.revision != facts.revision:
            return Phase.PROGRESSING
        if canary.aborted:
            return Phase.ROLLED_BACK
        if canary.failure_reason is not None:
            return Phase.DEGRADED
        if canary.paused or _waits_for_promotion(_steps_of(facts.md, status, canary), canary):
            return Phase.PAUSED
        return Phase.PROGRESSING
    if facts.observed.ready(stable.revision) >= facts.total:
        return Phase.READY
    # pods still coming up (a scale-up, a rescheduled pod) are progress; crashing pods are not
    if facts.observed.failing(stable.revision) is not None:
        return Phase.DEGRADED
    return Phase.PROGRESSING


def _condition_states(
    facts: _Facts, status: ModelDeploymentStatus, plan: _Plan
) -> dict[ConditionType, ConditionState]:
    return {
        ConditionType.READY: _ready_state(facts, status),
        ConditionType.PROGRESSING: _progressing_state(facts, status, plan),
        ConditionType.DEGRADED: _degraded_state(facts, status),
    }


def _ready_state(facts: _Facts, status: ModelDeploymentStatus) -> ConditionState:
    """Ready: the model serves at its desired capacity (stable and canary pods together)."""
    stable = status.stable
    assert stable is not None
    counts = f"{status.ready_replicas}/{facts.total} pods Ready"
    if status.ready_replicas >= facts.total:
        return ConditionState(True, "ScaledToZero" if facts.total == 0 else "Serving", counts)
    never = not _was_ready(status, stable.revision)
    return ConditionState(False, "Deploying" if never else "ReplicasUnavailable", counts)


def _progressing_state(facts: _Facts, status: ModelDeploymentStatus, plan: _Plan) -> ConditionState:
    stable = status.stable
    assert stable is not None
    canary = status.canary
    if canary is None:
        counts = f"{stable.ready_replicas}/{facts.total} pods Ready"
        if not _was_ready(status, stable.revision):
            return ConditionState(True, "Deploying", f"revision {stable.revision}: {counts}")
        if stable.ready_replicas < facts.total:
            return ConditionState(True, "Scaling", f"revision {stable.revision}: {counts}")
        return ConditionState(
            False,
            "Stable",
            f"revision {stable.revision} ({stable.version}) serves all traffic",
        )
    if canary.revision != facts.revision:
        reason = "RevertedToStable" if facts.revision == stable.revision else "CanarySuperseded"
        return ConditionState(
            True,
            reason,
            f"withdrawing canary {canary.revision}: stable has {stable.ready_replicas}/"
            f"{facts.total} pods Ready, canary {canary.ready_replicas} left",
        )
    if canary.failure_reason is not None:
        reason, message = _split_reason(canary.failure_reason)
        if canary.aborted and reason != ABORTED:
            return ConditionState(False, "RolledBack", canary.failure_reason)
        return ConditionState(False, reason, message)
    if canary.paused and canary.pause_reason is not None:
        kind, message = _split_reason(canary.pause_reason)
        reason = "RolloutPaused" if kind == USER_PAUSED else kind
        return ConditionState(True, reason, message)
    steps = _steps_of(facts.md, status, canary)
    if _waits_for_promotion(steps, canary):
        return ConditionState(
            True,
            "WaitingForPromotion",
            f"{_step_name(steps, canary.step)} waits for `kubectl slipway promote`",
        )
    target = plan.targets.get(canary.revision, 0)
    return ConditionState(
        True,
        "CanaryProgressing",
        f"{_where(facts, canary, steps)}: canary weight {plan.weight}%, "
        f"{canary.ready_replicas}/{target} canary pods Ready",
    )


def _degraded_state(facts: _Facts, status: ModelDeploymentStatus) -> ConditionState:
    stable = status.stable
    assert stable is not None
    canary = status.canary
    if canary is not None and canary.failure_reason is not None:
        reason, message = _split_reason(canary.failure_reason)
        return ConditionState(True, reason, message)
    failing = facts.observed.failing(stable.revision)
    if failing is not None:
        message = failing.failing_reason or f"pods of revision {stable.revision} crash-loop"
        return ConditionState(True, "StableCrashLooping", message)
    return ConditionState(False, "Healthy", "no failure")


# -- small helpers ---------------------------------------------------------------------------------


def _revision_status(facts: _Facts) -> RevisionStatus:
    serving = facts.md.spec.serving()
    return RevisionStatus(
        revision=facts.revision,
        version=serving.model.version,
        uri=serving.model.uri,
        template=serving.wire(),
        pinned=facts.pins,
    )


def _spec_template(facts: _Facts, revision: str) -> dict[str, Any] | None:
    return facts.md.spec.serving().wire() if revision == facts.revision else None


def _history_entry(revision: RevisionStatus, stamp: str) -> HistoryEntry:
    return HistoryEntry(
        revision=revision.revision,
        version=revision.version,
        uri=revision.uri,
        promoted_at=stamp,
        template=revision.template,
        pinned=revision.pinned,
    )


def _bounded_history(facts: _Facts, status: ModelDeploymentStatus) -> list[HistoryEntry]:
    """The stable and `revisionHistoryLimit` older revisions; the previous stable stays through
    its scale-down delay even when no old revision is kept."""
    keep = facts.md.spec.revision_history_limit + 1
    if _scale_down_until(facts, status) is not None:
        keep = max(keep, 2)
    return status.history[:keep]


def _scale_down_until(facts: _Facts, status: ModelDeploymentStatus) -> dt.datetime | None:
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


def _was_ready(status: ModelDeploymentStatus, revision: str) -> bool:
    """Whether `revision` ever served at full size (every such revision is in history)."""
    return any(entry.revision == revision for entry in status.history)


def _is_undo(status: ModelDeploymentStatus, revision: str) -> bool:
    """A revision from history that is not the stable one: back to it at once, no steps."""
    stable = status.stable
    return stable is not None and revision != stable.revision and _was_ready(status, revision)


def _analysis_applies(
    md: ModelDeployment, status: ModelDeploymentStatus, canary: CanaryStatus
) -> bool:
    rollout = md.spec.rollout
    return (
        rollout.strategy is Strategy.CANARY
        and rollout.analysis is not None
        and not _is_undo(status, canary.revision)
    )


def _steps_of(
    md: ModelDeployment, status: ModelDeploymentStatus, canary: CanaryStatus
) -> list[CanaryStep]:
    """The canary's steps: none for Rolling and undo; for a Canary without steps but with
    analysis, one step at full weight, so promotion waits for a successful measurement."""
    rollout = md.spec.rollout
    if rollout.strategy is Strategy.ROLLING or _is_undo(status, canary.revision):
        return []
    if rollout.steps:
        return list(rollout.steps)
    return [CanaryStep(set_weight=100)] if rollout.analysis is not None else []


def _weight_at(steps: Sequence[CanaryStep], index: int) -> int:
    """The canary's weight at step `index`: the last setWeight so far; 100 once all are done."""
    if index >= len(steps):
        return 100
    weight = 0
    for step in steps[: index + 1]:
        if step.set_weight is not None:
            weight = step.set_weight
    return weight


def _waits_for_promotion(steps: Sequence[CanaryStep], canary: CanaryStatus) -> bool:
    if canary.step >= len(steps):
        return False
    pause = steps[canary.step].pause
    return pause is not None and pause.duration is None


def _canary_ready_at_target(facts: _Facts, draft: _Draft, canary: CanaryStatus) -> bool:
    steps = _steps_of(facts.md, draft.status, canary)
    target = canary_replicas_for(_weight_at(steps, canary.step), facts.total)
    return facts.observed.ready(canary.revision) >= target


def _step_started(facts: _Facts, canary: CanaryStatus) -> str:
    return canary.step_started_at or canary.started_at or facts.stamp


def _runs(canary: CanaryStatus) -> bool:
    return not canary.aborted and canary.failure_reason is None


def _running_canary(facts: _Facts, status: ModelDeploymentStatus) -> CanaryStatus | None:
    """The canary of the spec's revision, unless it failed or was rolled back."""
    canary = status.canary
    if canary is None or canary.revision != facts.revision or not _runs(canary):
        return None
    return canary


def _pause_kind(canary: CanaryStatus) -> str | None:
    if not canary.paused:
        return None
    return _split_reason(canary.pause_reason or USER_PAUSED)[0]


def _split_reason(text: str) -> tuple[str, str]:
    """("Reason", "message") from a stored "Reason: message"."""
    reason, _, message = text.partition(": ")
    return reason, message or reason


def describe_step(step: CanaryStep) -> str:
    """A step for people: "setWeight 10", "pause 2m" or "pause until promoted"."""
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    if step.pause is not None and step.pause.duration is not None:
        return f"pause {step.pause.duration}"
    return "pause until promoted"


def _step_name(steps: Sequence[CanaryStep], index: int) -> str:
    if index >= len(steps):
        return "promotion"
    return f"step {index + 1}/{len(steps)} ({describe_step(steps[index])})"


def _where(facts: _Facts, canary: CanaryStatus, steps: Sequence[CanaryStep]) -> str:
    if canary.step < len(steps):
        return f"canary {canary.revision} at {_step_name(steps, canary.step)}"
    done = f"all {len(steps)} steps done; " if steps else ""
    return f"{done}canary {canary.revision} is promoted once {facts.total} of its pods are Ready"
