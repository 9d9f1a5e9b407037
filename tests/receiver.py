"""A webhook receiver on loopback: it records what it is sent and answers as a test tells it to."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    content_type: str
    body: Any


@dataclass
class Receiver:
    """Answers `statuses` in turn (then the last one again), each after `delay` seconds, and only
    once `gate` is set (a receiver that hangs until the test lets it go)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    gate: threading.Event | None = None
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def messages(self, path: str | None = None) -> list[Any]:
        with self._lock:
            return [r.body for r in self.received if path is None or r.path == path]

    def _answer(self, path: str, content_type: str, body: bytes) -> int:
        with self._lock:
            status = self.statuses[min(self.attempts, len(self.statuses) - 1)]
            self.attempts += 1
        if self.gate is not None:
            self.gate.wait(600)
        time.sleep(self.delay)
        if 200 <= status < 300:
            with self._lock:
                self.received.append(Received(path, content_type, json.loads(body)))
        return status


@contextmanager
def receiving(receiver: Receiver | None = None) -> Iterator[Receiver]:
    """Serve `receiver` on 127.0.0.1 (a free port) for the duration of the block."""
    r = receiver or Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = r._answer(self.path, self.headers.get("Content-Type", ""), body)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender gave up waiting (its timeout) and closed the connection

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", r.port), Handler)
    server.daemon_threads = True
    r.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        server.shutdown()
        server.server_close()
