"""Replica arithmetic of a rollout: how many pods each revision gets, and the traffic in effect.

The rule behind all of it: capacity is never traded for pods that are not there yet. A revision
grows within the surge budget; a revision shrinks only by Ready pods that others already replace
(or that `maxUnavailable` explicitly allows to be missing).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from slipway.api import RolloutSpec
from slipway.rollout.model import Observed


@dataclass(frozen=True)
class Budget:
    """How far the pods of all revisions together may stray from spec.replicas."""

    surge: int  # extra pods above replicas
    unavailable: int  # Ready pods below replicas


def resolve_int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """An absolute count, or a percentage ("25%") of `total`, rounded as Kubernetes does."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if not text.endswith("%"):
        return int(text)
    scaled = int(text[:-1]) * total
    return -(-scaled // 100) if round_up else scaled // 100


def budget_of(rollout: RolloutSpec, total: int) -> Budget:
    """The surge and unavailability budget of a rollout of `total` replicas."""
    surge = resolve_int_or_percent(rollout.max_surge, total, round_up=True)
    unavailable = resolve_int_or_percent(rollout.max_unavailable, total, round_up=False)
    # with neither a surge nor unavailability no pod could ever move
    if surge == 0 and unavailable == 0:
        surge = 1
    return Budget(surge=surge, unavailable=unavailable)


def canary_replicas_for(weight: int, total: int) -> int:
    """Canary pods for a traffic weight: ceil(weight x total), at least one for any weight."""
    if weight <= 0 or total <= 0:
        return 0
    return max(1, -(-weight * total // 100))


def stable_replicas_for(weight: int, in_effect: int, total: int, *, gateway: bool) -> int:
    """Stable pods while the canary is at `weight` (and `in_effect` is the traffic it gets now).

    With the replica ratio the stable keeps the rest of the pods, never less than one while it
    serves; with an HTTPRoute it keeps what the traffic still routed to it needs, and grows to the
    step's share while the canary carries more than its step's weight (what the stable's Ready
    pods cannot carry yet stays with the canary: `weight_in_effect`).
    """
    if total <= 0:
        return 0
    if gateway:
        return -(-(100 - min(weight, in_effect)) * total // 100)
    rest = total - canary_replicas_for(weight, total)
    return max(rest, 1) if weight < 100 else rest


def weight_in_effect(
    weight: int, canary_ready: int, stable_ready: int, total: int, *, gateway: bool
) -> int:
    """The canary's share of traffic now; zero while it has no Ready pod, whatever the step says.

    Replica ratio: the canary's share of the Ready pods behind Service <name>. HTTPRoute: the
    step's weight, but no more than the share of the desired capacity its Ready pods make up; and
    the stable gets no more than its own Ready pods carry: while they are fewer than its share
    (replicas raised, or the step's weight lowered, after the stable made room), the two split
    the traffic by their Ready pods, so a stable with none gets none. A step of weight 0 (an
    evaluation's) gives the canary no user traffic, whatever the stable has.
    """
    if canary_ready <= 0:
        return 0
    ready_ratio = 100 * canary_ready // (canary_ready + max(stable_ready, 0))
    if not gateway:
        return ready_ratio
    if total <= 0 or weight <= 0:
        return 0
    share = min(weight, 100 * canary_ready // total)
    if max(stable_ready, 0) * 100 < (100 - share) * total:
        share = max(share, ready_ratio)
    return share


def handback_weight(canary_ready: int, stable_ready: int, total: int) -> int:
    """With a route, the weight a canary on its way out keeps (rolled back, aborted, withdrawn).

    The stable takes the traffic back only as fast as its Ready pods can carry it: the canary
    keeps its share of the Ready pods until the stable has `total` of them (a stable scaled down
    for a canary at 100 % gets nothing back while none of its pods is Ready). A canary with no
    Ready pod keeps nothing: there is nowhere better to send the traffic.
    """
    if canary_ready <= 0 or stable_ready >= total:
        return 0
    return weight_in_effect(100, canary_ready, stable_ready, total, gateway=False)


def plan_replicas(
    targets: Mapping[str, int],
    observed: Observed,
    *,
    total: int,
    budget: Budget,
    grow_freely: Collection[str] = (),
    idle: Collection[str] = (),
    steady: Collection[str] = (),
) -> dict[str, int]:
    """Replicas to set now for each revision of `targets`, one safe move toward the targets.

    `targets` is in priority order: the first listed gives up Ready pods first. A revision in
    `grow_freely` (a stable revision restoring its own capacity) grows at once; the others grow
    only within the surge budget. Revisions not in `targets` are about to be deleted and count
    for nothing; nor do the Ready pods of revisions in `idle`, which no user traffic reaches (a
    canary evaluated behind a Service that selects the stable alone). A revision in `steady`
    gives up its pods, Ready or not, only as far as the spare allows (a stable under a held
    canary: a pod unready for a moment is not given up).
    """
    current = {rev: observed.replicas(rev) for rev in targets}
    ready = {rev: 0 if rev in idle else min(observed.ready(rev), current[rev]) for rev in targets}
    planned = dict(current)
    # Ready pods that may go without the model dropping below its minimum
    spare = sum(ready.values()) - (total - budget.unavailable)
    for rev, target in targets.items():
        if target >= current[rev]:
            continue
        # not-Ready pods go freely (unless steady); Ready ones only as far as the spare allows
        keep = current[rev] if rev in steady else ready[rev]
        planned[rev] = max(target, keep - max(spare, 0))
        spare -= ready[rev] - min(ready[rev], planned[rev])
    for rev in grow_freely:
        if rev in targets:
            planned[rev] = max(planned[rev], targets[rev])
    room = total + budget.surge - sum(planned.values())
    for rev, target in targets.items():
        if rev in grow_freely or target <= planned[rev]:
            continue
        grow = min(target - planned[rev], max(room, 0))
        planned[rev] += grow
        room -= grow
    return planned


def plan_leaving(
    targets: Mapping[str, int],
    observed: Observed,
    *,
    ready_elsewhere: int,
    total: int,
    budget: Budget,
) -> dict[str, int]:
    """Replicas to set now for old revisions on their way out (`targets`: where each is going).

    Their pods are no capacity for the revisions that stay (those move as if the old ones were
    not there, and take the whole surge), but the old ones serve through Service <name> until
    they go: their not-Ready pods go at once, their Ready pods only as far as the `ready_elsewhere`
    Ready pods of the revisions that stay make up for them (a new stable that is unready for a
    moment when the scale-down delay ends keeps the old pods until it is back).
    """
    short = max(0, total - budget.unavailable - ready_elsewhere)
    planned: dict[str, int] = {}
    for rev, target in targets.items():
        current = observed.replicas(rev)
        if target >= current:
            planned[rev] = current
            continue
        kept = min(observed.ready(rev), current, short)
        planned[rev] = max(target, kept)
        short -= min(observed.ready(rev), planned[rev])
    return planned
