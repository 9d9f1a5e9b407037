"""Who may act and who did: the annotations the admission policies stamp, and the records the
operator keeps of them (README: Governance)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from slipway.api import ModelDeployment, Strategy
from slipway.governance.annotations import (
    ACTION,
    ACTION_BY,
    ACTION_VERBS,
    APPLIED_BY,
    APPLIED_WITH,
    CONSUMED,
    STAMPS,
    UNDO_BY,
    UNDO_TO,
    VERBS,
    Stamps,
    consumed_keys,
    describe_actor,
    gitops_tool,
    stamps_of,
)
from slipway.governance.digests import RevisionDigests, observed_digests
from slipway.governance.records import DIGEST_MISMATCH, Request, record
from slipway.rollout.model import Action, Observed
from slipway.rollout.times import rfc3339


def governance_request(
    md: ModelDeployment,
    revision: str,
    action: Action | None,
    stamps: Stamps,
    now: dt.datetime,
    pods: Sequence[Mapping[str, Any]] = (),
    observed: Observed | None = None,
) -> Request:
    """What was asked in this reconcile and what the pods report, for `record`."""
    rollout = md.spec.rollout
    steps = len(rollout.steps) if rollout.strategy is Strategy.CANARY else 0
    digests = observed_digests(pods)
    live = observed.revisions if observed is not None else {}
    recorded = {e.revision for e in (md.status.stable, md.status.canary, *md.status.history) if e}
    idle = frozenset(
        rev
        for rev in recorded
        if rev not in digests and (rev not in live or live[rev].replicas == 0)
    )
    return Request(
        revision=revision,
        action=action,
        stamps=stamps,
        steps=steps,
        stamp=rfc3339(now),
        digests=digests,
        idle=idle,
    )


__all__ = [
    "ACTION",
    "ACTION_BY",
    "ACTION_VERBS",
    "APPLIED_BY",
    "APPLIED_WITH",
    "CONSUMED",
    "DIGEST_MISMATCH",
    "STAMPS",
    "UNDO_BY",
    "UNDO_TO",
    "VERBS",
    "Request",
    "RevisionDigests",
    "Stamps",
    "consumed_keys",
    "describe_actor",
    "gitops_tool",
    "governance_request",
    "record",
    "stamps_of",
]
