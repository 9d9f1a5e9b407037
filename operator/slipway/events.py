"""Posts the operator's Events off the reconcile's path, as client-go's event recorder does.

A reconcile writes its status, then records its decision's Events, then applies its children.
Posted in line, each Event held the reconcile (and its worker) for one more round trip to the
API server before any child was written: when 50 canaries start at once, a second or more of
each one's start. `EventPoster.emit` only builds the Event (its times are the decision's) and
puts it on a bounded queue; a few sender threads POST them. The Events of one ModelDeployment
always go through the same sender, so they are posted in the order they were decided.

An Event is best effort, as before (a lost Event loses no state: the status holds the record):
when a sender's queue is full the Event is dropped, logged and counted
(`slipway_events_total{result="dropped"}`); `close` posts what is queued for
a few seconds at most; a killed operator loses what it had not posted yet.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
import zlib
from collections.abc import Mapping
from typing import Any, Protocol

from slipway import metrics
from slipway.kube import event_body

log = logging.getLogger(__name__)

SENDERS = 4
BACKLOG = 1000  # Events waiting, per sender (client-go's broadcaster queues 1000)


class EventSink(Protocol):
    def post_event(self, event: Mapping[str, Any]) -> None: ...


class EventPoster:
    """Bounded queues of Events, each drained by one sender thread."""

    def __init__(self, sink: EventSink, senders: int = SENDERS, backlog: int = BACKLOG) -> None:
        self._sink = sink
        self._queues: list[queue.Queue[Mapping[str, Any] | None]] = [
            queue.Queue(maxsize=backlog) for _ in range(max(1, senders))
        ]
        self._threads = [
            threading.Thread(target=self._run, args=(q,), name=f"events-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        self._closed = False
        for thread in self._threads:
            thread.start()

    def emit(
        self, owner: Mapping[str, Any], type_: str, reason: str, message: str, now: dt.datetime
    ) -> None:
        """Queue an Event about `owner`; never blocks, never raises."""
        event = event_body(owner, type_, reason, message, now)
        meta = owner["metadata"]
        if self._closed:
            log.warning("event %s on %s dropped: the operator is stopping", reason, meta["name"])
            metrics.record_event("dropped")
            return
        q = self._queues[sender_of(meta["namespace"], meta["name"], len(self._queues))]
        try:
            q.put_nowait(event)
        except queue.Full:
            log.warning(
                "event %s on %s/%s dropped: %d Events wait to be posted already",
                reason,
                meta["namespace"],
                meta["name"],
                q.maxsize,
            )
            metrics.record_event("dropped")

    def close(self, timeout: float = 5.0) -> bool:
        """Post what is queued (for `timeout` seconds at most), then stop every sender; True
        when every queued Event was posted."""
        self._closed = True
        deadline = time.monotonic() + timeout
        for q in self._queues:
            try:
                q.put(None, timeout=max(0.0, deadline - time.monotonic()))
            except queue.Full:
                return False
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _run(self, q: queue.Queue[Mapping[str, Any] | None]) -> None:
        while True:
            event = q.get()
            if event is None:
                return
            try:
                self._sink.post_event(event)
            except Exception:  # a lost connection: the next Event is tried all the same
                log.exception(
                    "event %s on %s not posted", event["reason"], event["involvedObject"]["name"]
                )
                metrics.record_event("failed")
            else:
                metrics.record_event("posted")


def sender_of(namespace: str, name: str, senders: int) -> int:
    """The sender of a ModelDeployment's Events: the same one every time (and in every run)."""
    return zlib.crc32(f"{namespace}/{name}".encode()) % senders
