"""The work queue: one reconcile per key at a time, delayed re-adds, and standing by."""

from __future__ import annotations

import asyncio

from slipway.controller import Key, WorkQueue

A, B = Key("ns", "a"), Key("ns", "b")


async def run(scenario: str) -> list[Key]:
    """Reconciled keys, in order, after `scenario` played on a queue of one worker."""
    done: list[Key] = []
    queue = WorkQueue(lambda key: done.append(key) or None, workers=1)
    queue.start(asyncio.get_running_loop())
    if scenario == "add twice":
        queue.add(A)
        queue.add(A)
    elif scenario == "timer":
        queue.add_after(B, 0.05)
    elif scenario == "paused":
        queue.add_after(A, 0.05)
        queue.add(B)
        queue.pause()
        queue.add(A)  # a late watch event while standing by
        queue.add_after(B, 0.01)
    elif scenario == "resumed":
        queue.pause()
        queue.add(A)
        queue.resume()
        queue.add(B)
    await asyncio.sleep(0.2)
    await queue.stop()
    return done


def test_a_key_added_twice_before_it_runs_is_reconciled_once() -> None:
    assert asyncio.run(run("add twice")) == [A]


def test_a_delayed_key_is_reconciled_when_its_timer_runs_out() -> None:
    assert asyncio.run(run("timer")) == [B]


def test_a_paused_queue_forgets_its_keys_and_timers_and_runs_nothing() -> None:
    assert asyncio.run(run("paused")) == []


def test_a_resumed_queue_runs_what_is_added_after_the_resume() -> None:
    assert asyncio.run(run("resumed")) == [B]


def test_a_queue_started_standing_by_runs_nothing_until_resumed() -> None:
    async def scenario() -> tuple[list[Key], list[Key]]:
        done: list[Key] = []
        queue = WorkQueue(lambda key: done.append(key) or None, workers=2)
        queue.start(asyncio.get_running_loop(), active=False)
        queue.add(A)
        await asyncio.sleep(0.1)
        before = list(done)
        queue.resume()
        queue.add(A)
        await asyncio.sleep(0.1)
        await queue.stop()
        return before, done

    before, after = asyncio.run(scenario())
    assert (before, after) == ([], [A])
