"""The work queue: one reconcile per key at a time, delayed re-adds, and standing by."""

from __future__ import annotations

import asyncio
import threading

import pytest

from slipway import controller, metrics
from slipway.controller import CHANGE, PROGRESS, PROGRESS_BURST, Key, WorkQueue

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


def test_progress_is_served_before_changes_but_never_starves_them() -> None:
    """While one reconcile runs, three new ModelDeployments (changes) and six whose pods became
    Ready (progress) queue up: progress goes first, a change after every PROGRESS_BURST."""
    changes = [Key("ns", f"new-{i}") for i in range(3)]
    progress = [Key("ns", f"ready-{i}") for i in range(6)]

    async def scenario() -> list[Key]:
        release = threading.Event()
        done: list[Key] = []

        def reconcile(key: Key) -> None:
            if key == A:
                release.wait(5)
            done.append(key)

        queue = WorkQueue(reconcile, workers=1)
        queue.start(asyncio.get_running_loop())
        queue.add(A)
        await asyncio.sleep(0.05)  # A runs and holds the only worker
        for key in changes:
            queue.add(key, CHANGE)
        for key in progress:
            queue.add(key, PROGRESS)
        queue.add(changes[0], PROGRESS)  # already waiting as a change: it stays where it is
        release.set()
        while len(done) < 1 + len(changes) + len(progress):
            await asyncio.sleep(0.01)
        await queue.stop()
        return done

    assert PROGRESS_BURST == 4
    assert asyncio.run(scenario()) == [
        A,
        *progress[:4],
        changes[0],
        *progress[4:],
        *changes[1:],
    ]


def test_a_key_added_while_it_runs_runs_again_in_the_lane_it_was_added_to() -> None:
    async def scenario() -> tuple[list[Key], list[float]]:
        release = threading.Event()
        done: list[Key] = []

        def reconcile(key: Key) -> None:
            if key == A and not done:
                release.wait(5)
            done.append(key)

        waits_before = wait_count("progress")
        queue = WorkQueue(reconcile, workers=1)
        queue.start(asyncio.get_running_loop())
        queue.add(A)
        await asyncio.sleep(0.05)
        queue.add(B, CHANGE)
        queue.add(A, PROGRESS)  # its pods changed while it ran
        release.set()
        while len(done) < 3:
            await asyncio.sleep(0.01)
        await queue.stop()
        return done, [wait_count("progress") - waits_before]

    done, progress_waits = asyncio.run(scenario())
    assert done == [A, A, B]
    assert progress_waits == [1]


def test_a_reconcile_that_asks_to_run_again_at_once_goes_to_the_progress_lane() -> None:
    async def scenario() -> list[Key]:
        done: list[Key] = []

        def reconcile(key: Key) -> float | None:
            done.append(key)
            return 0.0 if done.count(key) == 1 else None  # it wrote its status: look again

        queue = WorkQueue(reconcile, workers=1)
        queue.start(asyncio.get_running_loop())
        queue.add(A)
        await asyncio.sleep(0.2)
        await queue.stop()
        return done

    assert asyncio.run(scenario()) == [A, A]


def wait_count(lane: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value("slipway_work_queue_wait_seconds_count", {"lane": lane})
        or 0.0
    )


def test_a_child_event_is_acted_on_at_once_and_a_burst_after_it_makes_one_more_reconcile() -> None:
    """A pod becoming Ready on its own is reconciled without waiting (it is queued the moment it
    is added); the burst of events that follows within the spacing (its Deployment's status, the
    next pod) waits for the spacing and then makes one reconcile, not one per event."""

    async def scenario() -> tuple[int, int, int, int]:
        done: list[Key] = []
        queue = WorkQueue(lambda key: done.append(key) or None, workers=1)
        queue.start(asyncio.get_running_loop())
        queue.add_many([A], PROGRESS, spacing=0.3)
        queued_at_once = queue.depth
        while not done:
            await asyncio.sleep(0.01)
        for _ in range(10):  # the burst, within the spacing of the reconcile that just ran
            queue.add_many([A], PROGRESS, spacing=0.3)
        queued_in_the_burst = queue.depth
        await asyncio.sleep(0.6)
        after_the_burst = len(done)
        queue.add_many([A], PROGRESS, spacing=0.3)  # long after: at once again
        queued_later = queue.depth
        await asyncio.sleep(0.1)
        await queue.stop()
        return queued_at_once, queued_in_the_burst, after_the_burst, queued_later

    queued_at_once, queued_in_the_burst, after_the_burst, queued_later = asyncio.run(scenario())
    assert queued_at_once == 1
    assert queued_in_the_burst == 0  # waiting for the spacing, not queued
    assert after_the_burst == 2
    assert queued_later == 1


def test_a_forgotten_key_is_acted_on_at_once_when_it_comes_back() -> None:
    """A ModelDeployment deleted and created again under the same name starts afresh."""

    async def scenario() -> int:
        done: list[Key] = []
        queue = WorkQueue(lambda key: done.append(key) or None, workers=1)
        queue.start(asyncio.get_running_loop())
        queue.add(A)
        while not done:
            await asyncio.sleep(0.01)
        queue.forget(A)
        queue.add_many([A], PROGRESS, spacing=30.0)
        depth = queue.depth
        await queue.stop()
        return depth

    assert asyncio.run(scenario()) == 1


def test_the_start_of_a_reconcile_is_remembered_only_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What spaces child events holds nothing for good: a ModelDeployment deleted (its last
    reconcile run) leaves no entry behind."""
    monkeypatch.setattr(controller, "SPACING_MEMORY", 0.3)

    async def scenario() -> tuple[int, int]:
        queue = WorkQueue(lambda key: None, workers=2)
        queue.start(asyncio.get_running_loop())
        for i in range(100):
            queue.add(Key("ns", f"gone-{i}"))
        while queue.depth:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        remembered = len(queue._started)
        await asyncio.sleep(controller.SPACING_MEMORY + 0.2)
        left = len(queue._started)
        await queue.stop()
        return remembered, left

    remembered, left = asyncio.run(scenario())
    assert remembered > 0
    assert left == 0
