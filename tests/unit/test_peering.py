"""kopf's peering rule as PeeringGate applies it, the stricter rule that makes an operator act
only while the others can see it, and priorities by seniority."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from typing import Any

import pytest

from slipway.peering import (
    PeeringGate,
    may_act,
    next_verdict,
    outranked,
    seniority_priority,
    standby_reason,
)

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


SETTLED = NOW - dt.timedelta(seconds=1)  # every peer has had the time to write its keep-alive


@pytest.mark.parametrize(
    "peers, settled, reason",
    [
        ({}, SETTLED, "our keep-alive is not in the peering object"),
        ({"other": peer(50)}, SETTLED, "our keep-alive is not in the peering object"),
        ({"me": peer(100)}, SETTLED, None),
        ({"me": peer(100), "other": peer(50)}, SETTLED, None),
        ({"me": peer(100), "other": peer(200)}, SETTLED, "outranked by other"),
        ({"me": peer(100), "b": peer(100), "a": peer(300)}, SETTLED, "outranked by a, b"),
        ({"me": peer(100), "other": peer(200, seconds_ago=61)}, SETTLED, None),
        (
            {"me": peer(100, seconds_ago=60)},
            SETTLED,
            "our keep-alive ran out (the others may have taken over)",
        ),
        (
            {"me": peer(100, lifetime=0)},
            SETTLED,
            "our keep-alive ran out (the others may have taken over)",
        ),
        (  # a second early by our clock: the others judge it by theirs
            {"me": peer(100, seconds_ago=59.5)},
            SETTLED,
            "our keep-alive ran out (the others may have taken over)",
        ),
        (
            {"me": peer(100)},
            NOW + dt.timedelta(seconds=30),
            "waiting until 2026-11-30T12:00:30+00:00 for every peer's keep-alive",
        ),
        ({"me": peer(100)}, NOW, None),
    ],
)
def test_an_operator_acts_only_while_its_own_keep_alive_is_live_and_nobody_outranks_it(
    peers: dict[str, Any], settled: dt.datetime, reason: str | None
) -> None:
    assert standby_reason(peers, "me", 100, NOW, settled=settled) == reason
    assert may_act(peers, "me", 100, NOW, settled=settled) is (reason is None)


@pytest.mark.parametrize(
    "peers, settled_in, seconds",
    [
        ({}, -1, None),  # only our first keep-alive (an event) can change it
        ({"me": peer(100, seconds_ago=61)}, -1, None),
        ({"me": peer(100, seconds_ago=10)}, -1, 49),  # acting until a second before our deadline
        ({"me": peer(100, seconds_ago=10)}, 20, 20),  # then waiting for the peers
        ({"me": peer(100, seconds_ago=10), "other": peer(200, seconds_ago=30)}, -1, 30),
        ({"me": peer(100, seconds_ago=40), "other": peer(200, seconds_ago=5)}, -1, 19),
        # the last of the peers that outrank us
        (
            {"me": peer(100, seconds_ago=1), "a": peer(200, seconds_ago=30), "b": peer(300, 20)},
            -1,
            40,
        ),
    ],
)
def test_the_verdict_is_judged_again_when_a_deadline_would_change_it(
    peers: dict[str, Any], settled_in: float, seconds: float | None
) -> None:
    settled = NOW + dt.timedelta(seconds=settled_in)
    wake = next_verdict(peers, "me", 100, NOW, settled=settled)
    assert (None if wake is None else (wake - NOW).total_seconds()) == seconds


SEEDS = range(300)


@pytest.mark.parametrize("seed", SEEDS)
def test_no_two_peers_act_on_one_view_of_the_peering_object(seed: int) -> None:
    """Over random peering objects (keep-alives live, late, withdrawn, ties), at most one peer may
    act, and only one whose keep-alive is in the object; a moment later (no new event) too."""
    rng = random.Random(seed)
    names = [f"op-{i}" for i in range(rng.randint(1, 5))]
    peers = {
        name: peer(
            rng.choice([100, 200, 300, -5, -6]),
            seconds_ago=rng.choice([0, 1, 30, 59, 60, 61, 120]),
            lifetime=rng.choice([0, 60, 60, 60, 30]),
        )
        for name in names
        if rng.random() < 0.8
    }
    for later in (0, 1, 30, 61):
        now = NOW + dt.timedelta(seconds=later)
        acting = [
            name for name in names if may_act(peers, name, _prio(peers, name), now, settled=SETTLED)
        ]
        assert len(acting) <= 1, (peers, later, acting)
        assert set(acting) <= set(peers)


def _prio(peers: dict[str, Any], name: str) -> int:
    return int(peers[name]["priority"]) if name in peers else 100


LIFETIME = 60


def kopf_touches(rng: random.Random, first: float, until: float) -> list[float]:
    """When kopf's keep-alive patches land: the first as its operator starts, then every
    lifetime minus 5-10 s (kopf's jitter), each taking up to 2 s to reach the API server."""
    times, at = [], first
    while at < until:
        times.append(at + rng.uniform(0, 2))
        at += LIFETIME - rng.randint(5, 10)
    return times


@pytest.mark.parametrize("seed", range(200))
def test_operators_started_together_never_both_act_and_never_hand_over_while_alive(
    seed: int,
) -> None:
    """Replicas started together, each with kopf's keep-alive schedule, and a peering object
    that exists before them or comes a few seconds later (Helm creates it after the
    Deployment: a keep-alive before that finds nothing). Each sees every version of the object
    as it is written and judges it at every moment: at no moment do two act, and, none of them
    dying, the first that acts is the only one that ever does (no handover: the one that stops
    could still be writing)."""
    rng = random.Random(seed)
    count = rng.randint(2, 4)
    starts = sorted(rng.uniform(0, 3) for _ in range(count))
    ready = [start + rng.uniform(0.5, 4) for start in starts]  # kopf and the gate up
    created = rng.choice([0.0, rng.uniform(0, 12)])  # when the peering object appears
    events: list[tuple[float, int]] = []
    for i in range(count):
        events += [(t, i) for t in kopf_touches(rng, ready[i], 200)]
    events.sort()
    base = NOW
    status: dict[str, Any] = {}
    acted: set[int] = set()
    times = sorted({t for t, _ in events} | {x / 4 for x in range(0, 800)})
    applied = 0
    for at in times:
        while applied < len(events) and events[applied][0] <= at:
            t, i = events[applied]
            applied += 1
            if t >= created:  # before, kopf's keep-alive finds no object and writes nothing
                status[f"op-{i}"] = {
                    "priority": -int(starts[i] * 1e6),
                    "lifetime": LIFETIME,
                    "lastseen": (base + dt.timedelta(seconds=t)).isoformat(),
                }
        now = base + dt.timedelta(seconds=at)
        acting = []
        for i in range(count):
            if at < max(ready[i], created):
                continue  # the operator cannot see the object yet
            since = base + dt.timedelta(seconds=max(ready[i], created))
            settled = since + dt.timedelta(seconds=LIFETIME)
            if may_act(status, f"op-{i}", -int(starts[i] * 1e6), now, settled=settled):
                acting.append(i)
        assert len(acting) <= 1, (seed, at, acting, status)
        acted.update(acting)
    assert len(acted) == 1, (seed, acted)
    assert acted == {0}  # the oldest


class Stub(PeeringGate):
    """A gate whose read of the peering object answers `body` after `hang` seconds: it stands
    for the API server (a unit test of the gate's timers; the real watch and read run in
    tests/e2e/test_peering.py), and a read that hangs is a fault a test cannot ask of it."""

    body: dict[str, Any] | None = None
    hang = 0.0

    def _get(self, scope: str) -> dict[str, Any] | None:
        time.sleep(self.hang)
        return self.body


def keep_alive(seconds_left: float) -> dict[str, Any]:
    seen = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60 - seconds_left)
    body = {"priority": 100, "lifetime": 60, "lastseen": seen.isoformat()}
    return {"metadata": {"uid": "u1"}, "status": {"me": body}}


def gate_changes(hang: float) -> tuple[Stub, list[bool], asyncio.AbstractEventLoop]:
    changes: list[bool] = []
    loop = asyncio.new_event_loop()
    gate = Stub(None, "slipway", (), "me", 100, changes.append, lifetime=2)  # type: ignore[arg-type]
    gate._loop = loop
    gate.hang = hang
    return gate, changes, loop


def run_until(loop: asyncio.AbstractEventLoop, check: Any, seconds: float) -> None:
    async def wait() -> None:
        deadline = time.monotonic() + seconds
        while not check() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    loop.run_until_complete(wait())


def test_the_gate_acts_once_settled_and_stands_by_a_second_before_its_keep_alive_runs_out() -> None:
    """The gate is given one peering object (as its watch would) whose own keep-alive runs out 8 s
    later. With no new event it acts once a keep-alive's lifetime (here 2 s) and the take-over
    grace (2 s) have passed, stands by a second before the deadline, and acts again, after the
    grace, on a fresh keep-alive."""
    gate, changes, loop = gate_changes(hang=0)
    started = time.monotonic()
    gate.body = keep_alive(8)
    gate._judge("", gate.body)
    assert not gate.active  # not settled yet
    run_until(loop, lambda: changes == [True], 10)
    assert changes == [True] and 3.9 < time.monotonic() - started < 7, changes
    run_until(loop, lambda: changes == [True, False], 10)
    assert changes == [True, False] and time.monotonic() - started < 7.5
    gate.body = keep_alive(60)
    gate._judge("", gate.body)
    assert not gate.active  # the grace
    run_until(loop, lambda: changes == [True, False, True], 10)
    assert changes == [True, False, True]
    gate.stop()
    loop.close()


def test_a_late_keep_alive_stands_the_gate_by_even_while_its_read_of_the_peers_hangs() -> None:
    """The active gate's own keep-alive comes late and its reads of the peering object hang (the
    API server slow for it): it stands by at its deadline by its own clock all the same, not when
    a read returns (the others take over at that deadline)."""
    gate, changes, loop = gate_changes(hang=30)
    started = time.monotonic()
    gate.body = keep_alive(8)
    gate._judge("", gate.body)
    run_until(loop, lambda: changes == [True, False], 12)
    assert changes == [True, False], changes
    assert time.monotonic() - started < 7.5
    gate.stop()
    loop.close()


def test_a_peering_object_made_anew_is_waited_for_again() -> None:
    """Settled on one object, the gate waits a lifetime again on a new one (same name, another
    uid): the peers' keep-alives are not in it yet."""
    gate, changes, loop = gate_changes(hang=0)
    gate.body = keep_alive(60)
    gate._judge("", gate.body)
    run_until(loop, lambda: changes == [True], 10)
    assert changes == [True]
    gate.body = {**keep_alive(60), "metadata": {"uid": "u2"}}
    gate._judge("", gate.body)
    assert not gate.active
    assert "waiting until" in gate._reasons[""]
    gate.stop()
    loop.close()
