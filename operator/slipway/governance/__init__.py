"""Who may act and who did: the annotations the admission policies stamp, and the records the
operator keeps of them (README: Governance)."""

from __future__ import annotations

import datetime as dt

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
from slipway.governance.records import Request, record
from slipway.rollout.model import Action
from slipway.rollout.times import rfc3339


def governance_request(
    md: ModelDeployment, revision: str, action: Action | None, stamps: Stamps, now: dt.datetime
) -> Request:
    """What was asked in this reconcile, for `record`."""
    rollout = md.spec.rollout
    steps = len(rollout.steps) if rollout.strategy is Strategy.CANARY else 0
    return Request(revision=revision, action=action, stamps=stamps, steps=steps, stamp=rfc3339(now))


__all__ = [
    "ACTION",
    "ACTION_BY",
    "ACTION_VERBS",
    "APPLIED_BY",
    "APPLIED_WITH",
    "CONSUMED",
    "STAMPS",
    "UNDO_BY",
    "UNDO_TO",
    "VERBS",
    "Request",
    "Stamps",
    "consumed_keys",
    "describe_actor",
    "gitops_tool",
    "governance_request",
    "record",
    "stamps_of",
]
