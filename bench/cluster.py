"""The benchmark's I/O: raw API requests, a watch that timestamps objects, the operator process.

Requests go through the official client's ApiClient (its connection pool, its TLS) but skip its
model classes: the bench reads and writes plain JSON, as the operator does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from bench import report
from slipway.kube import ApiError, read_ok, send

ROOT = Path(__file__).resolve().parent.parent
CRD_FILE = ROOT / "crds" / "serving.slipway.dev_modeldeployments.yaml"
CRD_NAME = "modeldeployments.serving.slipway.dev"
BENCH_LABEL = "slipway.dev/bench"
Predicate = Callable[[Mapping[str, Any]], bool]


def cluster_dir() -> Path:
    """Where hack/cluster.sh keeps the cluster: $SLIPWAY_CLUSTER_DIR, or <repo>/.cluster."""
    return Path(os.environ.get("SLIPWAY_CLUSTER_DIR") or ROOT / ".cluster")


class Api:
    """Plain-JSON requests to the API server of one kubeconfig."""

    def __init__(self, kubeconfig: Path, pool_size: int) -> None:
        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=configuration
        )
        # one connection per client thread, and a few for watches and scrapes
        configuration.connection_pool_maxsize = pool_size
        self.client = client.ApiClient(configuration)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; the decoded JSON answer (ApiError on an HTTP error)."""
        text = read_ok(send(self.client, method, path, timeout=60.0, **kwargs))
        return json.loads(text) if text else {}

    def text(self, path: str) -> str:
        """A plain-text endpoint, such as the API server's own /metrics."""
        return read_ok(send(self.client, "GET", path, accept="text/plain", timeout=60.0))

    def get(self, path: str) -> Any | None:
        try:
            return self.request("GET", path)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def watch(
        self, path: str, resource_version: str, seconds: int, selector: str = ""
    ) -> Iterator[dict[str, Any]]:
        """The watch events of a collection from `resource_version`, for at most `seconds`."""
        query = [
            ("watch", "1"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(seconds)),
        ]
        if selector:
            query.append(("labelSelector", selector))
        response = send(self.client, "GET", path, query=query, timeout=(10.0, seconds + 30.0))
        if not 200 <= response.status <= 299:
            read_ok(response)
        raw = response.response
        buffer = b""
        try:
            for chunk in raw.stream(65536):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            raw.release_conn()


# -- cluster objects ------------------------------------------------------------------------


def install_crd(api: Api) -> None:
    """Server-side apply the ModelDeployment CRD and wait until it is Established."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
    api.request(
        "PATCH",
        path,
        body=crd,
        query=[("fieldManager", "slipway-bench"), ("force", "true")],
        content_type="application/apply-patch+yaml",
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conditions = (api.request("GET", path).get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.2)
    raise TimeoutError(f"CRD {CRD_NAME} not Established after 60s")


def create_namespace(api: Api, name: str) -> None:
    """A namespace labelled as the bench's, once pods can be admitted in it."""
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {BENCH_LABEL: "true"}},
    }
    api.request("POST", "/api/v1/namespaces", body=body)
    # the ServiceAccount controller must create "default" before pods are admitted
    deadline = time.monotonic() + 60
    while api.get(f"/api/v1/namespaces/{name}/serviceaccounts/default") is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"namespace {name} has no default ServiceAccount after 60s")
        time.sleep(0.2)


def delete_namespaces(api: Api, names: Iterable[str], wait_seconds: float) -> list[str]:
    """Delete namespaces and wait until they are gone; the names still there at the deadline."""
    names = list(names)
    for name in names:
        with contextlib.suppress(ApiError):
            api.request("DELETE", f"/api/v1/namespaces/{name}")
    deadline = time.monotonic() + wait_seconds
    left = names
    while left and time.monotonic() < deadline:
        left = [n for n in left if api.get(f"/api/v1/namespaces/{n}") is not None]
        if left:
            time.sleep(1.0)
    return left


def leftover_namespaces(api: Api) -> list[str]:
    """Namespaces an earlier bench run left behind (it was killed before its cleanup)."""
    found = api.request("GET", "/api/v1/namespaces", query=[("labelSelector", BENCH_LABEL)])
    return [item["metadata"]["name"] for item in found.get("items", [])]


NODE_PODS = 500


def _ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def free_pod_slots(api: Api) -> int:
    """Pods the Ready nodes can still take."""
    nodes = api.request("GET", "/api/v1/nodes").get("items", [])
    slots = sum(
        int((n.get("status") or {}).get("allocatable", {}).get("pods", 0))
        for n in nodes
        if _ready(n) and not (n.get("spec") or {}).get("unschedulable")
    )
    pods = api.request(
        "GET",
        "/api/v1/pods",
        query=[("fieldSelector", "status.phase!=Succeeded,status.phase!=Failed")],
    ).get("items", [])
    return slots - len(pods)


def add_kwok_nodes(api: Api, pods_needed: int) -> list[str]:
    """Add KWOK nodes (like hack/cluster.sh's) until `pods_needed` pods fit; their names."""
    missing = pods_needed - free_pod_slots(api)
    added: list[str] = []
    for i in range(max(0, -(-missing // NODE_PODS))):
        name = f"slipway-bench-node-{i + 1}"
        resources = {"cpu": "64", "memory": "256Gi", "pods": str(NODE_PODS), "nvidia.com/gpu": "8"}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
                "labels": {
                    BENCH_LABEL: "true",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "type": "kwok",
                },
            },
            "spec": {},
            "status": {"allocatable": resources, "capacity": resources},
        }
        api.request("POST", "/api/v1/nodes", body=node)
        added.append(name)
    deadline = time.monotonic() + 60
    while added and time.monotonic() < deadline:
        nodes = [api.get(f"/api/v1/nodes/{name}") for name in added]
        if all(n is not None and _ready(n) for n in nodes):
            break
        time.sleep(0.5)
    return added


def remove_bench_nodes(api: Api) -> None:
    """Delete the KWOK nodes a bench run added (this run's, or a killed run's)."""
    found = api.request("GET", "/api/v1/nodes", query=[("labelSelector", BENCH_LABEL)])
    for item in found.get("items", []):
        with contextlib.suppress(ApiError):
            api.request("DELETE", f"/api/v1/nodes/{item['metadata']['name']}")


def kubernetes_version(api: Api) -> str:
    return str(api.request("GET", "/version").get("gitVersion", "unknown"))


def apiserver_requests(api: Api) -> dict[report.RequestKey, float]:
    """`apiserver_request_total` from kube-apiserver's own /metrics, now."""
    return report.request_totals(api.text("/metrics"))


# -- where the CPU went -----------------------------------------------------------------------


def _process_cpu(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return report.cpu_seconds(stat, os.sysconf("SC_CLK_TCK"))


class CpuMeter:
    """CPU seconds of the control plane's processes, the operator and the bench, per phase,
    and how busy the whole machine was (other work on it slows every figure down)."""

    def __init__(self, where: Path) -> None:
        self.pids: dict[str, int] = {"bench": os.getpid()}
        for pid_file in sorted((where / "pids").glob("*.pid")):
            with contextlib.suppress(ValueError, OSError):
                self.pids[pid_file.stem] = int(pid_file.read_text().strip())

    def add(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def _read(self) -> tuple[dict[str, float], tuple[int, int], float]:
        seconds = {name: _process_cpu(pid) for name, pid in self.pids.items()}
        host = report.host_cpu_jiffies(Path("/proc/stat").read_text())
        readings = {name: value for name, value in seconds.items() if value is not None}
        return readings, host, time.monotonic()

    @contextlib.contextmanager
    def phase(self, into: dict[str, Any]) -> Iterator[None]:
        """Fill `into` with what each process spent while the block ran."""
        before, host_before, t0 = self._read()
        yield
        after, host_after, t1 = self._read()
        spent = {n: round(after[n] - before[n], 2) for n in after if n in before}
        busy_seconds = (host_after[0] - host_before[0]) / os.sysconf("SC_CLK_TCK")
        into.update(
            process_cpu_seconds=spent,
            wall_seconds=round(t1 - t0, 2),
            host_busy_fraction=round(report.busy_fraction(host_before, host_after), 3),
            # busy CPU seconds on the machine that none of the processes above account for
            other_cpu_seconds=round(max(0.0, busy_seconds - sum(spent.values())), 1),
        )


# -- a watch that timestamps ------------------------------------------------------------------


class Tracker:
    """Watches one collection and notes when each expected object first satisfies a predicate.

    `expect(names, predicate)` arms it; the watch thread stamps `time.monotonic()` at the event
    that first satisfies the predicate. The stamp is taken on receipt, so it includes the watch's
    delivery delay, as any client's view of "Ready" would.
    """

    def __init__(self, api: Api, path: str, selector: str = "") -> None:
        self.api = api
        self.path = path
        self.selector = selector
        self._lock = threading.Condition()
        self._latest: dict[str, dict[str, Any]] = {}
        self._pending: set[str] = set()
        self._seen: dict[str, float] = {}
        # per object: when it was first seen, and each status it was seen with since expect()
        self._first: dict[str, float] = {}
        self._statuses: dict[str, list[tuple[float, str | None]]] = {}
        self._predicate: Predicate = lambda _: False
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)
        self._listed = threading.Event()

    def __enter__(self) -> Tracker:
        self._thread.start()
        if not self._listed.wait(60):
            raise TimeoutError(f"could not list {self.path}")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()

    def expect(self, names: Iterable[str], predicate: Predicate) -> None:
        """Stamp each of `names` when it first satisfies `predicate` (previous stamps dropped)."""
        with self._lock:
            self._predicate = predicate
            self._pending = set(names)
            for name in self._pending:
                self._seen.pop(name, None)
                self._statuses.pop(name, None)
            for name in list(self._pending):
                obj = self._latest.get(name)
                if obj is not None:
                    self._check(name, obj, time.monotonic())

    def wait(self, timeout: float) -> dict[str, float]:
        """The stamps, once every expected object has one (TimeoutError naming the missing)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                if self._error is not None:
                    raise RuntimeError(f"the watch on {self.path} failed") from self._error
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(self._pending)
                    raise TimeoutError(
                        f"{len(missing)} of the objects never got there within {timeout:.0f}s, "
                        f"e.g. {missing[:3]}: {[self._brief(m) for m in missing[:3]]}"
                    )
                self._lock.wait(min(left, 1.0))
            return dict(self._seen)

    def status_changes(self) -> dict[str, list[tuple[float, str | None]]]:
        """Per object, each status written since `expect` (seconds after it was first seen,
        its `status.ready`); the status it was created with is not one."""
        with self._lock:
            return {name: list(seen) for name, seen in self._statuses.items()}

    def latest(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._latest.get(name)

    def wait_for(
        self, check: Callable[[Mapping[str, dict[str, Any]]], bool], timeout: float
    ) -> None:
        """Block until `check` holds for the objects as the watch has them (by name)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not check(self._latest):
                if self._error is not None:
                    raise RuntimeError(f"the watch on {self.path} failed") from self._error
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"not there within {timeout:.0f}s on {self.path}")
                self._lock.wait(min(left, 1.0))

    def _brief(self, name: str) -> Any:
        obj = self._latest.get(name)
        return None if obj is None else obj.get("status")

    def _check(self, name: str, obj: Mapping[str, Any], stamp: float) -> None:
        if name in self._pending and self._predicate(obj):
            self._pending.discard(name)
            self._seen[name] = stamp
            self._lock.notify_all()

    def _observe(self, kind: str, obj: dict[str, Any]) -> None:
        stamp = time.monotonic()
        name = obj["metadata"]["name"]
        with self._lock:
            self._lock.notify_all()
            if kind == "DELETED":
                self._latest.pop(name, None)
                return
            before = self._latest.get(name)
            self._latest[name] = obj
            self._first.setdefault(name, stamp)
            status = obj.get("status") or {}
            if before is not None and (before.get("status") or {}) != status:
                self._statuses.setdefault(name, []).append(
                    (round(stamp - self._first[name], 3), status.get("ready"))
                )
            self._check(name, obj, stamp)

    def _list(self) -> str:
        query = [("labelSelector", self.selector)] if self.selector else None
        page = self.api.request("GET", self.path, query=query)
        for item in page.get("items", []):
            self._observe("ADDED", item)
        return str(page["metadata"]["resourceVersion"])

    def _run(self) -> None:
        try:
            version = self._list()
            self._listed.set()
            while not self._stop.is_set():
                for event in self.api.watch(self.path, version, 30, self.selector):
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        # 410 Gone: the version is too old; list again
                        version = self._list()
                        break
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if event.get("type") != "BOOKMARK":
                        self._observe(str(event.get("type")), obj)
                    if self._stop.is_set():
                        return
        except BaseException as exc:  # the waiting thread reports it
            with self._lock:
                self._error = exc
                self._lock.notify_all()


# -- the operator process ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """`python -m slipway run` as in production: its own process, metrics on localhost.

    Its pid is recorded in the cluster directory, so `hack/cluster.sh down` stops it even if
    the bench itself was killed.
    """

    def __init__(self, kubeconfig: Path, log_path: Path, pid_file: Path, workers: int | None):
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.pid_file = pid_file
        self.workers = workers
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        args = [
            sys.executable, "-m", "slipway", "run", "--all-namespaces",
            "--kubeconfig", str(self.kubeconfig),
            "--metrics-port", str(self.port), "--metrics-address", "127.0.0.1",
            "--log-level", "warning",
        ]  # fmt: skip
        if self.workers is not None:
            args += ["--workers", str(self.workers)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                # KUBECONFIG too: `import kopf` fixes the client's default kubeconfig path
                # before `slipway run` applies --kubeconfig, and kopf logs in through that path
                env=self._env(),
                start_new_session=True,
            )
        if self.pid_file.parent.is_dir():
            self.pid_file.write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the operator exited with {self.proc.returncode}: {self.tail()}"
                )
            try:
                self.scrape()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the operator's metrics never answered: {self.tail()}")

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        # another source tree for the operator alone (an older commit, to measure "before")
        if source := os.environ.get("SLIPWAY_BENCH_OPERATOR_PYTHONPATH"):
            env["PYTHONPATH"] = source
        return env

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.pid_file.unlink(missing_ok=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def scrape(self, *names: str) -> str:
        """The metrics endpoint; only the metrics `names` when given (prometheus-client's
        `name[]` filter: at 5,000 ModelDeployments the whole page is 100,000 series)."""
        query = "&".join(f"name[]={name}" for name in names)
        url = f"http://127.0.0.1:{self.port}/metrics" + (f"?{query}" if query else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            return str(r.read().decode())

    def writes(self) -> dict[str, float]:
        """`slipway_api_writes_total` by verb."""
        text = self.scrape("slipway_api_writes_total")
        return report.counter_by(text, "slipway_api_writes_total", "verb")

    def reconciles(self) -> dict[str, float]:
        text = self.scrape("slipway_reconcile_total")
        return report.counter_by(text, "slipway_reconcile_total", "result")

    def queue_waits(self) -> dict[str, dict[float, float]]:
        """`slipway_work_queue_wait_seconds` buckets by lane."""
        name = "slipway_work_queue_wait_seconds"
        return report.histogram_buckets(self.scrape(f"{name}_bucket"), name, "lane")

    def reconcile_durations(self) -> dict[str, dict[float, float]]:
        """`slipway_reconcile_duration_seconds` buckets (under the one key "reconcile")."""
        name = "slipway_reconcile_duration_seconds"
        buckets = report.histogram_buckets(self.scrape(f"{name}_bucket"), name, "")
        return {"reconcile": buckets.get("", {})}

    def gc_pauses(self) -> dict[str, float]:
        """`slipway_gc_pause_seconds`: the collections' count and their total pause, in seconds,
        over every generation and for generation 2 (the full ones)."""
        name = "slipway_gc_pause_seconds"
        text = self.scrape(f"{name}_sum", f"{name}_count")
        sums = report.counter_by(text, f"{name}_sum", "generation")
        counts = report.counter_by(text, f"{name}_count", "generation")
        return {
            "count": sum(counts.values()),
            "seconds": sum(sums.values()),
            "full_count": counts.get("2", 0.0),
            "full_seconds": sums.get("2", 0.0),
        }

    def timings(self) -> dict[str, dict[float, float]]:
        """The queue's waits by lane and the reconciles' durations, as cumulative buckets."""
        return {**self.queue_waits(), **self.reconcile_durations()}

    def work(self) -> dict[str, float]:
        """What the operator has done so far: its reconciles and API writes (counted by its own
        metrics) and its CPU seconds; `report.work_done` subtracts two readings."""
        return {
            "reconciles": sum(self.reconciles().values()),
            "writes": sum(self.writes().values()),
            "cpu_seconds": self.cpu_seconds(),
        }

    def proc_status(self) -> str:
        return Path(f"/proc/{self.pid}/status").read_text()

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        return report.cpu_seconds(stat, os.sysconf("SC_CLK_TCK"))

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
