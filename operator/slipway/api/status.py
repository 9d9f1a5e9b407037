"""The `status` of a ModelDeployment: what Slipway observed and decided.

All rollout state lives here, so an operator that restarts resumes where it stopped.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, WithJsonSchema, model_validator

from slipway.api.records import (
    CanaryRecord,
    HistoryRecord,
    RegistryResolution,
    RevisionRecord,
)
from slipway.api.types import ApiModel


class Phase(StrEnum):
    """Where a ModelDeployment stands."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    READY = "Ready"
    DEGRADED = "Degraded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class Verdict(StrEnum):
    """The judgement of one measurement."""

    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class ConditionType(StrEnum):
    """The conditions Slipway writes: three for people and Argo CD, two as kstatus defines them
    (Flux, Helm --wait, kpt)."""

    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


class CanaryState(StrEnum):
    """Where a canary stands; `CanaryStatus.reason` says why (README: Rollouts, the state table)."""

    PROGRESSING = "Progressing"  # going through its steps
    PAUSED = "Paused"  # held at its step until the pause is lifted
    PROMOTING = "Promoting"  # every step done: stable once `replicas` of its pods are Ready
    FAILED = "Failed"  # failed, and held where it is (autoRollback false)
    ROLLED_BACK = "RolledBack"  # failed and rolled back: no weight, no pods (once stable serves)
    ABORTED = "Aborted"  # aborted by the user: as RolledBack
    WITHDRAWN = "Withdrawn"  # the spec moved away: it goes once the stable is at full size


class CanaryReason(StrEnum):
    """Why a canary is Paused, Failed, RolledBack, Aborted or Withdrawn."""

    # Paused
    WAITING_FOR_PROMOTION = "WaitingForPromotion"  # a pause step without a duration
    WAITING_FOR_APPROVAL = "WaitingForApproval"  # an approval step short of its approvals
    USER_PAUSED = "UserPaused"
    ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
    # Failed and RolledBack
    ANALYSIS_FAILED = "AnalysisFailed"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    CANARY_CRASH_LOOPING = "CanaryCrashLooping"
    APPROVAL_TIMED_OUT = "ApprovalTimedOut"
    # Aborted
    ABORTED = "Aborted"
    # Withdrawn
    REVERTED_TO_STABLE = "RevertedToStable"
    SUPERSEDED = "CanarySuperseded"


class Condition(ApiModel):
    """A Kubernetes-style condition."""

    type: str = Field(
        description="Ready, Progressing, Degraded, Reconciling or Stalled; DigestMismatch when "
        "the pods run other bytes than the revision recorded, ModelResolved with a models:/ uri."
    )
    status: str = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One CamelCase word for machines.")
    message: str = Field(default="", description="What happened and what to do, for people.")
    last_transition_time: str | None = Field(
        default=None, description="When status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition was computed from."
    )


class RevisionPins(ApiModel):
    """What Slipway chose for a revision's pods when the revision was created.

    Kept with the revision so that an operator upgrade (a new preset image, a new fetcher image,
    new pod defaults) never changes the pods of a revision that exists: only a new revision gets
    the new choices.
    """

    server_image: str = Field(
        description="The server image: runtime.image, or the preset's image of model.format."
    )
    preset_image: str | None = Field(
        default=None,
        description="The image of model.format's preset when the revision was created: the "
        "server runs as the preset's non-root user when it runs this image. Absent: no preset, "
        "or pinned before Slipway recorded it (its preset images of then count).",
    )
    fetcher_image: str = Field(
        default="",
        description="The image of the init container that downloads the model (Slipway's own "
        "image); empty when the model is not downloaded.",
    )
    pod_shape: int = Field(
        default=1,
        ge=1,
        description="Generation of Slipway's pod defaults (probes, graceful shutdown, security "
        "context) the pods are built with.",
    )
    model_sha256: str | None = Field(
        default=None,
        pattern=r"^[a-f0-9]{64}$",
        description="The model digest its fetcher verifies (slipway fetch --sha256): the "
        "revision's recorded modelDigest, pinned once the revision no longer serves, so that an "
        "undo to it serves the same bytes or fails saying they changed.",
    )


class RevisionStatus(RevisionRecord):
    """One revision (one Deployment) as observed."""

    revision: str = Field(description="Hash of everything that shapes a serving pod.")
    version: str = Field(default="", description="spec.model.version of that revision.")
    uri: str = Field(default="", description="spec.model.uri of that revision.")
    replicas: int = Field(default=0, description="Pods desired for this revision.")
    ready_replicas: int = Field(default=0, description="Ready pods of this revision.")
    template: Annotated[
        dict[str, Any] | None,
        WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
    ] = Field(
        default=None,
        description="The serving spec (model, runtime, resources, template) of this revision, "
        "so its Deployment can be rebuilt while spec moves on.",
    )
    pinned: RevisionPins | None = Field(
        default=None,
        description="Images and pod defaults chosen when this revision was created.",
    )


class Approval(ApiModel):
    """One person's approval of an approval step."""

    by: str = Field(description="The user, as the admission policy stamped the promote.")
    at: str = Field(description="When the operator took it (RFC 3339).")


class EvaluationStatus(ApiModel):
    """The canary's latest evaluation (an evaluate step): its Job and its verdict."""

    step: int = Field(ge=0, description="Index of the evaluate step in rollout.steps.")
    attempt: int = Field(
        default=1,
        ge=1,
        description="Which evaluation of this canary it is (1, 2, ...; a resume after an "
        "Inconclusive one, or a retry, runs another); its Job is "
        "<name>-eval-<revision>-<step>-<attempt>.",
    )
    started_at: str | None = Field(
        default=None,
        description="When its Job was started; empty while it waits for the canary's pod and "
        "the stable's to be Ready.",
    )
    finished_at: str | None = Field(default=None, description="When its result was judged.")
    verdict: Verdict | None = Field(
        default=None,
        description="Successful when every gate passed, else the worst verdict of its gates "
        "(Failed, Error, Inconclusive); empty until judged. The gates' measurements are in "
        "status.analysis.",
    )


class CanaryStatus(RevisionStatus, CanaryRecord):
    """The canary revision and how far it got."""

    weight: int = Field(default=0, description="Percent of traffic the canary gets now.")
    step: int = Field(
        default=0,
        description="Index of the current step in rollout.steps (len(steps) when all are done).",
    )
    state: CanaryState = Field(
        default=CanaryState.PROGRESSING,
        description="Progressing, Paused, Promoting, Failed (held), RolledBack, Aborted or "
        "Withdrawn (the spec moved away).",
    )
    reason: CanaryReason | None = Field(
        default=None,
        description="Why the canary is in its state (Paused, Failed, RolledBack, Aborted, "
        "Withdrawn), e.g. UserPaused, AnalysisFailed.",
    )
    message: str = Field(
        default="", description="What the reason means here, for people (e.g. the measurement)."
    )
    started_at: str | None = Field(default=None, description="When the canary started.")
    step_started_at: str | None = Field(
        default=None, description="When the current step started (timers count from here)."
    )
    ready_at: str | None = Field(
        default=None, description="When the canary's pods for the current weight were all Ready."
    )
    approvals: list[Approval] = Field(
        default_factory=list,
        description="Who approved the current approval step (distinct users), oldest first.",
    )
    evaluation: EvaluationStatus | None = Field(
        default=None, description="The latest evaluation of the canary (an evaluate step)."
    )
    # written by Slipway 0.1 (before `state`); read once, never written again
    paused: bool | None = Field(default=None, description="Deprecated: see state.")
    pause_reason: str | None = Field(default=None, description="Deprecated: see reason.")
    failure_reason: str | None = Field(default=None, description="Deprecated: see reason.")
    aborted: bool | None = Field(default=None, description="Deprecated: see state.")

    @model_validator(mode="before")
    @classmethod
    def _from_legacy(cls, data: Any) -> Any:
        """A canary as Slipway 0.1 wrote it (booleans and "Reason: message" strings) in the
        terms of `state`, so that an upgraded operator goes on with a canary in flight."""
        if not isinstance(data, dict) or "state" in data:
            return data
        legacy = {
            key: data.get(camel, data.get(snake))
            for key, camel, snake in (
                ("paused", "paused", "paused"),
                ("pause", "pauseReason", "pause_reason"),
                ("failure", "failureReason", "failure_reason"),
                ("aborted", "aborted", "aborted"),
            )
        }
        migrated = {
            k: v
            for k, v in data.items()
            if k not in ("paused", "pauseReason", "pause_reason", "failureReason")
            and k not in ("failure_reason", "aborted")
        }
        state, reason, message = _legacy_state(legacy)
        return {**migrated, "state": state, "reason": reason, "message": message}


def _legacy_state(legacy: dict[str, Any]) -> tuple[CanaryState, CanaryReason | None, str]:
    def split(text: str) -> tuple[CanaryReason | None, str]:
        word, _, message = text.partition(": ")
        known = {r.value: r for r in CanaryReason}
        return known.get(word), message or word

    if legacy["failure"]:
        reason, message = split(legacy["failure"])
        if reason is CanaryReason.ABORTED:
            return CanaryState.ABORTED, reason, message
        if legacy["aborted"]:
            return CanaryState.ROLLED_BACK, reason, message
        return CanaryState.FAILED, reason, message
    if legacy["aborted"]:
        # 0.1 withdrew a canary the spec had moved away from with aborted alone
        return CanaryState.WITHDRAWN, None, ""
    if legacy["paused"]:
        reason, message = split(legacy["pause"] or CanaryReason.USER_PAUSED.value)
        return CanaryState.PAUSED, reason or CanaryReason.USER_PAUSED, message
    return CanaryState.PROGRESSING, None, ""


class Measurement(ApiModel):
    """One analysis measurement."""

    metric: str = Field(description="Name of the metric.")
    value: float | None = Field(default=None, description="The value measured (empty: no data).")
    min: float | None = Field(default=None, description="Lowest acceptable value.")
    max: float | None = Field(default=None, description="Highest acceptable value.")
    samples: float | None = Field(default=None, description="Samples the value rests on.")
    verdict: Verdict = Field(description="Successful, Failed, Inconclusive or Error.")
    message: str = Field(default="", description="Why this verdict.")
    query: str = Field(default="", description="The query as sent, templates resolved.")
    at: str = Field(description="When it was measured (RFC 3339).")
    revision: str = Field(default="", description="The canary revision measured.")
    step: int | None = Field(
        default=None,
        description="The index of the evaluate step whose gate this is; empty for analysis "
        "metrics.",
    )
    stable_value: float | None = Field(
        default=None,
        description="Stable's value over the same window, for a comparison with stable (empty: "
        "no data).",
    )
    stable_samples: float | None = Field(
        default=None, description="Samples stable's value rests on."
    )
    stable_query: str = Field(default="", description="The query sent for stable, as sent.")
    max_ratio_to_stable: float | None = Field(
        default=None, description="Highest acceptable canary / stable."
    )
    max_increase_over_stable: float | None = Field(
        default=None, description="Highest acceptable canary - stable."
    )


class AnalysisStatus(ApiModel):
    """The analysis of the current canary."""

    revision: str = Field(default="", description="The canary revision these counts belong to.")
    failures: int = Field(default=0, description="Failed measurements so far.")
    successes: int = Field(default=0, description="Successful measurements so far.")
    inconclusive: int = Field(default=0, description="Inconclusive measurements so far.")
    last_measured_at: str | None = Field(default=None, description="When analysis last ran.")
    measurements: list[Measurement] = Field(
        default_factory=list, description="The latest measurements, newest last (bounded)."
    )


class HistoryEntry(HistoryRecord):
    """A revision that was promoted to stable."""

    revision: str = Field(description="The revision hash.")
    version: str = Field(default="", description="spec.model.version of that revision.")
    uri: str = Field(default="", description="spec.model.uri of that revision.")
    promoted_at: str | None = Field(default=None, description="When it became stable.")
    template: Annotated[
        dict[str, Any] | None,
        WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
    ] = Field(
        default=None,
        description="The serving spec of that revision, for `kubectl slipway undo`.",
    )
    pinned: RevisionPins | None = Field(
        default=None,
        description="Images and pod defaults chosen when that revision was created.",
    )


class ModelDeploymentStatus(ApiModel):
    """The observed state of a served model."""

    # status also holds kopf's own bookkeeping (status.kopf), which is not ours to parse
    model_config = ConfigDict(extra="ignore")

    phase: Phase = Field(default=Phase.PENDING, description="Where the ModelDeployment stands.")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status was computed from."
    )
    url: str | None = Field(default=None, description="In-cluster URL of the model.")
    replicas: int = Field(default=0, description="Serving pods desired (scale subresource).")
    ready_replicas: int = Field(default=0, description="Ready serving pods, all revisions.")
    ready: str | None = Field(
        default=None,
        description="readyReplicas/replicas as text, e.g. 3/3: the READY column of kubectl get.",
    )
    selector: str | None = Field(
        default=None, description="Label selector of the serving pods (scale subresource)."
    )
    stable: RevisionStatus | None = Field(default=None, description="The stable revision.")
    canary: CanaryStatus | None = Field(default=None, description="The canary, while one runs.")
    analysis: AnalysisStatus | None = Field(default=None, description="Analysis of the canary.")
    history: list[HistoryEntry] = Field(
        default_factory=list, description="Revisions promoted to stable, newest first (bounded)."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing and Degraded; Reconciling and Stalled as kstatus "
        "defines them.",
    )
    last_action: str | None = Field(
        default=None,
        description="The last action annotation consumed, with its time (promote, abort, ...).",
    )
    registry: RegistryResolution | None = Field(
        default=None,
        description="The model registry's answer for a models:/ uri: the version and the "
        "artifacts the spec's revision is made of (kept while the registry cannot be reached).",
    )
