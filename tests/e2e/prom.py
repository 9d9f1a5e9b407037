"""A real Prometheus (Debian's package, via hack/prometheus.sh) scraping a tiny exporter that the
tests drive: per revision, a request counter and an error counter that grow at chosen rates."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import free_port


@dataclass
class Traffic:
    """Requests per second and error ratio that one revision reports."""

    rps: float = 0.0
    error_ratio: float = 0.0
    requests: float = 0.0
    errors: float = 0.0


@dataclass
class Exporter:
    """Exposes http_requests_total{namespace,revision,code} growing at each revision's rate."""

    port: int = 0
    traffic: dict[tuple[str, str], Traffic] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last: float = field(default_factory=time.monotonic)

    def set(self, namespace: str, revision: str, rps: float, error_ratio: float = 0.0) -> None:
        with self._lock:
            self._advance()
            t = self.traffic.setdefault((namespace, revision), Traffic())
            t.rps, t.error_ratio = rps, error_ratio

    def _advance(self) -> None:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        for t in self.traffic.values():
            t.requests += t.rps * elapsed
            t.errors += t.rps * t.error_ratio * elapsed

    def render(self) -> str:
        with self._lock:
            self._advance()
            lines = ["# TYPE http_requests_total counter"]
            for (ns, rev), t in sorted(self.traffic.items()):
                ok = t.requests - t.errors
                labels = f'namespace="{ns}",revision="{rev}"'
                lines.append(f'http_requests_total{{{labels},code="200"}} {ok}')
                lines.append(f'http_requests_total{{{labels},code="500"}} {t.errors}')
            return "\n".join(lines) + "\n"


def _serve(exporter: Exporter) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exporter.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", exporter.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class Prometheus:
    address: str
    exporter: Exporter


def serve_exporter(exporter: Exporter) -> ThreadingHTTPServer:
    """Serve `exporter` on 127.0.0.1 (its port; 0: a free one, written back)."""
    server = _serve(exporter)
    exporter.port = server.server_address[1]
    return server


@contextmanager
def running_prometheus(work: Path, targets: dict[str, list[str]]) -> Iterator[str]:
    """A Prometheus scraping each job's targets every second (their labels honoured); its URL."""
    binary = subprocess.run(
        ["bash", str(ROOT / "hack" / "prometheus.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    jobs = "".join(
        f"- job_name: {job}\n  static_configs: [{{targets: {addresses!r}}}]\n  honor_labels: true\n"
        for job, addresses in targets.items()
    )
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n" + jobs
    )
    port = free_port()
    log = open(work / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{address}/-/ready", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError((work / "prometheus.log").read_text()[-2000:])
        time.sleep(0.3)
    try:
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    exporter = Exporter(port=free_port())
    server = serve_exporter(exporter)
    work: Path = tmp_path_factory.mktemp("prometheus")
    try:
        with running_prometheus(work, {"models": [f"127.0.0.1:{exporter.port}"]}) as address:
            yield Prometheus(address=address, exporter=exporter)
    finally:
        server.shutdown()
