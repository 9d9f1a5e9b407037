"""Which rollout decisions are worth telling people, and what to tell them: pure, no I/O.

A reconcile's decision carries the Events it emits (`Decision.events`); a few of them mark a moment
a team wants to hear about, as Argo Rollouts and Flagger announce them: a rollout starts, it pauses
for a decision (it waits for promotion, an Inconclusive measurement paused it, or it failed and is
held), it is promoted, it is rolled back or aborted. Each becomes one `Notification`, addressed to
the channels the ModelDeployment names in its `serving.slipway.dev/notify` annotation, and is
rendered as a generic webhook's JSON or as a Slack-compatible message. Events happen once per
transition (a reconcile that changes nothing emits none), so a notification is made once too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from slipway import GROUP
from slipway.api import (
    CanaryState,
    Measurement,
    ModelDeployment,
    ModelDeploymentStatus,
    Phase,
)
from slipway.rollout import Decision

NOTIFY_ANNOTATION = f"{GROUP}/notify"
ChannelKind = Literal["webhook", "slack"]
CHANNEL_KINDS: tuple[ChannelKind, ...] = ("webhook", "slack")


class Moment(StrEnum):
    """What happened to a rollout (the `kind` of a webhook payload)."""

    STARTED = "RolloutStarted"
    WAITING_FOR_PROMOTION = "RolloutWaitingForPromotion"
    PAUSED_INCONCLUSIVE = "RolloutPausedInconclusive"
    HELD = "RolloutHeld"
    PROMOTED = "RolloutPromoted"
    ROLLED_BACK = "RolloutRolledBack"
    ABORTED = "RolloutAborted"


# Event reasons (slipway.rollout) that are a moment by themselves
MOMENT_OF_EVENT: Mapping[str, Moment] = {
    "CanaryStarted": Moment.STARTED,
    "Retry": Moment.STARTED,
    "AnalysisInconclusive": Moment.PAUSED_INCONCLUSIVE,
    "Promoted": Moment.PROMOTED,
    "RolledBack": Moment.ROLLED_BACK,
    "Aborted": Moment.ABORTED,
}
# Events after which the canary may stand at a step that waits for `promote`
_STEP_EVENTS = frozenset({"CanaryStarted", "Retry", "CanaryStep"})
WAITING_FOR_PROMOTION = "WaitingForPromotion"
# an approval step waits for people too (slipway.rollout.steps)
_WAITING_FOR_PEOPLE = frozenset({WAITING_FOR_PROMOTION, "WaitingForApproval"})

_TITLES: Mapping[Moment, str] = {
    Moment.STARTED: "rollout started",
    Moment.WAITING_FOR_PROMOTION: "waiting for promotion",
    Moment.PAUSED_INCONCLUSIVE: "paused: analysis inconclusive",
    Moment.HELD: "failed and held: abort, retry or promote",
    Moment.PROMOTED: "promoted",
    Moment.ROLLED_BACK: "rolled back",
    Moment.ABORTED: "aborted",
}
# Slack attachment colours: good news, a decision is needed, bad news
_COLOURS: Mapping[Moment, str] = {
    Moment.STARTED: "#439fe0",
    Moment.WAITING_FOR_PROMOTION: "#daa038",
    Moment.PAUSED_INCONCLUSIVE: "#daa038",
    Moment.HELD: "#d00000",
    Moment.PROMOTED: "#2eb886",
    Moment.ROLLED_BACK: "#d00000",
    Moment.ABORTED: "#d00000",
}


@dataclass(frozen=True)
class Notification:
    """One moment of one ModelDeployment's rollout, and who wants to hear about it."""

    moment: Moment
    namespace: str
    name: str
    phase: str
    reason: str  # the Event's reason
    message: str  # the Event's message
    revisions: Mapping[str, str]  # stable and canary revision of the rollout
    versions: Mapping[str, str]  # stable and canary spec.model.version
    measurements: Sequence[Mapping[str, Any]] = ()
    at: str = ""
    channels: tuple[str, ...] = field(default=())


def channels_of(annotations: Mapping[str, str]) -> tuple[str, ...]:
    """The channel names in the notify annotation ("ml-team, oncall"), in order, each once."""
    names = (n.strip() for n in annotations.get(NOTIFY_ANNOTATION, "").split(","))
    return tuple(dict.fromkeys(n for n in names if n))


def notifications_for(
    md: ModelDeployment, decision: Decision, now: dt.datetime
) -> list[Notification]:
    """The notifications a decision on `md` (its status before the decision) makes, in order.

    None when the ModelDeployment names no channel.
    """
    channels = channels_of(md.metadata.annotations)
    if not channels:
        return []
    before, after = md.status, decision.status
    moments: list[tuple[Moment, str, str]] = []
    for event in decision.events:
        moment = MOMENT_OF_EVENT.get(event.reason) or _held(after, event.reason)
        if moment is not None:
            moments.append((moment, event.reason, event.message))
        if event.reason in _STEP_EVENTS and _waits_for_promotion(after):
            moments.append((Moment.WAITING_FOR_PROMOTION, WAITING_FOR_PROMOTION, _why(after)))
    seen: set[Moment] = set()
    result = []
    for moment, reason, message in moments:
        if moment in seen:  # e.g. several steps completed at once, the last one waits
            continue
        seen.add(moment)
        result.append(
            Notification(
                moment=moment,
                namespace=md.namespace,
                name=md.name,
                phase=after.phase.value,
                reason=reason,
                message=message,
                revisions=_pair(before, after, "revision"),
                versions=_pair(before, after, "version"),
                measurements=_latest_measurements(after),
                at=now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                channels=channels,
            )
        )
    return result


def _held(status: ModelDeploymentStatus, reason: str) -> Moment | None:
    """HELD for the Event of any failure that holds the canary (autoRollback: false)."""
    canary = status.canary
    if canary is None or canary.state is not CanaryState.FAILED or canary.reason is None:
        return None
    return Moment.HELD if reason == canary.reason.value else None


def _waits_for_promotion(status: ModelDeploymentStatus) -> bool:
    if status.phase is not Phase.PAUSED:
        return False
    return any(
        c.type == "Progressing" and c.reason in _WAITING_FOR_PEOPLE for c in status.conditions
    )


def _why(status: ModelDeploymentStatus) -> str:
    return next((c.message for c in status.conditions if c.type == "Progressing"), "")


def _pair(
    before: ModelDeploymentStatus, after: ModelDeploymentStatus, key: Literal["revision", "version"]
) -> dict[str, str]:
    """The rollout's stable (the one that served while it ran) and canary (the one it is about)."""
    stable = before.stable or after.stable
    canary = after.canary or before.canary
    pair = {}
    if stable is not None:
        pair["stable"] = getattr(stable, key)
    if canary is not None:
        pair["canary"] = getattr(canary, key)
    return pair


def _latest_measurements(status: ModelDeploymentStatus) -> list[dict[str, Any]]:
    """The latest measurement of each metric of the canary, newest round last."""
    analysis = status.analysis
    if analysis is None:
        return []
    latest: dict[str, Measurement] = {}
    for m in analysis.measurements:
        if m.revision in ("", analysis.revision):
            latest[m.metric] = m
    return [m.model_dump(by_alias=True, mode="json", exclude={"revision"}) for m in latest.values()]


# -- payloads --------------------------------------------------------------------------------------


def webhook_payload(n: Notification) -> dict[str, Any]:
    """The JSON a generic webhook receives."""
    return {
        "kind": n.moment.value,
        "modelDeployment": {"namespace": n.namespace, "name": n.name},
        "revision": n.revisions.get("canary", ""),
        "revisions": dict(n.revisions),
        "versions": dict(n.versions),
        "phase": n.phase,
        "reason": n.reason,
        "message": n.message,
        "measurements": [dict(m) for m in n.measurements],
        "at": n.at,
    }


def slack_payload(n: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook message (also what Mattermost and Rocket.Chat accept)."""
    title = f"{n.namespace}/{n.name}: {_TITLES[n.moment]}"
    stable, canary = n.versions.get("stable", "?"), n.versions.get("canary", "?")
    fields = [
        {"title": "Versions", "value": f"{stable} → {canary}", "short": True},
        {"title": "Phase", "value": n.phase, "short": True},
    ]
    for m in n.measurements:
        fields.append({"title": str(m["metric"]), "value": _measurement(m), "short": True})
    return {
        "text": title,
        "attachments": [
            {
                "color": _COLOURS[n.moment],
                "title": title,
                "text": f"{n.reason}: {n.message}",
                "fields": fields,
                "ts": int(dt.datetime.fromisoformat(n.at.replace("Z", "+00:00")).timestamp()),
            }
        ],
    }


def _measurement(m: Mapping[str, Any]) -> str:
    value = "no data" if m.get("value") is None else f"{m['value']:g}"
    bounds = [f"{b} {m[b]:g}" for b in ("min", "max") if m.get(b) is not None]
    return (
        f"{value} ({', '.join(bounds)}): {m['verdict']}" if bounds else f"{value}: {m['verdict']}"
    )


def payload(kind: ChannelKind, n: Notification) -> dict[str, Any]:
    """The body to POST to a channel of `kind`."""
    return slack_payload(n) if kind == "slack" else webhook_payload(n)
