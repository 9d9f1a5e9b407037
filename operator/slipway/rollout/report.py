"""What a ModelDeployment's status says about itself: its phase and every condition, by one rule.

This module is the only writer of conditions (the shell writes what it returns). Ready,
Progressing and Degraded are for people and Argo CD; Reconciling and Stalled follow kstatus (Flux,
Helm --wait, kpt): Reconciling is True while a rollout is in flight or waits (Pending, Progressing,
Paused), Stalled is True when it failed or was rolled back and will not go on without a change
(Degraded, RolledBack, Failed); never both. A transition time moves only when a status does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from slipway.api import (
    CanaryReason,
    CanaryState,
    CanaryStatus,
    Condition,
    ConditionType,
    ModelDeploymentStatus,
    Phase,
)
from slipway.rollout.facts import ROLLED_BACK, Facts, steps_of, was_ready
from slipway.rollout.steps import step_name

ORDER = (
    ConditionType.READY,
    ConditionType.PROGRESSING,
    ConditionType.DEGRADED,
    ConditionType.RECONCILING,
    ConditionType.STALLED,
)
IN_FLIGHT = (Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED)
STALLED = (Phase.DEGRADED, Phase.ROLLED_BACK, Phase.FAILED)


@dataclass(frozen=True)
class ConditionState:
    """What a condition should say now."""

    status: bool
    reason: str
    message: str


# -- phase -----------------------------------------------------------------------------------------


def phase_of(facts: Facts, status: ModelDeploymentStatus) -> Phase:
    """Where the ModelDeployment stands, from its (next) status and what was observed."""
    stable, canary = status.stable, status.canary
    serving = status.ready_replicas > 0
    if stable is None:
        return Phase.FAILED  # nothing was ever deployed, and the spec cannot be
    if canary is not None:
        phase = _canary_phase(canary)
    elif facts.observed.ready(stable.revision) >= facts.total:
        phase = Phase.READY
    elif _blocked(facts, stable.revision):
        # pods still coming up (a scale-up, a rescheduled pod) are progress; what cannot come
        # up without a change is not
        return Phase.DEGRADED if serving else Phase.FAILED
    else:
        phase = Phase.PROGRESSING
    if facts.held and phase in (Phase.READY, Phase.PROGRESSING, Phase.PAUSED):
        return Phase.DEGRADED if serving else Phase.FAILED
    return phase


def _canary_phase(canary: CanaryStatus) -> Phase:
    match canary.state:
        case CanaryState.ROLLED_BACK | CanaryState.ABORTED:
            return Phase.ROLLED_BACK
        case CanaryState.FAILED:
            return Phase.DEGRADED
        case CanaryState.PAUSED:
            return Phase.PAUSED
        case _:
            return Phase.PROGRESSING


def _blocked(facts: Facts, revision: str) -> bool:
    """The revision's pods cannot come up without a change: they crash, the cluster refuses to
    create them, or the API server refuses its Deployment."""
    observed = facts.observed
    return (
        observed.failing(revision) is not None
        or observed.refused(revision) is not None
        or any(r.revision == revision for r in observed.refusals)
    )


# -- conditions ------------------------------------------------------------------------------------


def problems_of(facts: Facts, status: ModelDeploymentStatus) -> list[tuple[str, str]]:
    """Everything wrong, as (reason, message), the most pressing first: the spec, a failed
    canary, writes the API server refused, pods the cluster refuses, crashing stable pods, the
    traffic route."""
    problems = list(facts.problems)
    stable, canary = status.stable, status.canary
    if canary is not None and canary.state in (*ROLLED_BACK, CanaryState.FAILED):
        reason = canary.reason or CanaryReason.ABORTED
        problems.append((reason.value, canary.message))
    observed = facts.observed
    problems.extend((r.reason, f"{r.kind} {r.name}: {r.message}") for r in observed.refusals)
    for entry in (stable, canary):
        refused = observed.refused(entry.revision) if entry is not None else None
        if entry is not None and refused is not None:
            problems.append(("FailedCreate", f"pods of revision {entry.revision}: {refused}"))
    failing = observed.failing(stable.revision) if stable is not None else None
    if failing is not None and stable is not None:
        message = failing.failing_reason or f"pods of revision {stable.revision} crash-loop"
        problems.append(("StableCrashLooping", message))
    route = observed.route
    field = "spec.rollout.trafficRouting.gatewayAPI.httpRoute"
    if route is not None and not route.exists:
        message = (
            f"{field}: HTTPRoute {route.name!r} does not exist in namespace {facts.md.namespace!r}"
        )
        problems.append(("TrafficRoutingUnavailable", message))
    elif route is not None and route.unwired is not None:
        problems.append(("TrafficRoutingUnavailable", f"{field}: {route.unwired}"))
    return problems


def conditions_for(
    facts: Facts, status: ModelDeploymentStatus, weight: int, canary_target: int
) -> list[Condition]:
    """Every condition of the next status (`status` has its phase and counts already)."""
    problems = problems_of(facts, status)
    progressing = _progressing(facts, status, problems, weight, canary_target)
    degraded = _degraded(problems)
    states = {
        ConditionType.READY: _ready(facts, status, problems),
        ConditionType.PROGRESSING: progressing,
        ConditionType.DEGRADED: degraded,
        **kstatus(status.phase, progressing, degraded),
    }
    return updated_conditions(
        status.conditions, states, now=facts.stamp, generation=facts.md.metadata.generation
    )


def kstatus(
    phase: Phase, progressing: ConditionState, degraded: ConditionState
) -> dict[ConditionType, ConditionState]:
    """Reconciling and Stalled, as kstatus reads them, from the phase."""
    in_flight = phase in IN_FLIGHT
    stalled = phase in STALLED
    return {
        ConditionType.RECONCILING: ConditionState(
            in_flight, progressing.reason, progressing.message
        ),
        ConditionType.STALLED: ConditionState(
            stalled,
            degraded.reason if stalled and degraded.status else phase.value,
            degraded.message if stalled and degraded.status else f"phase {phase.value}",
        ),
    }


def _ready(
    facts: Facts, status: ModelDeploymentStatus, problems: list[tuple[str, str]]
) -> ConditionState:
    """Ready: the model serves at its desired capacity (stable and canary pods together)."""
    counts = f"{status.ready_replicas}/{facts.total} pods Ready"
    if status.ready_replicas >= facts.total and status.stable is not None:
        return ConditionState(True, "ScaledToZero" if facts.total == 0 else "Serving", counts)
    if status.stable is None:
        return ConditionState(False, problems[0][0] if problems else "Deploying", counts)
    never = not was_ready(status, status.stable.revision)
    return ConditionState(False, "Deploying" if never else "ReplicasUnavailable", counts)


def _degraded(problems: list[tuple[str, str]]) -> ConditionState:
    if not problems:
        return ConditionState(False, "Healthy", "no failure")
    (reason, message), rest = problems[0], problems[1:]
    if rest:
        message += "; also " + "; ".join(f"{r}: {m}" for r, m in rest)
    return ConditionState(True, reason, message)


def _progressing(
    facts: Facts,
    status: ModelDeploymentStatus,
    problems: list[tuple[str, str]],
    weight: int,
    canary_target: int,
) -> ConditionState:
    stable, canary = status.stable, status.canary
    held = "; ".join(message for _, message in facts.problems)
    if stable is None or (facts.held and canary is None):
        reason = facts.problems[0][0] if facts.problems else "Deploying"
        return ConditionState(False, reason, held)
    if canary is None:
        counts = f"{stable.ready_replicas}/{facts.total} pods Ready"
        if stable.ready_replicas < facts.total and _blocked(facts, stable.revision):
            blocked = [p for p in problems if p[0] != "TrafficRoutingUnavailable"]
            return ConditionState(False, blocked[0][0], f"revision {stable.revision}: {counts}")
        if not was_ready(status, stable.revision):
            return ConditionState(True, "Deploying", f"revision {stable.revision}: {counts}")
        if stable.ready_replicas < facts.total:
            return ConditionState(True, "Scaling", f"revision {stable.revision}: {counts}")
        return ConditionState(
            False, "Stable", f"revision {stable.revision} ({stable.version}) serves all traffic"
        )
    reason = canary.reason.value if canary.reason is not None else ""
    match canary.state:
        case CanaryState.WITHDRAWN:
            return ConditionState(
                True,
                reason or CanaryReason.SUPERSEDED.value,
                f"withdrawing canary {canary.revision}: stable has {stable.ready_replicas}/"
                f"{facts.total} pods Ready, canary {canary.ready_replicas} left",
            )
        case CanaryState.ROLLED_BACK:
            return ConditionState(False, "RolledBack", f"{reason}: {canary.message}")
        case CanaryState.ABORTED | CanaryState.FAILED:
            return ConditionState(False, reason or canary.state.value, canary.message)
    steps = steps_of(facts.md, status, canary)
    if facts.held:
        return ConditionState(
            True,
            "CanaryHeld",
            f"the spec cannot be served ({held}); canary {canary.revision} holds at "
            f"{step_name(steps, canary.step)}, and is still judged",
        )
    if canary.state is CanaryState.PAUSED:
        if canary.reason is CanaryReason.USER_PAUSED:
            return ConditionState(True, "RolloutPaused", canary.message)
        return ConditionState(True, reason, canary.message)
    where = (
        f"canary {canary.revision} at {step_name(steps, canary.step)}"
        if canary.step < len(steps)
        else f"canary {canary.revision} is promoted once {facts.total} of its pods are Ready"
    )
    return ConditionState(
        True,
        "CanaryProgressing",
        f"{where}: canary weight {weight}%, {canary.ready_replicas}/{canary_target} canary pods "
        "Ready",
    )


def updated_conditions(
    previous: Sequence[Condition],
    states: dict[ConditionType, ConditionState],
    *,
    now: str,
    generation: int,
) -> list[Condition]:
    """Our conditions as `states` say, keeping unchanged transition times.

    Conditions of other types (set by someone else) are kept as they are, after ours.
    """
    by_type = {c.type: c for c in previous}
    result: list[Condition] = []
    for kind in ORDER:
        state = states[kind]
        status = "True" if state.status else "False"
        before = by_type.get(kind.value)
        since = now
        if before is not None and before.status == status and before.last_transition_time:
            since = before.last_transition_time
        result.append(
            Condition(
                type=kind.value,
                status=status,
                reason=state.reason,
                message=state.message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    ours = {kind.value for kind in ORDER}
    result.extend(c for c in previous if c.type not in ours)
    return result


def unreadable_spec_status(
    status: ModelDeploymentStatus, message: str, generation: int, now: str
) -> ModelDeploymentStatus:
    """The status of a ModelDeployment whose spec Slipway cannot read (the schema let through
    what the models refuse): said in the conditions, nothing else moves."""
    serving = status.ready_replicas > 0
    phase = Phase.DEGRADED if serving else Phase.FAILED
    degraded = ConditionState(True, "InvalidSpec", message)
    progressing = ConditionState(False, "InvalidSpec", message)
    counts = f"{status.ready_replicas}/{status.replicas} pods Ready"
    ready = serving and status.ready_replicas >= status.replicas
    states = {
        ConditionType.READY: ConditionState(ready, "Serving" if ready else "InvalidSpec", counts),
        ConditionType.PROGRESSING: progressing,
        ConditionType.DEGRADED: degraded,
        **kstatus(phase, progressing, degraded),
    }
    conditions = updated_conditions(status.conditions, states, now=now, generation=generation)
    return status.model_copy(
        update={"phase": phase, "observed_generation": generation, "conditions": conditions}
    )
