"""Who did what to which revision: the records added to a decision of the rollout core.

Pure: the core decides what serves; this fills in, after it, what people need to answer for it
(`status.*.appliedBy`, `canary.actions`, `history[].promotedBy`, `promotion`, `endedAt`, `endedBy`,
`endReason`) and says who in the Events. The core never reads these fields and may rebuild the
objects that hold them (a promotion makes a new history entry), so every record is carried over
from the status the decision started from, by revision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from slipway.api import (
    ActionRecord,
    Condition,
    EndReason,
    HistoryEntry,
    HistoryRecord,
    ModelDeploymentStatus,
    Promotion,
    RevisionRecord,
    RevisionStatus,
)
from slipway.governance.annotations import UNDO_VERB, Stamps, describe_actor
from slipway.governance.digests import RevisionDigests, digest_hex, unknowable
from slipway.rollout.model import Action, Decision, Event

# actions kept per canary in status
ACTIONS_KEPT = 20
# who promotes a revision whose steps all passed by themselves
SLIPWAY = "slipway"
# actions that can complete a canary's last step
_PROMOTING = {Action.PROMOTE.value, Action.PROMOTE_FULL.value, Action.RESUME.value}
# actions that approve a canary (a promote at an approval step is one approval)
_APPROVING = {Action.PROMOTE.value, Action.PROMOTE_FULL.value}
# Events only an action produces: they say who asked
ACTION_REASONS = {
    "Approved",
    "Promote",
    "PromoteFull",
    "Aborted",
    "Retry",
    "Paused",
    "UserPaused",
    "Resumed",
    "ActionIgnored",
}
_REVISION_FIELDS = tuple(RevisionRecord.model_fields)
_HISTORY_FIELDS = tuple(f for f in HistoryRecord.model_fields if f not in _REVISION_FIELDS)
_END_REASONS = {Promotion.UNDO: EndReason.UNDONE, Promotion.REVERT: EndReason.ROLLED_BACK}


@dataclass(frozen=True)
class Request:
    """What the people asked for in this reconcile, as the admission policy stamped it."""

    revision: str  # the spec's revision
    action: Action | None  # the action annotation consumed, if any
    stamps: Stamps
    steps: int  # canary steps of the spec (0: none, or strategy Rolling)
    stamp: str  # now, RFC 3339
    # what the pods report about the bytes they serve, by revision
    digests: Mapping[str, RevisionDigests] = field(default_factory=dict)
    # revisions whose Deployment runs no pod (at zero replicas, or gone)
    idle: frozenset[str] = frozenset()

    @property
    def undo_target(self) -> str | None:
        """The revision `kubectl slipway undo` went back to, when the spec is still at it."""
        undo_to = self.stamps.undo_to
        return self.revision if undo_to and undo_to == self.revision else None


def record(before: ModelDeploymentStatus, decision: Decision, request: Request) -> Decision:
    """`decision` with its status carrying every record and its Events saying who."""
    status = decision.status.model_copy(deep=True)
    _carry(before, status)
    _applied(status, request)
    log = _act(before, status, request)
    promotion = _promotion(before, status, request, log)
    events = [_attributed(e, request, status, promotion) for e in decision.events]
    _record_digests(status, request)
    _pin_digests(status, request, {d.revision: d.replicas for d in decision.revisions})
    mismatch = _digest_mismatch(before, status, request)
    if mismatch is not None:
        events.append(mismatch)
    return dataclasses.replace(decision, status=status, events=events)


# -- carrying records over ------------------------------------------------------------------------


def _entries(status: ModelDeploymentStatus) -> Iterator[RevisionStatus | HistoryEntry]:
    yield from (e for e in (status.stable, status.canary) if e is not None)
    yield from status.history


def _carry(before: ModelDeploymentStatus, status: ModelDeploymentStatus) -> None:
    """Fill every record the core dropped from the same revision's record before it."""
    known: dict[str, dict[str, object]] = {}
    for entry in _entries(before):
        fields = known.setdefault(entry.revision, {})
        for name in _REVISION_FIELDS:
            if fields.get(name) is None and getattr(entry, name) is not None:
                fields[name] = getattr(entry, name)
    for entry in _entries(status):
        for name, value in known.get(entry.revision, {}).items():
            if getattr(entry, name) is None:
                setattr(entry, name, value)
    # a history entry keeps how it was promoted and ended, as long as it is the same promotion
    previous = {(h.revision, h.promoted_at): h for h in before.history}
    for entry in status.history:
        old = previous.get((entry.revision, entry.promoted_at))
        for name in _HISTORY_FIELDS if old is not None else ():
            if getattr(entry, name) is None:
                setattr(entry, name, getattr(old, name))
    canary, old_canary = status.canary, before.canary
    if canary is not None and old_canary is not None and old_canary.revision == canary.revision:
        canary.actions = canary.actions or list(old_canary.actions)


def _applied(status: ModelDeploymentStatus, request: Request) -> None:
    """The spec's revision was applied by whoever last changed the serving spec."""
    if not request.stamps.applied_by:
        return
    for entry in _entries(status):
        if entry.revision == request.revision and entry.applied_by is None:
            entry.applied_by = request.stamps.applied_by
            entry.applied_with = request.stamps.applied_with or None


# -- actions ---------------------------------------------------------------------------------------


def _promoted(before: ModelDeploymentStatus, status: ModelDeploymentStatus) -> HistoryEntry | None:
    """The history entry this decision added by a promotion, if it did."""
    if not status.history:
        return None
    top = status.history[0]
    old = before.history[0] if before.history else None
    if old is not None and (old.revision, old.promoted_at) == (top.revision, top.promoted_at):
        return None
    return top


def _act(
    before: ModelDeploymentStatus, status: ModelDeploymentStatus, request: Request
) -> list[ActionRecord]:
    """Record this reconcile's action and undo on the canary they acted on; return the actions of
    the revision promoted in this decision, if one was."""
    promoted = _promoted(before, status)
    canary = status.canary
    target = canary.revision if canary is not None else None
    if target is None and promoted is not None:
        target = promoted.revision
    new: list[ActionRecord] = []
    if target is not None and request.undo_target == target:
        step = canary.step if canary is not None else request.steps
        new.append(
            ActionRecord(action=UNDO_VERB, by=request.stamps.undo_by, at=request.stamp, step=step)
        )
    if request.action is not None and target is not None:
        step = canary.step if canary is not None else request.steps
        new.append(
            ActionRecord(
                action=request.action.value,
                by=request.stamps.action_by,
                at=request.stamp,
                step=step,
            )
        )
    if canary is not None:
        canary.actions = [*canary.actions, *new][-ACTIONS_KEPT:]
        return []
    if promoted is None:
        return []
    earlier = before.canary.actions if before.canary and before.canary.revision == target else []
    return [*earlier, *new]


# -- promotions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Promotion:
    entry: HistoryEntry
    how: Promotion
    by: str


def _promotion(
    before: ModelDeploymentStatus,
    status: ModelDeploymentStatus,
    request: Request,
    log: Sequence[ActionRecord],
) -> _Promotion | None:
    """Who promoted the revision this decision made stable and how; the one it replaced ends."""
    entry = _promoted(before, status)
    if entry is None:
        return None
    for name in _HISTORY_FIELDS:  # a revision promoted again starts a fresh record
        setattr(entry, name, None)
    how, by = _how(before, entry, request, log)
    entry.promotion, entry.promoted_by = how, by or None
    approvers = [r.by for r in log if r.action in _APPROVING and r.by]
    entry.approved_by = list(dict.fromkeys(approvers)) or None
    replaced = before.stable.revision if before.stable is not None else None
    for old in status.history[1:]:
        if old.revision == replaced and old.revision != entry.revision and old.ended_at is None:
            old.ended_at, old.ended_by = request.stamp, by or None
            old.end_reason = _END_REASONS.get(how, EndReason.PROMOTED_OVER)
    return _Promotion(entry=entry, how=how, by=by)


def _how(
    before: ModelDeploymentStatus,
    entry: HistoryEntry,
    request: Request,
    log: Sequence[ActionRecord],
) -> tuple[Promotion, str]:
    if not before.history:
        return Promotion.INITIAL, entry.applied_by or ""
    undo = [r for r in log if r.action == UNDO_VERB]
    if undo:
        return Promotion.UNDO, undo[-1].by
    if any(h.revision == entry.revision for h in before.history):
        return Promotion.REVERT, request.stamps.applied_by
    promoting = [r for r in log if r.action in _PROMOTING and (r.step or 0) >= request.steps]
    if promoting:
        return Promotion.PROMOTE, promoting[-1].by
    return (Promotion.STEPS if request.steps else Promotion.ROLLING), SLIPWAY


# -- digests ---------------------------------------------------------------------------------------

DIGEST_MISMATCH = "DigestMismatch"


def _record_digests(status: ModelDeploymentStatus, request: Request) -> None:
    """A revision's digests, once its pods report one and agree; or why none can be known."""
    for entry in _entries(status):
        reported = request.digests.get(entry.revision)
        if reported is not None:
            models, images = reported.models(), reported.images()
            if entry.model_digest is None and len(models) == 1:
                entry.model_digest = next(iter(models))
            if entry.image_digest is None and len(images) == 1:
                entry.image_digest = next(iter(images))
        if entry.model_digest is None:
            mounted = reported.model_images() if reported is not None else {}
            entry.model_digest_note = unknowable(entry.uri, mounted)
        else:
            entry.model_digest_note = None


def _pin_digests(
    status: ModelDeploymentStatus, request: Request, replicas: Mapping[str, int]
) -> None:
    """A revision that no longer serves verifies its recorded model digest if it comes back (an
    undo): pinned while it runs no pod, so that no pod of it restarts for it."""
    serving = {e.revision for e in (status.stable, status.canary) if e is not None}
    for entry in status.history:
        sha256 = digest_hex(entry.model_digest)
        pinned = entry.pinned
        if sha256 is None or pinned is None or pinned.model_sha256 is not None:
            continue
        if entry.revision in serving or not pinned.fetcher_image:
            continue
        if entry.revision in request.idle and replicas.get(entry.revision, 0) == 0:
            entry.pinned = pinned.model_copy(update={"model_sha256": sha256})


def _digest_mismatch(
    before: ModelDeploymentStatus, status: ModelDeploymentStatus, request: Request
) -> Event | None:
    """The DigestMismatch condition: True while the pods of a serving revision report different
    model or image digests (or ones other than its record); a Warning Event when it turns True."""
    problems: list[str] = []
    reasons: set[str] = set()
    for entry in (status.stable, status.canary):
        reported = request.digests.get(entry.revision) if entry is not None else None
        if entry is None or reported is None:
            continue
        for what, seen, recorded, reason in (
            ("model", reported.models(), entry.model_digest, "ModelDigestsDiffer"),
            ("image", reported.images(), entry.image_digest, "ImageDigestsDiffer"),
        ):
            if len(set(seen) | ({recorded} if recorded else set())) < 2:
                continue
            reasons.add(reason)
            said = "; ".join(f"{', '.join(pods)} report {d}" for d, pods in sorted(seen.items()))
            problems.append(
                f"revision {entry.revision} ({entry.version}): pods report different {what} "
                f"digests: {said}" + (f" (recorded: {recorded})" if recorded else "")
            )
    old = next((c for c in before.conditions if c.type == DIGEST_MISMATCH), None)
    if not problems:
        if old is not None and old.status == "True":
            agree = "the pods of each serving revision report the same model and image digests"
            _set_condition(status, old, "False", "DigestsAgree", agree, request.stamp)
        elif old is not None:
            _set_condition(status, old, old.status, old.reason, old.message, request.stamp)
        return None
    reason = reasons.pop() if len(reasons) == 1 else "DigestsDiffer"
    message = (
        "; ".join(problems) + ". The model or the image changed under the revision (a mutable "
        "object or tag): pin spec.model.storage.sha256, or use an immutable uri and image"
    )
    _set_condition(status, old, "True", reason, message, request.stamp)
    if old is not None and old.status == "True":
        return None
    return Event("Warning", DIGEST_MISMATCH, message)


def _set_condition(
    status: ModelDeploymentStatus,
    old: Condition | None,
    value: str,
    reason: str,
    message: str,
    stamp: str,
) -> None:
    """The DigestMismatch condition in status (its one writer), its transition time kept while its
    value stays."""
    changed = old is None or old.status != value
    condition = Condition(
        type=DIGEST_MISMATCH,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=stamp if changed or old is None else old.last_transition_time,
        observed_generation=status.observed_generation,
    )
    status.conditions = [c for c in status.conditions if c.type != DIGEST_MISMATCH]
    status.conditions.append(condition)


# -- Events ----------------------------------------------------------------------------------------


def _attributed(
    event: Event, request: Request, status: ModelDeploymentStatus, promotion: _Promotion | None
) -> Event:
    """The Event, saying who asked for what it reports."""
    stamps = request.stamps
    suffix = ""
    if request.action is not None and event.reason in ACTION_REASONS:
        suffix = f" (asked by {describe_actor(stamps.action_by)})"
    elif event.reason == "Undo" and request.undo_target:
        suffix = f" (asked by {describe_actor(stamps.undo_by)})"
    elif event.reason == "Promoted" and promotion is not None:
        suffix = f"; promoted by {promotion.by or 'unknown'} ({promotion.how.value})"
    elif event.reason in ("CanaryStarted", "Deployed", "Deploying") and stamps.applied_by:
        suffix = f"; applied by {describe_actor(stamps.applied_by, stamps.applied_with)}"
    if not suffix:
        return event
    return dataclasses.replace(event, message=event.message + suffix)


__all__ = ["ACTIONS_KEPT", "ACTION_REASONS", "SLIPWAY", "Request", "record"]
