"""Replica arithmetic of a rollout: budgets, targets per weight, traffic in effect, safe moves."""

from __future__ import annotations

import pytest

from slipway.api import RolloutSpec
from slipway.rollout import (
    Budget,
    Observed,
    ObservedRevision,
    budget_of,
    canary_replicas_for,
    plan_leaving,
    plan_replicas,
    resolve_int_or_percent,
    stable_replicas_for,
    weight_in_effect,
)


def observed(**pods: tuple[int, int]) -> Observed:
    """Observed Deployments from revision=(replicas, ready)."""
    return Observed(
        revisions={
            rev: ObservedRevision(revision=rev, replicas=replicas, ready_replicas=ready)
            for rev, (replicas, ready) in pods.items()
        }
    )


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [
        (2, 10, True, 2),
        ("3", 10, True, 3),
        ("25%", 4, True, 1),
        ("25%", 3, True, 1),
        ("25%", 3, False, 0),
        ("50%", 5, True, 3),
        ("50%", 5, False, 2),
        ("0%", 10, True, 0),
        ("100%", 7, False, 7),
    ],
)
def test_int_or_percent_resolves_like_kubernetes(
    value: int | str, total: int, round_up: bool, expected: int
) -> None:
    assert resolve_int_or_percent(value, total, round_up=round_up) == expected


@pytest.mark.parametrize(
    ("max_surge", "max_unavailable", "total", "expected"),
    [
        ("25%", 0, 4, Budget(surge=1, unavailable=0)),
        ("25%", 0, 10, Budget(surge=3, unavailable=0)),
        (0, 1, 2, Budget(surge=0, unavailable=1)),
        ("10%", "10%", 5, Budget(surge=1, unavailable=0)),
        # nothing could ever move with neither: one pod of surge
        ("0%", 0, 4, Budget(surge=1, unavailable=0)),
        ("25%", 0, 0, Budget(surge=1, unavailable=0)),
    ],
)
def test_budget_of_a_rollout(
    max_surge: int | str, max_unavailable: int | str, total: int, expected: Budget
) -> None:
    rollout = RolloutSpec(max_surge=max_surge, max_unavailable=max_unavailable)
    assert budget_of(rollout, total) == expected


@pytest.mark.parametrize(
    ("weight", "total", "expected"),
    [(0, 10, 0), (1, 10, 1), (10, 10, 1), (25, 10, 3), (50, 3, 2), (100, 3, 3), (50, 0, 0)],
)
def test_canary_replicas_are_ceil_of_weight_times_total_and_at_least_one(
    weight: int, total: int, expected: int
) -> None:
    assert canary_replicas_for(weight, total) == expected


@pytest.mark.parametrize(
    ("weight", "in_effect", "total", "gateway", "expected"),
    [
        (25, 25, 10, False, 7),
        (90, 90, 2, False, 1),  # never below one while the stable serves
        (100, 100, 4, False, 0),
        (25, 0, 10, True, 10),  # with a route: capacity for the traffic still routed to it
        (25, 25, 10, True, 8),
        (100, 60, 10, True, 4),
        (100, 100, 10, True, 0),
        (50, 50, 0, True, 0),
        (
            50,
            100,
            4,
            True,
            2,
        ),  # the canary carries more than its step: the stable grows to its share
    ],
)
def test_stable_replicas_for_a_weight(
    weight: int, in_effect: int, total: int, gateway: bool, expected: int
) -> None:
    assert stable_replicas_for(weight, in_effect, total, gateway=gateway) == expected


@pytest.mark.parametrize(
    ("weight", "canary_ready", "stable_ready", "total", "gateway", "expected"),
    [
        (50, 0, 4, 4, False, 0),
        (50, 0, 4, 4, True, 0),
        (25, 1, 3, 4, False, 25),
        (10, 1, 2, 3, False, 33),  # the ratio is what it is: one pod of three
        (10, 1, 3, 3, True, 10),
        (50, 1, 4, 4, True, 25),  # the route follows the Ready pods up to the step's weight
        (100, 4, 0, 4, True, 100),
        (100, 4, 0, 4, False, 100),
        # the stable gets no more than its Ready pods carry: at 100 % it had none
        (100, 4, 0, 8, True, 100),  # replicas raised from 4 to 8
        (50, 4, 0, 4, True, 100),  # the step's weight lowered from 100 to 50
        (50, 4, 1, 4, True, 80),  # then split by the Ready pods until the stable has its share
        (50, 3, 2, 4, True, 50),
        (25, 1, 3, 8, True, 25),  # both short of replicas raised from 4 to 8: by the Ready pods
        (0, 2, 0, 4, True, 0),  # an evaluation's step gives the canary no user traffic
    ],
)
def test_weight_in_effect_is_zero_without_ready_pods(
    weight: int, canary_ready: int, stable_ready: int, total: int, gateway: bool, expected: int
) -> None:
    assert weight_in_effect(weight, canary_ready, stable_ready, total, gateway=gateway) == expected


SURGE_ONE = Budget(surge=1, unavailable=0)


@pytest.mark.parametrize(
    ("targets", "pods", "budget", "expected"),
    [
        pytest.param(
            {"canary": 2, "stable": 2},
            {"stable": (4, 4)},
            SURGE_ONE,
            {"canary": 1, "stable": 4},
            id="the-canary-grows-within-the-surge",
        ),
        pytest.param(
            {"canary": 2, "stable": 2},
            {"stable": (4, 4), "canary": (1, 0)},
            SURGE_ONE,
            {"canary": 1, "stable": 4},
            id="nothing-moves-while-the-canary-pod-is-not-ready",
        ),
        pytest.param(
            {"canary": 2, "stable": 2},
            {"stable": (4, 4), "canary": (1, 1)},
            SURGE_ONE,
            {"canary": 2, "stable": 3},
            id="a-ready-canary-pod-replaces-a-stable-pod",
        ),
        pytest.param(
            {"canary": 0, "stable": 4},
            {"stable": (2, 2), "canary": (2, 2)},
            SURGE_ONE,
            {"canary": 2, "stable": 4},
            id="rollback-restores-the-stable-before-the-canary-goes",
        ),
        pytest.param(
            {"canary": 0, "stable": 4},
            {"stable": (4, 4), "canary": (2, 2)},
            SURGE_ONE,
            {"canary": 0, "stable": 4},
            id="the-canary-goes-once-the-stable-is-ready",
        ),
        pytest.param(
            {"canary": 0, "stable": 4},
            {"stable": (4, 3), "canary": (2, 2)},
            SURGE_ONE,
            {"canary": 1, "stable": 4},
            id="the-canary-goes-pod-by-pod-as-the-stable-gets-ready",
        ),
        pytest.param(
            {"canary": 0, "stable": 4},
            {"stable": (4, 4), "canary": (3, 0)},
            SURGE_ONE,
            {"canary": 0, "stable": 4},
            id="pods-that-are-not-ready-go-freely",
        ),
        pytest.param(
            {"canary": 1, "stable": 1},
            {"stable": (2, 2)},
            Budget(surge=0, unavailable=1),
            {"canary": 1, "stable": 1},
            id="max-unavailable-trades-a-pod-when-there-is-no-room-to-surge",
        ),
        pytest.param(
            {"canary": 4, "stable": 0},
            {"stable": (4, 4), "canary": (1, 1)},
            Budget(surge=2, unavailable=0),
            {"canary": 3, "stable": 3},
            id="surge-of-two",
        ),
    ],
)
def test_plan_replicas_moves_toward_the_targets_without_losing_capacity(
    targets: dict[str, int],
    pods: dict[str, tuple[int, int]],
    budget: Budget,
    expected: dict[str, int],
) -> None:
    total = sum(targets.values())  # stable and canary targets split spec.replicas here
    planned = plan_replicas(
        targets, observed(**pods), total=total, budget=budget, grow_freely={"stable"}
    )
    assert planned == expected


@pytest.mark.parametrize(
    ("targets", "pods", "ready_elsewhere", "expected"),
    [
        pytest.param(
            {"old": 2}, {"old": (2, 2)}, 4, {"old": 2}, id="in-its-delay-it-keeps-its-pods"
        ),
        pytest.param({"old": 0}, {"old": (2, 2)}, 4, {"old": 0}, id="after-it-goes"),
        pytest.param({"old": 0}, {"old": (2, 2)}, 0, {"old": 2}, id="unless-nothing-else-serves"),
        pytest.param({"old": 0}, {"old": (3, 3)}, 2, {"old": 2}, id="it-keeps-what-is-missing"),
        pytest.param({"old": 0}, {"old": (3, 1)}, 0, {"old": 1}, id="its-unready-pods-go"),
        pytest.param(
            {"older": 0, "old": 0},
            {"older": (2, 2), "old": (2, 2)},
            1,
            {"older": 2, "old": 1},
            id="the-first-listed-is-kept-first",
        ),
    ],
)
def test_old_revisions_leave_as_the_revisions_that_stay_make_up_for_them(
    targets: dict[str, int],
    pods: dict[str, tuple[int, int]],
    ready_elsewhere: int,
    expected: dict[str, int],
) -> None:
    planned = plan_leaving(
        targets, observed(**pods), ready_elsewhere=ready_elsewhere, total=4, budget=SURGE_ONE
    )
    assert planned == expected


@pytest.mark.parametrize(
    ("steady", "expected"),
    [
        pytest.param((), {"canary": 4, "stable": 0}, id="unready-pods-go-freely"),
        pytest.param(("stable",), {"canary": 4, "stable": 2}, id="steady-keeps-them"),
    ],
)
def test_a_steady_revision_gives_up_unready_pods_only_as_the_spare_allows(
    steady: tuple[str, ...], expected: dict[str, int]
) -> None:
    """The stable under a held canary: its 2 pods unready for a moment, the canary's 4 too."""
    planned = plan_replicas(
        {"canary": 4, "stable": 0},
        observed(canary=(4, 0), stable=(2, 0)),
        total=4,
        budget=SURGE_ONE,
        grow_freely={"stable"},
        steady=steady,
    )
    assert planned == expected
