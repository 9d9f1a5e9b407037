"""The kinds of canary step, one row each: the weight it sets, the canary pods it needs, when
it is complete, whether it waits for a person (or for several: an approval step), and when it
wants to be woken.

`evaluate` runs a Job that sends an evaluation set to the canary and to stable: it needs one
canary pod even before any weight (a pod that gets no user traffic), and it is complete when its
evaluation, judged by the machine from the Job's result (`Observed.evaluation`), passed every gate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slipway.api import (
    CanaryReason,
    CanaryStatus,
    CanaryStep,
    EvaluateStep,
    EvaluationStatus,
    ModelDeploymentStatus,
    Verdict,
    duration_seconds,
)
from slipway.rollout.capacity import canary_replicas_for, stable_replicas_for, weight_in_effect
from slipway.rollout.facts import Facts, step_started
from slipway.rollout.times import after

Complete = Callable[[Facts, ModelDeploymentStatus, CanaryStatus, CanaryStep, int], bool]
Failure = Callable[[Facts, CanaryStatus, CanaryStep], tuple[CanaryReason, str] | None]
Due = Callable[[Facts, CanaryStatus, CanaryStep], dt.datetime | None]


@dataclass(frozen=True)
class StepKind:
    """How one kind of step behaves."""

    field: str  # its field in rollout.steps[] (exactly one is set)
    sets_weight: Callable[[CanaryStep], int | None]  # the weight from this step on; None: kept
    waits_for_promotion: Callable[[CanaryStep], bool]  # only a person ends it
    complete: Complete  # (facts, status, canary, step, weight in force) -> whether it is done
    describe: Callable[[CanaryStep], str]
    due: Due = lambda facts, canary, step: None  # when its timer runs out, if it has one
    failure: Failure = lambda facts, canary, step: None  # why it failed, if it did
    canary_pods: Callable[[CanaryStep], int] = lambda step: 0  # it needs at least this many
    # distinct people who must approve it (kubectl slipway promote); 0: none
    approvals: Callable[[CanaryStep], int] = lambda step: 0


def _pods_at_weight(
    facts: Facts,
    status: ModelDeploymentStatus,
    canary: CanaryStatus,
    step: CanaryStep,
    weight: int,
) -> bool:
    """setWeight: the canary's pods for the weight are Ready and the stable has made room."""
    observed = facts.observed
    target = canary_replicas_for(weight, facts.total)
    ready = observed.ready(canary.revision)
    if ready < target:
        return False
    stable_revision = status.stable.revision if status.stable is not None else ""
    in_effect = weight_in_effect(
        weight,
        facts.reaching_users(canary.revision),
        observed.ready(stable_revision),
        facts.total,
        gateway=facts.gateway,
    )
    stable_target = stable_replicas_for(weight, in_effect, facts.total, gateway=facts.gateway)
    return observed.replicas(stable_revision) <= stable_target


def _pause_ends(facts: Facts, canary: CanaryStatus, step: CanaryStep) -> dt.datetime | None:
    if step.pause is None or step.pause.duration is None:
        return None
    return after(step_started(facts, canary), duration_seconds(step.pause.duration))


def _pause_over(
    facts: Facts,
    status: ModelDeploymentStatus,
    canary: CanaryStatus,
    step: CanaryStep,
    weight: int,
) -> bool:
    ends = _pause_ends(facts, canary, step)
    return ends is not None and facts.now >= ends


def _describe_pause(step: CanaryStep) -> str:
    if step.pause is not None and step.pause.duration is not None:
        return f"pause {step.pause.duration}"
    return "pause until promoted"


def _approval_ends(facts: Facts, canary: CanaryStatus, step: CanaryStep) -> dt.datetime | None:
    if step.approval is None or step.approval.timeout is None:
        return None
    return after(step_started(facts, canary), duration_seconds(step.approval.timeout))


def _approval_timed_out(
    facts: Facts, canary: CanaryStatus, step: CanaryStep
) -> tuple[CanaryReason, str] | None:
    ends = _approval_ends(facts, canary, step)
    if ends is None or facts.now < ends or step.approval is None:
        return None
    wanted = step.approval.required_approvals
    given = ", ".join(a.by for a in canary.approvals) or "none"
    return (
        CanaryReason.APPROVAL_TIMED_OUT,
        f"the approval step waited {step.approval.timeout} for {wanted} approvals and got "
        f"{len(canary.approvals)} ({given})",
    )


def _describe_approval(step: CanaryStep) -> str:
    wanted = step.approval.required_approvals if step.approval is not None else 1
    return "approval" if wanted == 1 else f"approval by {wanted}"


# the Job's activeDeadlineSeconds ends it; this long after, a reconcile looks even without its event
EVALUATION_GRACE_SECONDS = 30.0


def current_evaluation(canary: CanaryStatus) -> EvaluationStatus | None:
    """The evaluation of the canary's current step, if it has one."""
    run = canary.evaluation
    return run if run is not None and run.step == canary.step else None


def _evaluation_passed(
    facts: Facts,
    status: ModelDeploymentStatus,
    canary: CanaryStatus,
    step: CanaryStep,
    weight: int,
) -> bool:
    run = current_evaluation(canary)
    return run is not None and run.verdict is Verdict.SUCCESSFUL


def _evaluation_ends(facts: Facts, canary: CanaryStatus, step: CanaryStep) -> dt.datetime | None:
    """When the running evaluation's Job has ended at the latest (a safety net: its end wakes the
    reconcile through the Job's watch)."""
    run = current_evaluation(canary)
    if step.evaluate is None or run is None or run.started_at is None or run.verdict is not None:
        return None
    bound = duration_seconds(step.evaluate.timeout) + EVALUATION_GRACE_SECONDS
    return after(run.started_at, bound)


STEP_KINDS: tuple[StepKind, ...] = (
    StepKind(
        field="setWeight",
        sets_weight=lambda step: step.set_weight,
        waits_for_promotion=lambda step: False,
        complete=_pods_at_weight,
        describe=lambda step: f"setWeight {step.set_weight}",
    ),
    StepKind(
        field="pause",
        sets_weight=lambda step: None,
        waits_for_promotion=lambda step: step.pause is not None and step.pause.duration is None,
        complete=_pause_over,
        describe=_describe_pause,
        due=_pause_ends,
    ),
    StepKind(
        field="evaluate",
        sets_weight=lambda step: None,
        waits_for_promotion=lambda step: False,
        complete=_evaluation_passed,
        describe=lambda step: f"evaluate {step.evaluate.data.uri}" if step.evaluate else "evaluate",
        due=_evaluation_ends,
        canary_pods=lambda step: 1,
    ),
    StepKind(
        field="approval",
        sets_weight=lambda step: None,
        # only people end it, but a promote counts as one approval among those it needs
        waits_for_promotion=lambda step: False,
        complete=lambda facts, status, canary, step, weight: False,
        describe=_describe_approval,
        due=_approval_ends,
        failure=_approval_timed_out,
        approvals=lambda step: step.approval.required_approvals if step.approval else 0,
    ),
)


def kind_of(step: CanaryStep) -> StepKind:
    for kind in STEP_KINDS:
        if getattr(step, _attribute(kind.field)) is not None:
            return kind
    raise ValueError(f"a step sets none of {', '.join(k.field for k in STEP_KINDS)}")


def _attribute(field: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in field)


def weight_at(steps: Sequence[CanaryStep], index: int) -> int:
    """The canary's weight at step `index`: the last weight set so far; 100 once all are done."""
    if index >= len(steps):
        return 100
    weight = 0
    for step in steps[: index + 1]:
        set_to = kind_of(step).sets_weight(step)
        if set_to is not None:
            weight = set_to
    return weight


def canary_pods_at(steps: Sequence[CanaryStep], index: int, total: int) -> int:
    """The canary's pods at step `index`: those its weight asks for, and at least those the step
    itself needs (an evaluation's pod, which gets no user traffic before the first weight)."""
    pods = canary_replicas_for(weight_at(steps, index), total)
    if index < len(steps):
        pods = max(pods, kind_of(steps[index]).canary_pods(steps[index]))
    return pods


def evaluate_at(steps: Sequence[CanaryStep], index: int) -> EvaluateStep | None:
    """The evaluation of step `index`, when it is an evaluate step."""
    return steps[index].evaluate if 0 <= index < len(steps) else None


def waits_for_promotion(steps: Sequence[CanaryStep], index: int) -> bool:
    return index < len(steps) and kind_of(steps[index]).waits_for_promotion(steps[index])


def approvals_needed(steps: Sequence[CanaryStep], index: int) -> int:
    """Distinct people who must approve step `index` before the canary goes on (0: none)."""
    return kind_of(steps[index]).approvals(steps[index]) if index < len(steps) else 0


def describe_step(step: CanaryStep) -> str:
    """A step for people: "setWeight 10", "pause 2m", "pause until promoted", "approval by 2"."""
    return kind_of(step).describe(step)


def step_name(steps: Sequence[CanaryStep], index: int) -> str:
    if index >= len(steps):
        return "promotion"
    return f"step {index + 1}/{len(steps)} ({describe_step(steps[index])})"
