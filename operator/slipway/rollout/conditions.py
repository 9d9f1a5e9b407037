"""Kubernetes-style conditions whose transition time moves only when their status does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from slipway.api import Condition, ConditionType

ORDER = (ConditionType.READY, ConditionType.PROGRESSING, ConditionType.DEGRADED)


@dataclass(frozen=True)
class ConditionState:
    """What a condition should say now."""

    status: bool
    reason: str
    message: str


def updated_conditions(
    previous: Sequence[Condition],
    states: dict[ConditionType, ConditionState],
    *,
    now: str,
    generation: int,
) -> list[Condition]:
    """Ready, Progressing and Degraded as `states` say, keeping unchanged transition times.

    Conditions of other types (set by someone else) are kept as they are, after ours.
    """
    by_type = {c.type: c for c in previous}
    result: list[Condition] = []
    for kind in ORDER:
        state = states[kind]
        status = "True" if state.status else "False"
        before = by_type.get(kind.value)
        since = now
        if before is not None and before.status == status and before.last_transition_time:
            since = before.last_transition_time
        result.append(
            Condition(
                type=kind.value,
                status=status,
                reason=state.reason,
                message=state.message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    ours = {kind.value for kind in ORDER}
    result.extend(c for c in previous if c.type not in ours)
    return result
