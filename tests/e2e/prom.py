"""A real Prometheus (Debian's package, via hack/prometheus.sh) scraping a tiny exporter that the
tests drive.

Two jobs:
- `models`: the exporter's `http_requests_total{namespace,revision,code}`, growing at each
  revision's rate (queries written by hand, as users write them);
- `slipway-models`: the serving pods themselves, relabelled exactly as the README's scrape config
  (and so a PodMonitor) does. KWOK's pods have addresses that exist nowhere, so the last rule (the
  tests' own) sends every scrape to the exporter on loopback instead, naming the pod and its
  revision; the exporter answers as MLServer 1.7.1's metrics endpoint would, with series that carry
  no Slipway label at all: the namespace, modeldeployment, revision and track labels can only come
  from the relabelling.

Debian builds its Prometheus without Kubernetes service discovery (`kubernetes_sd_configs` is
unknown to it), so `PodDiscovery` plays it: it lists the cluster's pods and writes, for file-based
discovery, one target per container port with the `__meta_kubernetes_*` labels that
kubernetes_sd's pod role documents. Everything after discovery, the relabelling included, is
Prometheus's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from slipway.resources.scraping import scrape_config
from tests.conftest import ROOT, Cluster
from tests.e2e.conftest import free_port

# MLServer's REST latency histogram buckets (starlette_exporter's defaults), as seen on 1.7.1
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass
class Traffic:
    """Requests per second, error ratio and latency (seconds) that one revision reports."""

    rps: float = 0.0
    error_ratio: float = 0.0
    latency: float = 0.004
    requests: float = 0.0
    errors: float = 0.0


@dataclass
class Exporter:
    """Counters that grow at each revision's rate: `http_requests_total{namespace,revision,code}`
    for the `models` job, and per pod, as MLServer publishes them, for the `slipway-models` job."""

    port: int = 0
    traffic: dict[tuple[str, str], Traffic] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last: float = field(default_factory=time.monotonic)

    def set(
        self,
        namespace: str,
        revision: str,
        rps: float,
        error_ratio: float = 0.0,
        latency: float = 0.004,
    ) -> None:
        with self._lock:
            self._advance()
            t = self.traffic.setdefault((namespace, revision), Traffic())
            t.rps, t.error_ratio, t.latency = rps, error_ratio, latency

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

    def render_pod(self, namespace: str, revision: str) -> str:
        """One pod's metrics endpoint, in MLServer 1.7.1's names and shapes."""
        with self._lock:
            self._advance()
            t = self.traffic.get((namespace, revision), Traffic())
            ok, failed = t.requests - t.errors, t.errors
        model = 'model="m",version="None"'
        lines = [
            "# TYPE model_infer_request_success counter",
            f"model_infer_request_success_total{{{model}}} {ok}",
        ]
        if failed > 0:  # MLServer creates a series at its first increment
            lines += [
                "# TYPE model_infer_request_failure counter",
                f"model_infer_request_failure_total{{{model}}} {failed}",
            ]
        rest = 'app_name="mlserver",method="POST",path="/v2/models/{model_name}/infer"'
        lines.append("# TYPE rest_server_request_duration_seconds histogram")
        for code, count in (("200", ok), ("500", failed)):
            if count <= 0:
                continue
            labels = f'{rest},status_code="{code}"'
            for le in LATENCY_BUCKETS:
                inside = count if t.latency <= le else 0.0
                lines.append(
                    f'rest_server_request_duration_seconds_bucket{{{labels},le="{le}"}} {inside}'
                )
            lines.append(
                f'rest_server_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count}'
            )
            lines.append(f"rest_server_request_duration_seconds_count{{{labels}}} {count}")
            lines.append(
                f"rest_server_request_duration_seconds_sum{{{labels}}} {count * t.latency}"
            )
        return "\n".join(lines) + "\n"


def _serve(exporter: Exporter) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            params = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            if "revision" in params:
                text = exporter.render_pod(params["namespace"][0], params["revision"][0])
            else:
                text = exporter.render()
            body = text.encode()
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


def _sanitized(name: str) -> str:
    """A label or annotation name as kubernetes_sd puts it into a meta label name."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def pod_targets(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets kubernetes_sd's pod role makes of one pod: one per declared container port
    (a container without ports: one without a port), labelled as its documentation says."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    ip = status.get("podIP") or ""
    common: dict[str, str] = {
        "__meta_kubernetes_namespace": meta["namespace"],
        "__meta_kubernetes_pod_name": meta["name"],
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_uid": meta.get("uid", ""),
        "__meta_kubernetes_pod_node_name": spec.get("nodeName", ""),
        "__meta_kubernetes_pod_host_ip": status.get("hostIP", ""),
        "__meta_kubernetes_pod_phase": status.get("phase", ""),
        "__meta_kubernetes_pod_ready": str(
            any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or ()
            )
        ).lower(),
    }
    for kind, values in (("label", meta.get("labels")), ("annotation", meta.get("annotations"))):
        for key, value in (values or {}).items():
            common[f"__meta_kubernetes_pod_{kind}_{_sanitized(key)}"] = value
            common[f"__meta_kubernetes_pod_{kind}present_{_sanitized(key)}"] = "true"
    for ref in meta.get("ownerReferences") or ():
        if ref.get("controller"):
            common["__meta_kubernetes_pod_controller_kind"] = ref["kind"]
            common["__meta_kubernetes_pod_controller_name"] = ref["name"]
    targets = []
    for container in spec.get("containers") or ():
        labels = {
            **common,
            "__meta_kubernetes_pod_container_name": container["name"],
            "__meta_kubernetes_pod_container_image": container.get("image", ""),
            "__meta_kubernetes_pod_container_init": "false",
        }
        ports = container.get("ports") or [None]
        for port in ports:
            target = dict(labels)
            if port is None:
                target["__address__"] = ip
            else:
                target["__address__"] = f"{ip}:{port['containerPort']}"
                target["__meta_kubernetes_pod_container_port_name"] = port.get("name", "")
                target["__meta_kubernetes_pod_container_port_number"] = str(port["containerPort"])
                target["__meta_kubernetes_pod_container_port_protocol"] = port.get(
                    "protocol", "TCP"
                )
            targets.append(target)
    return targets


class PodDiscovery:
    """Kubernetes pod discovery for a Prometheus built without it: the cluster's pods as file_sd
    target groups, rewritten whenever they change."""

    def __init__(self, cluster: Cluster, path: Path) -> None:
        from kubernetes import client, config

        self.pods = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
        self.path = path
        self._stop = threading.Event()
        self._written = ""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="pod-discovery", daemon=True)
        self._thread.start()

    def refresh(self) -> None:
        try:
            response = self.pods.list_pod_for_all_namespaces(
                _preload_content=False, _request_timeout=30
            )
            items = json.loads(response.data)["items"]
        except Exception:  # the API server may be restarting: the next round tries again
            return
        groups = [
            {"targets": [t.pop("__address__")], "labels": t}
            for pod in items
            for t in pod_targets(pod)
        ]
        text = json.dumps(groups, sort_keys=True)
        if text != self._written:
            partial = self.path.with_suffix(".tmp")
            partial.write_text(text)
            partial.replace(self.path)  # Prometheus never reads half a file
            self._written = text

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=35)


def to_the_exporter(port: int) -> list[dict[str, Any]]:
    """The tests' own last rules: scrape the exporter on loopback for every pod, never the pod's
    address (KWOK's pod addresses exist nowhere and must never be dialled)."""
    return [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "__param_namespace"},
        {
            "source_labels": ["__meta_kubernetes_pod_label_serving_slipway_dev_revision"],
            "target_label": "__param_revision",
        },
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "__param_pod"},
        {"target_label": "__address__", "replacement": f"127.0.0.1:{port}"},
    ]


@dataclass
class Prometheus:
    address: str
    exporter: Exporter
    config_file: Path
    pods_file: Path
    base: dict[str, Any] = field(default_factory=dict)

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as r:
            answer = json.loads(r.read())
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def pods_sd(self) -> list[dict[str, Any]]:
        """Service discovery of the cluster's pods, for a job's `file_sd_configs`."""
        return [{"files": [str(self.pods_file)], "refresh_interval": "1s"}]

    def use_jobs(self, *jobs: dict[str, Any]) -> None:
        """Scrape these jobs besides the two of every test, and reload the configuration."""
        config = {**self.base, "scrape_configs": [*self.base["scrape_configs"], *jobs]}
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        request = urllib.request.Request(f"{self.address}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200


def serve_exporter(exporter: Exporter) -> ThreadingHTTPServer:
    """Serve `exporter` on 127.0.0.1 (its port; 0: a free one, written back)."""
    server = _serve(exporter)
    exporter.port = server.server_address[1]
    return server


@contextlib.contextmanager
def launched(work: Path, config: dict[str, Any]) -> Iterator[str]:
    """A Prometheus with `config` (at work/prometheus.yml, reloadable), for the length of the
    block; its URL."""
    binary = subprocess.run(
        ["bash", str(ROOT / "hack" / "prometheus.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    (work / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log = open(work / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--web.enable-lifecycle",
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


GLOBAL = {"scrape_interval": "1s", "evaluation_interval": "1s"}


@contextlib.contextmanager
def running_prometheus(work: Path, targets: dict[str, list[str]]) -> Iterator[str]:
    """A Prometheus scraping each job's targets every second (their labels honoured); its URL."""
    jobs = [
        {"job_name": job, "static_configs": [{"targets": addresses}], "honor_labels": True}
        for job, addresses in targets.items()
    ]
    with launched(work, {"global": GLOBAL, "scrape_configs": jobs}) as address:
        yield address


@contextlib.contextmanager
def session_prometheus(cluster: Cluster, work: Path) -> Iterator[Prometheus]:
    """Prometheus with the `models` and `slipway-models` jobs, its exporter and the pod discovery,
    for the length of the block (the e2e session's one: the `prometheus` fixture of
    tests/e2e/conftest.py)."""
    exporter = Exporter()
    server = serve_exporter(exporter)
    pods_file = work / "pods.json"
    discovery = PodDiscovery(cluster, pods_file)
    pods = scrape_config()
    del pods["kubernetes_sd_configs"]  # played by PodDiscovery: same targets, same meta labels
    pods["file_sd_configs"] = [{"files": [str(pods_file)], "refresh_interval": "1s"}]
    pods["relabel_configs"] = [*pods["relabel_configs"], *to_the_exporter(exporter.port)]
    base = {
        "global": GLOBAL,
        "scrape_configs": [
            {
                "job_name": "models",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                "honor_labels": True,
            },
            pods,
        ],
    }
    try:
        with launched(work, base) as address:
            yield Prometheus(
                address=address,
                exporter=exporter,
                config_file=work / "prometheus.yml",
                pods_file=pods_file,
                base=base,
            )
    finally:
        discovery.stop()
        server.shutdown()
