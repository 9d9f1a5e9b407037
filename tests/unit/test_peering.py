"""kopf's peering rule as PeeringGate applies it, and priorities by seniority."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from slipway.peering import outranked, seniority_priority

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def peer(priority: int, seconds_ago: float = 1, lifetime: int = 60) -> dict[str, Any]:
    seen = NOW - dt.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


@pytest.mark.parametrize(
    "peers, standby",
    [
        ({}, False),
        ({"me": peer(100)}, False),
        ({"me": peer(100), "other": peer(50)}, False),
        ({"me": peer(100), "other": peer(200)}, True),
        ({"me": peer(100), "other": peer(100)}, True),  # kopf pauses both on a tie
        ({"me": peer(100), "other": peer(200, seconds_ago=61)}, False),  # a dead peer
        ({"me": peer(100), "other": peer(200, lifetime=0)}, False),  # a peer that withdrew
    ],
)
def test_an_operator_stands_by_while_a_live_peer_ranks_at_least_as_high(
    peers: dict[str, Any], standby: bool
) -> None:
    assert outranked(peers, "me", 100, NOW) is standby


def test_an_operator_started_later_ranks_lower_and_below_any_chosen_priority() -> None:
    first = seniority_priority(1_800_000_000_000_000_000)
    later = seniority_priority(1_800_000_000_000_001_000)
    assert later < first < 0
