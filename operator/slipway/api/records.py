"""What Slipway records about each revision for the people who answer for it: who applied it, who
promoted it and how it ended, which model bytes and which server image its pods ran.

Kept apart from the rollout state (status.py) because the rollout core never reads these fields:
`slipway.governance.records` fills them in after each decision.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from slipway.api.types import ApiModel


class Promotion(StrEnum):
    """How a revision became stable."""

    INITIAL = "Initial"  # the first revision of the ModelDeployment
    ROLLING = "Rolling"  # strategy Rolling, or a canary without steps: once Ready
    STEPS = "Steps"  # every canary step passed by itself (timed pauses, analysis)
    PROMOTE = "Promote"  # `kubectl slipway promote` (or resume at a pause that waits for it)
    UNDO = "Undo"  # `kubectl slipway undo`
    REVERT = "Revert"  # the spec was set back to a revision from history (e.g. a git revert)


class EndReason(StrEnum):
    """Why a revision stopped being stable."""

    PROMOTED_OVER = "PromotedOver"  # a newer revision was promoted
    ROLLED_BACK = "RolledBack"  # the spec went back to an older revision from history
    UNDONE = "Undone"  # `kubectl slipway undo` went back to an older revision


class ActionRecord(ApiModel):
    """One action on a canary, and who asked for it."""

    action: str = Field(description="promote, promote-full, abort, retry, pause, resume or undo.")
    by: str = Field(
        default="",
        description="The user who asked (stamped by Slipway's admission policy); empty when the "
        "policy is not installed.",
    )
    at: str = Field(description="When the operator acted on it (RFC 3339).")
    step: int | None = Field(
        default=None, description="The canary's step once the action was taken."
    )


class RevisionRecord(ApiModel):
    """Who applied a revision, and what its pods ran."""

    registry_uri: str | None = Field(
        default=None,
        description="The models:/ uri this revision was resolved from (its version and uri are "
        "the registry's answer).",
    )
    applied_by: str | None = Field(
        default=None,
        description="Who applied the spec this revision comes from: the user the API server "
        "authenticated (a GitOps controller's ServiceAccount for a sync), stamped by Slipway's "
        "admission policy.",
    )
    applied_with: str | None = Field(
        default=None,
        description="The field manager of that write, e.g. kubectl-client-side-apply, "
        "argocd-controller, kustomize-controller.",
    )
    model_digest: str | None = Field(
        default=None,
        description="sha256:HEX of the model the pods fetched (the rule of "
        "model.storage.sha256), as every pod of the revision reported it.",
    )
    model_digest_note: str | None = Field(
        default=None,
        description="Why modelDigest is empty: not reported yet, or not knowable (pvc:// is "
        "mounted, not fetched; oci:// is an image volume).",
    )
    image_digest: str | None = Field(
        default=None,
        description="The server image the pods ran, as the container runtime resolved it "
        "(containerStatuses[].imageID, e.g. docker.io/seldonio/mlserver@sha256:HEX).",
    )


class HistoryRecord(RevisionRecord):
    """How a revision in history became stable and how it stopped."""

    promoted_by: str | None = Field(
        default=None,
        description="Who made it stable: the user who promoted or undid, who applied it (first "
        "revision, revert), or slipway when its steps passed by themselves.",
    )
    promotion: Promotion | None = Field(
        default=None,
        description="How it became stable: Initial, Rolling, Steps, Promote, Undo or Revert.",
    )
    approved_by: list[str] | None = Field(
        default=None,
        description="Everyone who promoted it while it was the canary (the approvers of its "
        "approval steps among them), in order.",
    )
    ended_at: str | None = Field(default=None, description="When it stopped being stable.")
    ended_by: str | None = Field(default=None, description="Who replaced it.")
    end_reason: EndReason | None = Field(
        default=None, description="Why it stopped: PromotedOver, RolledBack or Undone."
    )


class CanaryRecord(ApiModel):
    """The actions taken on a canary."""

    actions: list[ActionRecord] = Field(
        default_factory=list,
        description="Actions on this canary and who asked for them, oldest first (bounded).",
    )


class RegistryResolution(ApiModel):
    """What the model registry answered for spec.model.uri (models:/...)."""

    uri: str = Field(description="The models:/ uri resolved.")
    version: str = Field(description="The registry's version it names (e.g. 7).")
    artifact_uri: str = Field(
        description="Where that version's files are (what the pods fetch), e.g. "
        "s3://mlflow/1/abc/artifacts/model."
    )
    resolved_at: str = Field(description="When the registry first gave this answer.")
