"""The analysis runner: rounds run off the caller (a reconcile worker) and wake it when they end.

The Prometheus here is a gated fake of `/api/v1/query` on 127.0.0.1 (it answers only when the
test opens the gate), so "the caller did not wait" is shown by order, not by time.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slipway.analysis.runner import ROUND_GRACE_SECONDS, AnalysisRunner
from slipway.api import ModelDeployment, Verdict
from slipway.controller import Key

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
KEY = Key("ml", "fraud")


class GatedPrometheus:
    """Answers every query with 0.002 once `gate` is set; counts the queries it was asked."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.asked = threading.Semaphore(0)
        gate, asked = self.gate, self.asked

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                asked.release()
                gate.wait(timeout=30)
                body = json.dumps(
                    {
                        "status": "success",
                        "data": {"resultType": "vector", "result": [{"value": [0, "0.002"]}]},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def prom() -> Iterator[GatedPrometheus]:
    server = GatedPrometheus()
    yield server
    server.gate.set()
    server.server.shutdown()


@pytest.fixture
def runner() -> Iterator[tuple[AnalysisRunner, threading.Event]]:
    woken = threading.Event()
    r = AnalysisRunner(notify=lambda key: woken.set() if key == KEY else None)
    yield r, woken
    r.close()


def md(address: str) -> ModelDeployment:
    return ModelDeployment.from_body(
        {
            "metadata": {"name": "fraud", "namespace": "ml"},
            "spec": {
                "model": {"version": "2.0.0", "uri": "s3://m/2", "format": "sklearn"},
                "rollout": {
                    "strategy": "Canary",
                    "analysis": {
                        "prometheus": {"address": address, "timeout": "20s"},
                        "metrics": [{"check": "error-rate", "max": 0.01}],
                    },
                },
            },
        }
    )


def test_a_round_runs_off_the_caller_and_wakes_it_when_it_ends(
    prom: GatedPrometheus, runner: tuple[AnalysisRunner, threading.Event]
) -> None:
    r, woken = runner
    model = md(prom.address)
    assert r.collect(KEY, model, "9ab1", "5d8f", True, NOW) is None
    assert prom.asked.acquire(timeout=10)  # the query is out, unanswered ...
    assert r.running(KEY)  # ... and the caller is back already
    assert r.collect(KEY, model, "9ab1", "5d8f", True, NOW) is None  # one round at a time
    prom.gate.set()
    assert woken.wait(timeout=10)
    [measured] = r.collect(KEY, model, "9ab1", "5d8f", False, NOW) or []
    assert (measured.metric, measured.value, measured.verdict) == (
        "error-rate",
        0.002,
        Verdict.SUCCESSFUL,
    )
    assert measured.revision == "9ab1"
    assert r.collect(KEY, model, "9ab1", "5d8f", False, NOW) is None  # taken once


def test_a_round_of_a_canary_that_was_replaced_is_dropped(
    prom: GatedPrometheus, runner: tuple[AnalysisRunner, threading.Event]
) -> None:
    r, _ = runner
    model = md(prom.address)
    r.collect(KEY, model, "9ab1", "5d8f", True, NOW)
    assert prom.asked.acquire(timeout=10)
    assert r.collect(KEY, model, "7c2e", "5d8f", False, NOW) is None  # a newer canary
    assert not r.running(KEY)
    prom.gate.set()
    assert r.collect(KEY, model, "7c2e", "5d8f", False, NOW) is None


def test_nothing_starts_when_no_round_is_due(
    prom: GatedPrometheus, runner: tuple[AnalysisRunner, threading.Event]
) -> None:
    r, _ = runner
    assert r.collect(KEY, md(prom.address), "9ab1", "5d8f", False, NOW) is None
    assert not r.running(KEY)
    assert not prom.asked.acquire(blocking=False)


def test_a_round_in_flight_says_by_when_it_ends_and_none_once_it_ended(
    prom: GatedPrometheus, runner: tuple[AnalysisRunner, threading.Event]
) -> None:
    r, woken = runner
    model = md(prom.address)  # prometheus.timeout 20s
    assert r.ends_by(KEY, NOW) is None
    r.collect(KEY, model, "9ab1", "5d8f", True, NOW)
    assert prom.asked.acquire(timeout=10)
    bound = dt.timedelta(seconds=20 + ROUND_GRACE_SECONDS)
    assert r.ends_by(KEY, NOW + dt.timedelta(seconds=3)) == NOW + bound
    # still in flight past its bound (waiting for a slot): another bound from now
    later = NOW + dt.timedelta(minutes=5)
    assert r.ends_by(KEY, later) == later + bound
    prom.gate.set()
    assert woken.wait(timeout=10)
    assert r.ends_by(KEY, NOW) is None
