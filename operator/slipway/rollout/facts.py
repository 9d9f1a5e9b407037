"""The inputs of one decision, derived once, and the small questions every part asks of them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from slipway.api import (
    CanaryState,
    CanaryStatus,
    CanaryStep,
    ModelDeployment,
    ModelDeploymentStatus,
    RevisionPins,
    RolloutSpec,
    Strategy,
    duration_seconds,
)
from slipway.rollout.capacity import Budget, budget_of
from slipway.rollout.model import Observed
from slipway.rollout.times import after, rfc3339

# a canary in these states serves traffic (or is about to) and goes on by itself
RUNNING = (CanaryState.PROGRESSING, CanaryState.PAUSED, CanaryState.PROMOTING)
# a canary in these states has zero weight and zero pods until retry or a new spec
ROLLED_BACK = (CanaryState.ROLLED_BACK, CanaryState.ABORTED)


@dataclass(frozen=True)
class Facts:
    """One decision's view of the world.

    `spec_revision` is the hash of the spec's serving part. `revision` is the revision the
    rollout works toward: the spec's, unless the spec cannot be served (`problems`), in which
    case the rollout in flight goes on toward what it was heading for, held where it is.
    """

    md: ModelDeployment
    spec_revision: str
    revision: str
    observed: Observed
    now: dt.datetime
    stamp: str
    total: int
    budget: Budget
    gateway: bool
    pins: RevisionPins  # what a new revision of the spec is pinned to
    problems: tuple[tuple[str, str], ...]  # (reason, message): why the spec cannot be served

    @classmethod
    def of(
        cls,
        md: ModelDeployment,
        revision: str,
        observed: Observed,
        now: dt.datetime,
        pins: RevisionPins,
    ) -> Facts:
        routing = md.spec.rollout.traffic_routing
        problems = spec_problems(observed)
        return cls(
            md=md,
            spec_revision=revision,
            revision=heading_for(md.status, revision, observed),
            observed=observed,
            now=now,
            stamp=rfc3339(now),
            total=md.spec.replicas,
            budget=budget_of(md.spec.rollout, md.spec.replicas),
            gateway=routing is not None and routing.gateway_api is not None,
            pins=pins,
            problems=problems,
        )

    @property
    def rollout(self) -> RolloutSpec:
        return self.md.spec.rollout

    def reaching_users(self, revision: str) -> int:
        """Ready pods of `revision` that user traffic reaches through Service <name>: none while
        <name> selects another revision alone (a canary being evaluated before any weight)."""
        pinned = self.observed.service_revision
        if not self.gateway and pinned is not None and pinned != revision:
            return 0
        return self.observed.ready(revision)

    @property
    def held(self) -> bool:
        """The spec cannot be served: what runs is judged, but nothing moves toward the spec."""
        return bool(self.problems)


def spec_problems(observed: Observed) -> tuple[tuple[str, str], ...]:
    """Why the spec's revision cannot be served, as (reason, message), each naming the field."""
    problems = [("InvalidSpec", error) for error in observed.spec_errors]
    if observed.unresolved is not None:
        problems.append(observed.unresolved)
    claim = observed.claim
    if claim is not None and not claim.exists:
        problems.append(
            (
                "ModelUnavailable",
                f"spec.model.uri: PersistentVolumeClaim {claim.name!r} does not exist; create it "
                "or fix the uri",
            )
        )
    return tuple(problems)


def heading_for(status: ModelDeploymentStatus, revision: str, observed: Observed) -> str:
    """The revision the rollout works toward: the spec's `revision`, or while the spec cannot be
    served the one in flight (the canary's, else the stable's; the spec's only when nothing was
    ever deployed)."""
    if not spec_problems(observed):
        return revision
    canary = status.canary
    if canary is not None and canary.state is not CanaryState.WITHDRAWN:
        return canary.revision
    return status.stable.revision if status.stable is not None else revision


def was_ready(status: ModelDeploymentStatus, revision: str) -> bool:
    """Whether `revision` ever served as the stable one (every such revision is in history)."""
    return any(entry.revision == revision for entry in status.history)


def is_undo(status: ModelDeploymentStatus, revision: str) -> bool:
    """A revision from history that is not the stable one: back to it at once, no steps."""
    stable = status.stable
    return stable is not None and revision != stable.revision and was_ready(status, revision)


def analysis_applies(
    md: ModelDeployment, status: ModelDeploymentStatus, canary: CanaryStatus
) -> bool:
    """Whether analysis metrics judge this canary (strategy Canary with metrics, not an undo)."""
    rollout = md.spec.rollout
    return (
        rollout.strategy is Strategy.CANARY
        and rollout.analysis is not None
        and not is_undo(status, canary.revision)
    )


def judged(md: ModelDeployment, status: ModelDeploymentStatus, canary: CanaryStatus) -> bool:
    """Whether anything measures this canary into status.analysis: metrics or evaluate steps."""
    evaluates = any(step.evaluate is not None for step in steps_of(md, status, canary))
    return analysis_applies(md, status, canary) or evaluates


def steps_of(
    md: ModelDeployment, status: ModelDeploymentStatus, canary: CanaryStatus
) -> list[CanaryStep]:
    """The canary's steps: none for Rolling and undo; for a Canary without steps but with
    analysis, one step at full weight, so promotion waits for a successful measurement."""
    rollout = md.spec.rollout
    if rollout.strategy is Strategy.ROLLING or is_undo(status, canary.revision):
        return []
    if rollout.steps:
        return list(rollout.steps)
    return [CanaryStep(set_weight=100)] if rollout.analysis is not None else []


def running_canary(facts: Facts, status: ModelDeploymentStatus) -> CanaryStatus | None:
    """The canary the rollout heads for, while it runs (not failed, rolled back or withdrawn)."""
    canary = status.canary
    if canary is None or canary.revision != facts.revision or canary.state not in RUNNING:
        return None
    return canary


def step_started(facts: Facts, canary: CanaryStatus) -> str:
    return canary.step_started_at or canary.started_at or facts.stamp


def next_measurement_at(
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
