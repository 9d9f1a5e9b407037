"""What the rollout state machine reads and what it decides: plain, immutable data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from slipway.api import ModelDeploymentStatus, RevisionPins

Track = Literal["stable", "canary"]
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class ObservedRevision:
    """One Deployment `<name>-<revision>` as read from the cluster."""

    revision: str
    replicas: int  # its spec.replicas
    ready_replicas: int  # its Ready pods
    crash_looping: bool = False  # a pod of it crash-loops or cannot start
    failing_reason: str | None = None  # e.g. "pod x: CrashLoopBackOff (restarts 4)"


@dataclass(frozen=True)
class Observed:
    """The Deployments of one ModelDeployment, by revision; a missing key: no Deployment yet."""

    revisions: Mapping[str, ObservedRevision] = field(default_factory=dict)

    def replicas(self, revision: str) -> int:
        found = self.revisions.get(revision)
        return found.replicas if found else 0

    def ready(self, revision: str) -> int:
        found = self.revisions.get(revision)
        return found.ready_replicas if found else 0

    def failing(self, revision: str) -> ObservedRevision | None:
        """The revision, if its pods crash-loop."""
        found = self.revisions.get(revision)
        return found if found is not None and found.crash_looping else None


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


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to emit on the ModelDeployment."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    """Everything one reconcile should make true."""

    status: ModelDeploymentStatus  # the complete next status
    revisions: list[DesiredRevision]  # every Deployment that should exist; delete the rest
    stable_weight: int  # HTTPRoute weight of <name>-stable
    canary_weight: int  # HTTPRoute weight of <name>-canary (stable_weight + canary_weight == 100)
    events: list[Event]
    requeue_after: float | None  # seconds until a timer needs a reconcile; None: no timer runs
