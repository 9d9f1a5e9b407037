"""The analysis runner's thread (a finished measurement round) and the reconcile workers (a
PodMonitor to retry) add keys to the work queue from other threads than the event loop's. A key
added there must be reconciled at once even when the event loop has nothing else to do: in a quiet
cluster no other I/O comes to wake it (the soak saw ModelDeployments left unreconciled for
minutes after the churn stopped, until a watch timed out)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

import pytest

from slipway.controller import Key, WorkQueue

pytestmark = pytest.mark.chaos

KEY = Key("ns", "md")


def from_a_handler_thread(call: Callable[[], None]) -> None:
    """`call` from another thread, once the event loop sleeps."""

    def run() -> None:
        time.sleep(0.2)
        call()

    threading.Thread(target=run, daemon=True).start()


async def seconds_until_reconciled(enqueue: Callable[[WorkQueue], None]) -> float | None:
    done = asyncio.Event()
    started = time.monotonic()
    reconciled: list[float] = []
    loop = asyncio.get_running_loop()

    def reconcile(key: Key) -> None:
        reconciled.append(time.monotonic() - started)
        loop.call_soon_threadsafe(done.set)

    queue = WorkQueue(reconcile, workers=1)
    queue.start(loop)
    from_a_handler_thread(lambda: enqueue(queue))
    # waiting on an Event sets no timer: the loop sleeps until something wakes it
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=3)
    await queue.stop()
    return reconciled[0] if reconciled else None


@pytest.mark.parametrize(
    "enqueue",
    [
        pytest.param(lambda q: q.add(KEY), id="add (a ModelDeployment event)"),
        pytest.param(lambda q: q.add_after(KEY, 0.3), id="add_after (a child event)"),
    ],
)
def test_a_key_added_from_a_watch_handler_thread_is_reconciled_while_the_loop_idles(
    enqueue: Callable[[WorkQueue], None],
) -> None:
    took = asyncio.run(seconds_until_reconciled(enqueue))
    assert took is not None and took < 1.5, f"reconciled after {took}s (added at 0.2s)"
