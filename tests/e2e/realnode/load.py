"""A bounded load generator: V2 inference requests at a steady rate, every outcome counted.

Each request opens a new connection (as the probe that found the lost requests did), so a pod
that stops accepting shows up as refused connections, not as a reused socket. Requests go to a
Service's cluster IP from the host (through kube-proxy) or to pod addresses: loopback and the
real node's bridge only. It stops by itself after `max_seconds` or `max_requests`.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.e2e.realnode.models import ROWS, v2_request

# outcomes that are not an answer from a model server (what a rollout must never cause)
TRANSPORT = ("refused", "reset", "timeout", "other")


@dataclass
class LoadResult:
    """What happened to every request sent."""

    sent: int = 0
    ok: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # "ok", "http_500", "refused", ...
    versions: Counter[str] = field(default_factory=Counter)  # model_version of each 2xx answer
    latencies: list[float] = field(default_factory=list)  # seconds, 2xx answers
    failures: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, kind)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Requests that got no 2xx answer, whatever the reason."""
        return self.sent - self.ok

    @property
    def transport_failures(self) -> int:
        """Requests that no model server answered: refused, reset, timed out."""
        return sum(self.outcomes[kind] for kind in TRANSPORT)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "transport_failures": self.transport_failures,
            "outcomes": dict(self.outcomes),
            "versions": dict(self.versions),
            "p50_ms": round(1000 * self.percentile(0.5), 1),
            "p99_ms": round(1000 * self.percentile(0.99), 1),
            "seconds": round(self.seconds, 1),
            "rps": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
        }


class Load:
    """Send requests to `url` (http://host:port) for `model` at `rps` until stopped or bounded."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        rps: float = 35.0,
        max_seconds: float = 600.0,
        max_requests: int = 30_000,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.path = f"/v2/models/{model}/infer"
        self.rps, self.max_seconds, self.max_requests = rps, max_seconds, max_requests
        self.timeout = timeout
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._started = 0.0
        self._bodies = [json.dumps(v2_request([row])).encode() for row in ROWS]

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> LoadResult:
        self._stop.set()
        self._thread.join(timeout=self.max_seconds + 30)
        return self.result

    def wait_for(self, requests: int) -> None:
        """Block until at least `requests` have been answered (or the bounds stop the load)."""
        while not self._stop.is_set() and self._thread.is_alive():
            with self._lock:
                if self.result.sent >= requests:
                    return
            time.sleep(0.2)

    def elapsed(self) -> float:
        """Seconds since the load started (the clock of `LoadResult.failures`)."""
        return time.monotonic() - self._started

    @property
    def sent(self) -> int:
        with self._lock:
            return self.result.sent

    def _run(self) -> None:
        interval = 1.0 / self.rps
        next_at = time.monotonic()
        count = 0
        with ThreadPoolExecutor(max_workers=64, thread_name_prefix="request") as pool:
            while not self._stop.is_set() and count < self.max_requests:
                now = time.monotonic()
                if now - self._started > self.max_seconds:
                    break
                if now < next_at:
                    time.sleep(next_at - now)
                pool.submit(self._one, self._bodies[count % len(self._bodies)])
                count += 1
                next_at += interval
        with self._lock:
            self.result.seconds = time.monotonic() - self._started

    def _one(self, body: bytes) -> None:
        began = time.monotonic()
        kind, version = "other", ""
        try:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.request("POST", self.path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                data = response.read()
            finally:
                conn.close()
            if 200 <= response.status < 300:
                kind = "ok"
                version = str(json.loads(data).get("model_version") or "")
            else:
                kind = f"http_{response.status}"
        except ConnectionRefusedError:
            kind = "refused"
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            kind = "reset"
        except TimeoutError:
            kind = "timeout"
        except OSError:
            kind = "other"
        elapsed = time.monotonic() - began
        with self._lock:
            r = self.result
            r.sent += 1
            r.outcomes[kind] += 1
            if kind == "ok":
                r.ok += 1
                r.latencies.append(elapsed)
                r.versions[version] += 1
            else:
                r.failures.append((began - self._started, kind))
