"""The Event poster: Events leave the reconcile's path, keep each ModelDeployment's order, never
block or raise in the reconcile, and are posted on close.

The sink stands in for the API server (a recording object, not a mock of the client): what is
tested is the queueing and the threads, which no API server fault is needed to exercise."""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from slipway import metrics
from slipway.events import EventPoster, sender_of
from slipway.kube import event_body

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 2, 21, 0, 0, tzinfo=dt.UTC)


def owner(name: str, namespace: str = "team") -> dict[str, Any]:
    return {
        "apiVersion": "slipway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
    }


class Sink:
    """Records what it is given; may be held (a slow API server) or fail (a lost connection)."""

    def __init__(self, delay: float = 0.0, fail_on: str = "") -> None:
        self.posted: list[Mapping[str, Any]] = []
        self.threads: set[str] = set()
        self.delay = delay
        self.fail_on = fail_on
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()  # a POST has begun
        self.lock = threading.Lock()

    def post_event(self, event: Mapping[str, Any]) -> None:
        self.entered.set()
        self.open.wait()
        if self.delay:
            time.sleep(random.uniform(0, self.delay))
        if event["reason"] == self.fail_on:
            raise ConnectionError("connection reset")
        with self.lock:
            self.posted.append(event)
            self.threads.add(threading.current_thread().name)

    def reasons(self, name: str) -> list[str]:
        with self.lock:
            return [e["reason"] for e in self.posted if e["involvedObject"]["name"] == name]


def counted() -> dict[str, float]:
    """`slipway_events_total` by result, as the operator's registry holds it now."""
    return {
        result: metrics.REGISTRY.get_sample_value("slipway_events_total", {"result": result}) or 0.0
        for result in ("posted", "failed", "dropped")
    }


def since(before: dict[str, float]) -> dict[str, float]:
    return {result: value - before[result] for result, value in counted().items()}


def test_each_model_deployments_events_are_posted_in_the_order_they_were_decided() -> None:
    sink = Sink(delay=0.002)
    poster = EventPoster(sink, senders=4)
    names = [f"md-{i}" for i in range(12)]
    for step in range(15):
        for name in names:
            poster.emit(owner(name), "Normal", f"R{step:02d}", "m", NOW)
    assert poster.close(timeout=30)
    for name in names:
        assert sink.reasons(name) == [f"R{step:02d}" for step in range(15)]
    assert len(sink.threads) > 1  # and they were posted side by side


def test_emit_returns_at_once_while_the_api_server_is_slow_and_drops_what_overflows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink()
    sink.open.clear()  # every POST hangs
    poster = EventPoster(sink, senders=1, backlog=3)
    before = counted()
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="slipway.events"):
        poster.emit(owner("iris"), "Normal", "R0", "m", NOW)
        assert sink.entered.wait(5)  # the sender holds it, its POST hanging
        for i in range(1, 10):
            poster.emit(owner("iris"), "Normal", f"R{i}", "m", NOW)
    assert time.monotonic() - t0 < 1.0  # not one POST waited for
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    # one in the sender's hands, three queued, six dropped: each one said
    assert len(dropped) == 6
    assert "Events wait to be posted already" in dropped[0].getMessage()
    sink.open.set()
    assert poster.close(timeout=10)
    assert sink.reasons("iris") == ["R0", "R1", "R2", "R3"]
    assert since(before) == {"posted": 4, "failed": 0, "dropped": 6}


def test_a_failed_post_neither_reaches_the_reconcile_nor_stops_the_sender() -> None:
    sink = Sink(fail_on="Lost")
    poster = EventPoster(sink, senders=1)
    before = counted()
    for reason in ("CanaryStarted", "Lost", "Promoted"):
        poster.emit(owner("iris"), "Normal", reason, "m", NOW)
    assert poster.close(timeout=10)
    assert sink.reasons("iris") == ["CanaryStarted", "Promoted"]
    assert since(before) == {"posted": 2, "failed": 1, "dropped": 0}


def test_close_posts_what_is_queued_then_drops_what_comes_after() -> None:
    sink = Sink(delay=0.01)
    poster = EventPoster(sink, senders=2)
    for i in range(20):
        poster.emit(owner(f"md-{i % 3}"), "Normal", "Promoted", "m", NOW)
    assert poster.close(timeout=10)
    assert len(sink.posted) == 20
    before = counted()
    poster.emit(owner("late"), "Normal", "Promoted", "m", NOW)
    time.sleep(0.05)
    assert sink.reasons("late") == []
    assert since(before) == {"posted": 0, "failed": 0, "dropped": 1}


def test_close_gives_up_after_its_timeout_when_the_api_server_never_answers() -> None:
    sink = Sink()
    sink.open.clear()
    poster = EventPoster(sink, senders=2, backlog=2)
    for i in range(8):
        poster.emit(owner(f"md-{i}"), "Normal", "Promoted", "m", NOW)
    t0 = time.monotonic()
    assert not poster.close(timeout=0.5)
    assert time.monotonic() - t0 < 2.0
    sink.open.set()


def test_an_event_bears_the_time_of_its_decision_not_of_its_post() -> None:
    sink = Sink()
    sink.open.clear()
    poster = EventPoster(sink, senders=1)
    poster.emit(owner("iris"), "Warning", "RolledBack", "x" * 5000, NOW)
    time.sleep(0.05)
    sink.open.set()
    assert poster.close(timeout=10)
    (event,) = sink.posted
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-12-02T21:00:00Z"
    assert event["type"] == "Warning" and event["reason"] == "RolledBack"
    assert len(event["message"]) == 1024
    assert event["involvedObject"]["uid"] == "uid-iris"
    assert event == event_body(owner("iris"), "Warning", "RolledBack", "x" * 5000, NOW)


@pytest.mark.parametrize("senders", [1, 2, 4, 7])
def test_a_model_deployment_always_has_the_same_sender(senders: int) -> None:
    rng = random.Random(senders)
    for _ in range(200):
        name = "".join(rng.choice("abcdefghij-0123") for _ in range(rng.randint(1, 30)))
        first = sender_of("team", name, senders)
        assert 0 <= first < senders
        assert sender_of("team", name, senders) == first
    spread = {sender_of("team", f"md-{i}", senders) for i in range(100)}
    assert spread == set(range(senders))  # and the work is spread over all of them
