"""The rollout state machine: pure, data in and data out (see `machine` for the behaviour)."""

from slipway.rollout.capacity import (
    Budget,
    budget_of,
    canary_replicas_for,
    plan_leaving,
    plan_replicas,
    resolve_int_or_percent,
    stable_replicas_for,
    weight_in_effect,
)
from slipway.rollout.facts import heading_for
from slipway.rollout.machine import TRANSITIONS, Trigger, analysis_due, decide
from slipway.rollout.model import (
    Action,
    Claim,
    Decision,
    DesiredEvaluation,
    DesiredRevision,
    EvaluationOutcome,
    Event,
    Observed,
    ObservedRevision,
    PodFailure,
    Refusal,
    Route,
    Track,
)
from slipway.rollout.report import unreadable_spec_status
from slipway.rollout.steps import STEP_KINDS, StepKind, describe_step

__all__ = [
    "STEP_KINDS",
    "TRANSITIONS",
    "Action",
    "Budget",
    "Claim",
    "Decision",
    "DesiredEvaluation",
    "DesiredRevision",
    "EvaluationOutcome",
    "Event",
    "Observed",
    "ObservedRevision",
    "PodFailure",
    "Refusal",
    "Route",
    "StepKind",
    "Track",
    "Trigger",
    "analysis_due",
    "budget_of",
    "canary_replicas_for",
    "decide",
    "describe_step",
    "heading_for",
    "plan_leaving",
    "plan_replicas",
    "resolve_int_or_percent",
    "stable_replicas_for",
    "unreadable_spec_status",
    "weight_in_effect",
]
