"""The rollout state machine: pure, data in and data out (see `machine` for the behaviour)."""

from slipway.rollout.capacity import (
    Budget,
    budget_of,
    canary_replicas_for,
    plan_replicas,
    resolve_int_or_percent,
    stable_replicas_for,
    weight_in_effect,
)
from slipway.rollout.machine import analysis_due, decide, describe_step
from slipway.rollout.model import (
    Action,
    Decision,
    DesiredRevision,
    Event,
    Observed,
    ObservedRevision,
    Track,
)

__all__ = [
    "Action",
    "Budget",
    "Decision",
    "DesiredRevision",
    "Event",
    "Observed",
    "ObservedRevision",
    "Track",
    "analysis_due",
    "budget_of",
    "canary_replicas_for",
    "decide",
    "describe_step",
    "plan_replicas",
    "resolve_int_or_percent",
    "stable_replicas_for",
    "weight_in_effect",
]
