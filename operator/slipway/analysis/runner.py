"""Measurement rounds off the reconcile workers.

A reconcile never waits for Prometheus: when a round is due it starts one here and goes on; the
round runs on this runner's own event loop (a thread of its own), concurrently with every other
ModelDeployment's, bounded by `prometheus.timeout`; when it ends it wakes that ModelDeployment's
reconcile, which takes the measurements. A Prometheus that never answers so costs one pending
round of one ModelDeployment, never a worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from slipway.analysis.measure import measure
from slipway.analysis.prometheus import TIMEOUT_CAP_SECONDS, query_timeout
from slipway.api import Measurement, ModelDeployment, Verdict
from slipway.controller import Key
from slipway.rollout.times import rfc3339

log = logging.getLogger(__name__)

# rounds in flight at once; the rest wait their turn (a thousand canaries, one Prometheus)
CONCURRENT_ROUNDS = 64
# a round never outlives its queries by more than this (they are bounded by their own timeout)
ROUND_GRACE_SECONDS = 5.0


@dataclass
class _Round:
    revision: str
    future: concurrent.futures.Future[list[Measurement]]
    started: dt.datetime  # the reconcile's time when it was started
    bound: float  # seconds it takes at most once it runs (its queries are bounded)


class AnalysisRunner:
    """Runs measurement rounds on a thread of its own; `collect` is called from reconciles."""

    def __init__(self, notify: Callable[[Key], None] | None = None) -> None:
        self.notify = notify  # wakes the reconcile of a key whose round ended
        self._lock = threading.Lock()
        self._rounds: dict[Key, _Round] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._limit: asyncio.Semaphore | None = None
        self._session: aiohttp.ClientSession | None = None

    def collect(
        self,
        key: Key,
        md: ModelDeployment,
        revision: str,
        stable_revision: str,
        due: bool,
        now: dt.datetime,
    ) -> list[Measurement] | None:
        """The measurements of a round of `revision` that has ended (each round once), or None.

        When `due` and no round of `key` runs, one starts; a round of another revision (the
        canary changed meanwhile) is dropped.
        """
        with self._lock:
            current = self._rounds.get(key)
            if current is not None and current.revision != revision:
                current.future.cancel()
                del self._rounds[key]
                current = None
            if current is not None and current.future.done():
                del self._rounds[key]
                return self._result(md, revision, current, now)
            if current is None and due:
                self._rounds[key] = _Round(
                    revision,
                    self._start(key, md, revision, stable_revision, now),
                    started=now,
                    bound=round_bound(md),
                )
        return None

    def ends_by(self, key: Key, now: dt.datetime) -> dt.datetime | None:
        """When the round of `key` in flight will have ended at the latest (its end wakes the
        reconcile; this is the safety net), or None when none is in flight. A round still
        waiting for its turn past its bound gets another bound from `now`."""
        with self._lock:
            found = self._rounds.get(key)
            if found is None or found.future.done():
                return None
            ends = found.started + dt.timedelta(seconds=found.bound)
        return ends if ends > now else now + dt.timedelta(seconds=found.bound)

    def running(self, key: Key) -> bool:
        """Whether a round of `key` is in flight."""
        with self._lock:
            found = self._rounds.get(key)
            return found is not None and not found.future.done()

    def forget(self, key: Key) -> None:
        """Drop the round of a deleted ModelDeployment."""
        with self._lock:
            found = self._rounds.pop(key, None)
        if found is not None:
            found.future.cancel()

    def close(self) -> None:
        """Stop the runner's loop (rounds in flight are abandoned)."""
        loop = self._loop
        if loop is None:
            return
        if self._session is not None:
            asyncio.run_coroutine_threadsafe(self._session.close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop = None

    # -- the runner's own loop --------------------------------------------------------------------

    def _start(
        self,
        key: Key,
        md: ModelDeployment,
        revision: str,
        stable_revision: str,
        now: dt.datetime,
    ) -> concurrent.futures.Future[list[Measurement]]:
        loop = self._running_loop()
        future = asyncio.run_coroutine_threadsafe(
            self._round(md, revision, stable_revision, now), loop
        )
        future.add_done_callback(lambda _: self._woken(key))
        return future

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=loop.run_forever, name="slipway-analysis", daemon=True
            )
            self._thread.start()
            self._loop = loop
        return self._loop

    async def _round(
        self, md: ModelDeployment, revision: str, stable_revision: str, now: dt.datetime
    ) -> list[Measurement]:
        if self._limit is None:
            self._limit = asyncio.Semaphore(CONCURRENT_ROUNDS)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._limit, asyncio.timeout(TIMEOUT_CAP_SECONDS + ROUND_GRACE_SECONDS):
            return await measure(md, revision, stable_revision, now, session=self._session)

    def _woken(self, key: Key) -> None:
        if self.notify is not None:
            self.notify(key)

    @staticmethod
    def _result(
        md: ModelDeployment, revision: str, ended: _Round, now: dt.datetime
    ) -> list[Measurement] | None:
        if ended.future.cancelled():
            return None
        error = ended.future.exception()
        if error is None:
            return ended.future.result()
        # measure() turns every query failure into a measurement; anything else is a bug, which
        # must not stop the rollout from being judged: an Error measurement per metric says so
        if isinstance(error, TimeoutError):
            why = f"the round did not end within {TIMEOUT_CAP_SECONDS + ROUND_GRACE_SECONDS:g}s"
        else:
            log.error("analysis round of %s/%s failed", md.namespace, md.name, exc_info=error)
            why = f"the measurement failed: {type(error).__name__}"
        spec = md.spec.rollout.analysis
        metrics = spec.metrics if spec is not None else []
        return [
            Measurement(
                metric=m.metric_name,
                min=m.min,
                max=m.max,
                verdict=Verdict.ERROR,
                message=why,
                query=m.query or "",
                at=rfc3339(now),
                revision=revision,
            )
            for m in metrics
        ]


def round_bound(md: ModelDeployment) -> float:
    """Seconds a round of `md` takes at most: its queries run at once, each bounded by
    `prometheus.timeout`, and the whole round by the cap."""
    spec = md.spec.rollout.analysis
    cap = TIMEOUT_CAP_SECONDS + ROUND_GRACE_SECONDS
    if spec is None:
        return cap
    return min(cap, query_timeout(spec.prometheus.timeout) + ROUND_GRACE_SECONDS)
