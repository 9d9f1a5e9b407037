"""What the rollout state machine reads and what it decides: plain, immutable data.

The shell gathers every fact the core needs into `Observed` before deciding (the Deployments, the
claim, the route, what the API server refused, what the spec's revision cannot be built from), so
that every decision, and every condition, is the core's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from slipway.api import EvaluateStep, Measurement, ModelDeploymentStatus, RevisionPins

Track = Literal["stable", "canary"]
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class PodFailure:
    """A pod that fails, by its first failing container (a pod on its way out is not one)."""

    pod: str
    crashing: bool  # it crash-loops or cannot start (a canary fails at once); else only named
    text: str  # e.g. "pod x, container server: CrashLoopBackOff (restarts 4)"
    created_at: dt.datetime | None = None  # when the pod was created (None: unknown)


@dataclass(frozen=True)
class ObservedRevision:
    """One Deployment `<name>-<revision>` as read from the cluster."""

    revision: str
    replicas: int  # its spec.replicas
    ready_replicas: int  # its Ready pods
    failures: tuple[PodFailure, ...] = ()  # its pods that fail
    # the cluster refuses to create its pods (ReplicaSet FailedCreate: Pod Security, quota,
    # admission): the server's message
    refused: str | None = None
    created_at: dt.datetime | None = None  # when the Deployment was created

    @property
    def crash_looping(self) -> bool:
        """A pod of it crash-loops or cannot start."""
        return any(f.crashing for f in self.failures)

    @property
    def failing_reason(self) -> str | None:
        """The sentence of a pod that crashes, else of one that fails otherwise."""
        crash = next((f for f in self.failures if f.crashing), None)
        named = crash or next(iter(self.failures), None)
        return named.text if named is not None else None

    def since(self, moment: dt.datetime) -> ObservedRevision:
        """The revision with only the failures of pods created at `moment` or later (timestamps
        are whole seconds: a pod of the same second counts)."""
        kept = tuple(f for f in self.failures if f.created_at is None or f.created_at >= moment)
        return replace(self, failures=kept)


@dataclass(frozen=True)
class Claim:
    """The PersistentVolumeClaim a pvc:// uri of the spec names."""

    name: str
    exists: bool


@dataclass(frozen=True)
class Route:
    """The HTTPRoute of spec.rollout.trafficRouting.gatewayAPI."""

    name: str
    exists: bool
    unwired: str | None = None  # why its backendRefs cannot carry the split, if they cannot


@dataclass(frozen=True)
class Refusal:
    """A write of a child that the API server refused (admission, quota, webhook, validation)."""

    kind: str
    name: str
    message: str  # the server's own words
    revision: str = ""  # the revision a refused Deployment serves
    # NameTaken: not sent at all, the name belongs to another owner or to a user
    reason: str = "ApplyRefused"


@dataclass(frozen=True)
class EvaluationOutcome:
    """The Job of the canary's latest evaluation, finished, and its gates judged on what its pod
    reported (its termination message); an Error per gate when it ended without a result."""

    revision: str  # the canary revision it evaluated
    step: int  # the evaluate step it ran for
    attempt: int
    measurements: tuple[Measurement, ...]  # one per gate, in spec order


@dataclass(frozen=True)
class Observed:
    """Everything a decision rests on besides the ModelDeployment itself.

    revisions: the Deployments by revision (a missing key: no Deployment yet); spec_errors: why the
    spec's revision cannot be built (a builder's ValueError, naming the field); claim, route: what
    the spec refers to, when it refers to one; refusals: the writes the API server refused at the
    last attempt; unresolved: why the registry gave no version for the spec's models:/ uri; actor:
    who asked for the action of this decision.
    """

    revisions: Mapping[str, ObservedRevision] = field(default_factory=dict)
    spec_errors: tuple[str, ...] = ()
    claim: Claim | None = None
    route: Route | None = None
    refusals: tuple[Refusal, ...] = ()
    # (reason, message): the spec's models:/ uri has no resolution to serve (slipway.registry)
    unresolved: tuple[str, str] | None = None
    # who asked for the action consumed in this reconcile, as the admission policy stamped it
    # (None: not stamped, e.g. without the chart's governance policies)
    actor: str | None = None
    service_revision: str | None = None
    evaluation: EvaluationOutcome | None = None
    measuring_until: dt.datetime | None = None

    def replicas(self, revision: str) -> int:
        found = self.revisions.get(revision)
        return found.replicas if found else 0

    def ready(self, revision: str) -> int:
        found = self.revisions.get(revision)
        return found.ready_replicas if found else 0

    def failing(self, revision: str, since: dt.datetime | None = None) -> ObservedRevision | None:
        """The revision, if its pods crash-loop (with `since`: its pods created since then, so
        that a canary attempt is judged on its own pods, not on those of the attempt before)."""
        found = self.revisions.get(revision)
        if found is not None and since is not None:
            found = found.since(since)
        return found if found is not None and found.crash_looping else None

    def refused(self, revision: str) -> str | None:
        """Why the cluster refuses to create the revision's pods, if it does."""
        found = self.revisions.get(revision)
        return found.refused if found is not None else None


class Action(StrEnum):
    """A consumed `serving.slipway.dev/action` annotation."""

    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    ABORT = "abort"
    RETRY = "retry"
    PAUSE = "pause"
    RESUME = "resume"


@dataclass(frozen=True)
class DesiredRevision:
    """A Deployment that should exist, and how big."""

    revision: str
    serving: dict[str, Any]  # the ServingSpec wire dict to build its Deployment from
    replicas: int
    track: Track | None  # None: an old revision kept for undo or still scaling down
    pinned: RevisionPins  # the images and pod defaults its pods are built with
    port: int  # the port its server listens on (its Services use it while it has the track)


@dataclass(frozen=True)
class DesiredEvaluation:
    """The Job of the canary's latest evaluation, which should exist.

    `evaluate` is None once its result was judged: the Job is kept (for `kubectl logs`) while the
    canary is in status, but never created again.
    """

    revision: str
    step: int
    attempt: int
    evaluate: EvaluateStep | None  # what to run; None: keep it, never (re)create it


@dataclass(frozen=True)
class Event:
    """A decision, as a Kubernetes Event on the ModelDeployment and a log line.

    `revision` and `step` say what it is about (step: the canary's step index, when one applies).
    """

    type: EventType
    reason: str
    message: str
    revision: str = ""
    step: int | None = None


@dataclass(frozen=True)
class Decision:
    """Everything one reconcile should make true."""

    status: ModelDeploymentStatus  # the complete next status
    revisions: list[DesiredRevision]  # every Deployment that should exist; delete the rest
    stable_weight: int  # HTTPRoute weight of <name>-stable
    canary_weight: int  # HTTPRoute weight of <name>-canary (stable_weight + canary_weight == 100)
    events: list[Event]
    requeue_after: float | None  # seconds until a timer needs a reconcile; None: no timer runs
    port: int  # the port of Service <name> and status.url: the stable revision's
    # Service <name> selects this revision alone (a canary that gets no user traffic has pods);
    # None: every serving pod, the split being the replica ratio
    service_revision: str | None = None
    evaluation: DesiredEvaluation | None = None  # the evaluation Job; every other one goes
    evaluated: list[Measurement] = field(default_factory=list)  # gates judged by this decision
    # seconds the status may wait before it is written (None: write it now): a new
    # ModelDeployment's first status waits a moment for its pods, to be written once, Ready
    report_after: float | None = None
