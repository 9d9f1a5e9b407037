"""A take-over (or a start) whose watches cannot list for a long while waits them out instead of
giving up, and reconciles everything once they have listed.

The watches here are a stand-in (a test double): a list that fails for longer than the sync
timeout (600 s) is a fault the suite's real API server cannot produce within a test's time;
what is under test is `handlers._take_over`'s own logic, with the timeout shortened."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from slipway import handlers
from slipway.controller import CHANGE, Key


@dataclass
class SlowWatches:
    """Watches whose first list takes `rounds` sync timeouts (each retries on its own)."""

    rounds: int
    calls: int = 0
    started: int = 0

    def start(self) -> None:
        self.started += 1

    def synced(self, timeout: float) -> bool:
        self.calls += 1
        if self.calls <= self.rounds:
            time.sleep(timeout)
            return False
        return True

    def unsynced(self) -> list[str]:
        return ["pods in ml"] if self.calls <= self.rounds else []


@dataclass
class Queue:
    active: bool = False
    added: list[tuple[Key, str]] = field(default_factory=list)

    def resume(self) -> None:
        self.active = True

    def add(self, key: Key, lane: str) -> None:
        self.added.append((key, lane))


@dataclass
class Gate:
    active: bool = True


@dataclass
class Store:
    def keys(self, kind: str) -> list[tuple[str, str]]:
        return [("ml", "fraud"), ("ml", "churn")] if kind == "ModelDeployment" else []

    def count(self, kind: str) -> int:
        return len(self.keys(kind))


def runtime(watches: Any, gate: Any) -> Any:
    return handlers.Runtime(
        store=Store(), queue=Queue(), reconciler=None, watches=watches, gate=gate, events=None
    )  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "SYNC_TIMEOUT_SECONDS", 0.05)
    monkeypatch.setattr(handlers, "freeze_long_lived", lambda: None)


def test_a_take_over_whose_lists_outlast_the_sync_timeout_waits_and_then_reconciles_all(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """It raised after the timeout, and the queue of the operator that had taken over stayed
    paused for good: nothing reconciled, the liveness probe still passing."""
    rt = runtime(SlowWatches(rounds=3), Gate(active=True))
    monkeypatch.setattr(handlers, "_runtime", rt)
    with caplog.at_level(logging.WARNING, logger=handlers.log.name):
        asyncio.run(handlers._take_over())

    assert rt.queue.active
    assert rt.queue.added == [(Key("ml", "fraud"), CHANGE), (Key("ml", "churn"), CHANGE)]
    assert rt.watches.started == 1, "one set of watches, not one more per attempt"
    warned = [r.getMessage() for r in caplog.records if "have not listed yet" in r.getMessage()]
    assert len(warned) == 3 and "pods in ml" in warned[0]


def test_a_take_over_outranked_while_it_waits_stands_by() -> None:
    gate = Gate(active=True)
    watches = SlowWatches(rounds=10**6)

    def synced(timeout: float) -> bool:
        gate.active = False  # a peer of higher priority came meanwhile
        return False

    watches.synced = synced  # type: ignore[method-assign]
    rt = runtime(watches, gate)
    assert asyncio.run(handlers._start_watches(rt)) is False
    assert not rt.queue.active
