"""Analysis can't stall the operator (issue 15, item 5), against the real cluster.

A Prometheus address is user input: it may point at something that never answers (a blackhole), or
at something that is not Prometheus at all and answers with a page of its own. Neither may hold the
operator's reconcile workers, delay another ModelDeployment, or have its answer copied into status
and Events (an SSRF read-back).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import Cluster
from tests.e2e.conftest import Driver, Operator
from tests.e2e.prom import Prometheus
from tests.e2e.test_canary import CANARY, ERROR_RATE, V2, canary, canary_md, start, status

# the highest spec.rollout.analysis.prometheus.timeout the CRD accepts
TIMEOUT_CAP = "60s"


class Blackhole:
    """A TCP listener on loopback that accepts connections and never answers a byte."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = int(self._server.getsockname()[1])
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._held.append(conn)  # kept open, never read, never answered

    @property
    def accepted(self) -> int:
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for conn in self._held:
                conn.close()
        self._server.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    try:
        yield hole
    finally:
        hole.close()


@contextlib.contextmanager
def operator_alone(
    cluster: Cluster, session: Operator, log_dir: Path, namespace: str, *args: str
) -> Iterator[Operator]:
    """An operator of this test's own (extra `args`, only `namespace`), with the session's stopped
    so that the two never compete for the same objects."""
    session.stop()
    op = Operator(cluster, log_dir, namespaces=[namespace], extra_args=list(args))
    try:
        op.start()
        yield op
    finally:
        op.stop()
        session.start()


def analysis_of(address: str, **extra: Any) -> dict[str, Any]:
    return {
        "interval": "1s",
        "failureLimit": 0,
        "minSamples": 5,
        "prometheus": {"address": address, "timeout": TIMEOUT_CAP},
        "metrics": [
            {
                "name": "error-rate",
                "query": ERROR_RATE,
                "samplesQuery": f"sum(increase(http_requests_total{{{CANARY}}}[10s]))",
                "max": 0.05,
            }
        ],
        **extra,
    }


def test_a_blackholing_prometheus_does_not_delay_another_modeldeployment(
    cluster: Cluster,
    operator: Operator,
    k: Driver,
    blackhole: Blackhole,
    prometheus: Prometheus,
    tmp_path: Path,
) -> None:
    """One reconcile worker, two ModelDeployments: `slow` measures against a listener that never
    answers, `fast` against the real Prometheus. `fast` must be promoted while `slow`'s first
    query is still unanswered, i.e. before `slow` has any measurement at all (with the query run on
    the worker, `fast` waits for the whole timeout of `slow`'s query first)."""
    steps = [{"setWeight": 50}, {"pause": {"duration": "1s"}}]
    with operator_alone(cluster, operator, tmp_path, k.ns, "--workers", "1"):
        hole = f"http://127.0.0.1:{blackhole.port}"
        real = prometheus.address
        start(k, canary_md("slow", replicas=2, steps=steps, analysis=analysis_of(hole)))
        start(k, canary_md("fast", replicas=2, steps=steps, analysis=analysis_of(real)))

        k.patch("md", "slow", {"spec": V2})
        k.wait("slow's query to reach the blackhole", lambda: blackhole.accepted > 0, timeout=60)

        k.patch("md", "fast", {"spec": V2})
        rev = k.wait("fast's canary", lambda: canary(k, "fast").get("revision"), timeout=60)
        prometheus.exporter.set(k.ns, rev, rps=20, error_ratio=0.0)
        promoted = k.wait(
            "fast promoted",
            lambda: (s := status(k, "fast")).get("stable", {}).get("revision") == rev and s,
            timeout=120,
        )
        assert promoted["phase"] == "Ready"
        slow = status(k, "slow")
        assert not (slow.get("analysis") or {}).get("measurements"), (
            "slow's blackholed query finished before fast was promoted: it held the worker",
            slow.get("analysis"),
        )

        # and the slow one ends in an Error measurement of its own words, never in a crash
        measured = k.wait(
            "slow's query to time out",
            lambda: (status(k, "slow").get("analysis") or {}).get("measurements"),
            timeout=120,
        )
        assert measured[-1]["verdict"] == "Error"
        assert "did not answer within 60s" in measured[-1]["message"]
        assert status(k, "slow")["stable"]["revision"] != canary(k, "slow")["revision"]


SECRET = "SECRET-0d1f-internal-metadata"


class NotPrometheus:
    """An HTTP server that is not Prometheus: a proxy error page for one query, and a JSON error
    that carries text of its own for another. Both answers contain SECRET."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query).get("query", [""])[0]
                if "page" in query:
                    status, kind = 502, "text/html; charset=utf-8"
                    body = f"<html><body><h1>Bad Gateway</h1><p>{SECRET}</p></body></html>"
                else:
                    status, kind = 400, "application/json"
                    body = json.dumps(
                        {"status": "error", "errorType": "bad_data", "error": f"{SECRET}: no"}
                    )
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def not_prometheus() -> Iterator[NotPrometheus]:
    server = NotPrometheus()
    try:
        yield server
    finally:
        server.server.shutdown()


@pytest.mark.usefixtures("operator")
def test_an_answer_that_is_not_prometheus_is_described_never_echoed(
    k: Driver, not_prometheus: NotPrometheus
) -> None:
    analysis = analysis_of(not_prometheus.address)
    analysis["metrics"] = [
        {"name": "page", "query": "vector(page)", "max": 1},
        {"name": "json-error", "query": "vector(json)", "max": 1},
    ]
    start(k, canary_md("quirk", replicas=2, analysis=analysis))
    k.patch("md", "quirk", {"spec": V2})
    measured = k.wait(
        "a round of measurements",
        lambda: len((status(k, "quirk").get("analysis") or {}).get("measurements") or []) >= 2,
        timeout=90,
    )
    assert measured
    st = status(k, "quirk")
    latest = {m["metric"]: m for m in st["analysis"]["measurements"]}
    assert latest["page"]["verdict"] == "Error"
    assert "HTTP 502" in latest["page"]["message"]
    assert "text/html" in latest["page"]["message"]
    assert latest["json-error"]["verdict"] == "Error"
    assert "HTTP 400" in latest["json-error"]["message"]
    assert "bad_data" in latest["json-error"]["message"]
    events = k.cluster.kubectl("get", "events", "-n", k.ns, "-o", "json").stdout
    assert "page" in events  # the measurement was reported ...
    assert SECRET not in json.dumps(st)  # ... in words of Slipway's own
    assert SECRET not in events


WINDOW_SECONDS = 20.0


def test_a_round_in_flight_wakes_its_reconcile_when_it_ends_instead_of_asking_every_second(
    cluster: Cluster, operator: Operator, k: Driver, blackhole: Blackhole, tmp_path: Path
) -> None:
    """While a measurement round waits for a Prometheus that never answers, its ModelDeployment
    is not reconciled again and again to ask whether the round has ended: the round's end wakes
    it (a safety requeue at the round's time bound aside). Counted with slipway_reconcile_total
    of an operator watching only this test's namespace, over a window inside the round (its
    query may take 60s); asking every second (MIN_REQUEUE_SECONDS) made about one reconcile a
    second."""
    steps = [{"setWeight": 50}, {"pause": {}}]
    with operator_alone(cluster, operator, tmp_path, k.ns) as op:
        hole = f"http://127.0.0.1:{blackhole.port}"
        start(k, canary_md("slow", replicas=2, steps=steps, analysis=analysis_of(hole)))
        k.patch("md", "slow", {"spec": V2})
        k.wait("the round's query to reach the blackhole", lambda: blackhole.accepted > 0)
        before = op.metric("slipway_reconcile_total")

        time.sleep(WINDOW_SECONDS)  # a window to count in, not a deadline

        after = op.metric("slipway_reconcile_total")
        print(
            f"reconciles while the round was in flight: {after - before:g} in {WINDOW_SECONDS:g}s"
        )
        assert not (status(k, "slow").get("analysis") or {}).get("measurements"), (
            "the round ended within the window: the count would not be of a round in flight"
        )
        # child events (pods, the Deployment status after its scale) may still come in: a few
        assert after - before <= 5, f"{after - before:g} reconciles in {WINDOW_SECONDS:g}s"
