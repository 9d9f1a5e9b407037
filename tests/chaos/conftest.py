"""The reliability suite's harness: operators to kill, a control plane to restart, and the checks
that say nothing was lost.

Two forms: the short one that `make test` runs (a few minutes on a 2-core machine) and the long one
(`SLIPWAY_CHAOS=long`, `make chaos`). Every loop is bounded in time and in count.

Each test's operators watch only the test's namespace, so nothing else on the cluster (another
operator, another test's objects) acts on or disturbs what a test counts. The control-plane
restarts need the project's local cluster (hack/cluster.sh), not an existing one.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from slipway.resources.names import deployment_name, service_name
from tests.conftest import ROOT, Cluster
from tests.e2e.conftest import Driver, Operator, canary_model_deployment

LONG = os.environ.get("SLIPWAY_CHAOS") == "long"
SEED = int(os.environ.get("SLIPWAY_CHAOS_SEED", "20240611"))

MD_LABEL = "serving.slipway.dev/modeldeployment"
REVISION_LABEL = "serving.slipway.dev/revision"
MANAGED = "app.kubernetes.io/managed-by=slipway"
PEERING_CRDS = ROOT / "charts" / "slipway" / "charts" / "kopf-peering" / "crds"
PEERING_CRDS_FILE = PEERING_CRDS / "kopf.dev_peerings.yaml"


@dataclass(frozen=True)
class Scale:
    """Counts and durations of one form of the suite."""

    kill_mds: int
    kills: int
    restart_mds: int
    restarts: int  # of each component
    peering_mds: int
    edit_seconds: float
    soak_mds: int
    soak_seconds: float
    soak_warmup_seconds: float
    soak_rss_growth: float  # the RSS growth after warm-up that fails the soak
    converge_seconds: float


SHORT = Scale(
    kill_mds=10,
    kills=3,
    restart_mds=6,
    restarts=1,
    peering_mds=4,
    edit_seconds=20,
    soak_mds=20,
    soak_seconds=60,
    soak_warmup_seconds=20,
    # a minute of churn is mostly warm-up: report the figure, fail only on a gross leak
    soak_rss_growth=0.5,
    converge_seconds=150,
)
LONG_SCALE = Scale(
    kill_mds=50,
    kills=10,
    restart_mds=20,
    restarts=3,
    peering_mds=10,
    edit_seconds=120,
    soak_mds=100,
    soak_seconds=20 * 60,
    soak_warmup_seconds=3 * 60,
    soak_rss_growth=0.2,
    converge_seconds=420,
)
SCALE = LONG_SCALE if LONG else SHORT


def report(figure: str) -> None:
    """A measured figure for the README's Reliability section: printed (pytest -s shows it) and
    appended to $SLIPWAY_CHAOS_FIGURES (default /tmp/slipway-chaos-figures.log)."""
    line = f"[chaos {'long' if LONG else 'short'}] {figure}"
    print(line)
    log = Path(os.environ.get("SLIPWAY_CHAOS_FIGURES", "/tmp/slipway-chaos-figures.log"))
    with log.open("a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")


# -- the objects ----------------------------------------------------------------------------------


def model_deployment(
    name: str,
    version: str = "1.0.0",
    replicas: int = 2,
    steps: list[dict[str, Any]] | None = None,
    **rollout: Any,
) -> dict[str, Any]:
    """A small canary ModelDeployment (timed pauses unless `steps` says), two old revisions kept."""
    md = canary_model_deployment(
        name,
        steps if steps is not None else [{"setWeight": 50}, {"pause": {"duration": "2s"}}],
        version=version,
        replicas=replicas,
        **rollout,
    )
    md["spec"]["revisionHistoryLimit"] = 2
    return md


def version_patch(name: str, version: str) -> dict[str, Any]:
    return {"spec": {"model": {"version": version, "uri": f"s3://models/{name}/{version}"}}}


# -- a fast client for loops ----------------------------------------------------------------------


class Api:
    """The objects of one namespace through the Python client: cheaper than kubectl in loops.

    Threads may share one (urllib3's connection pool is thread-safe); editors get their own so
    that one slow request does not hold up another's connection.
    """

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        from kubernetes import client, config

        self.ns = namespace
        self.client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self.custom = client.CustomObjectsApi(self.client)
        self.core = client.CoreV1Api(self.client)
        self.apps = client.AppsV1Api(self.client)

    def mds(self) -> list[dict[str, Any]]:
        result: dict[str, Any] = self.custom.list_namespaced_custom_object(
            "serving.slipway.dev", "v1alpha1", self.ns, "modeldeployments"
        )
        return list(result["items"])

    def md(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "serving.slipway.dev", "v1alpha1", self.ns, "modeldeployments", name
        )
        return result

    def create(self, body: Mapping[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(
            "serving.slipway.dev", "v1alpha1", self.ns, "modeldeployments", dict(body)
        )

    def patch_md(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of a ModelDeployment (the client sends dicts as merge patches)."""
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            "serving.slipway.dev", "v1alpha1", self.ns, "modeldeployments", name, dict(patch)
        )
        return result

    def replace_md(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT a whole ModelDeployment; unknown fields are refused (as kubectl does), not pruned."""
        result: dict[str, Any] = self.custom.replace_namespaced_custom_object(
            "serving.slipway.dev",
            "v1alpha1",
            self.ns,
            "modeldeployments",
            body["metadata"]["name"],
            dict(body),
            field_validation="Strict",
        )
        return result

    def delete_md(self, name: str) -> None:
        from kubernetes.client import ApiException

        try:
            self.custom.delete_namespaced_custom_object(
                "serving.slipway.dev", "v1alpha1", self.ns, "modeldeployments", name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def children(self) -> dict[str, list[dict[str, Any]]]:
        """Every Deployment, Service, HPA and Pod Slipway manages here, as plain dicts."""
        raw = {
            "Deployment": self.apps.list_namespaced_deployment(self.ns, label_selector=MANAGED),
            "Service": self.core.list_namespaced_service(self.ns, label_selector=MANAGED),
            "Pod": self.core.list_namespaced_pod(self.ns, label_selector=MANAGED),
        }
        return {
            kind: [self.client.sanitize_for_serialization(item) for item in items.items]
            for kind, items in raw.items()
        }

    def warning_events(self) -> list[dict[str, Any]]:
        events = self.core.list_namespaced_event(self.ns, field_selector="type=Warning")
        return [self.client.sanitize_for_serialization(e) for e in events.items]

    def close(self) -> None:
        self.client.close()


# -- what "consistent" means ----------------------------------------------------------------------


@dataclass
class Snapshot:
    """The ModelDeployments of a namespace and everything Slipway made for them, read at once."""

    mds: dict[str, dict[str, Any]]
    children: dict[str, list[dict[str, Any]]]

    @classmethod
    def read(cls, api: Api) -> Snapshot:
        children = api.children()
        mds = {md["metadata"]["name"]: md for md in api.mds()}
        return cls(mds=mds, children=children)

    def owned(self, kind: str, md_name: str) -> list[dict[str, Any]]:
        return [
            c
            for c in self.children[kind]
            if (c["metadata"].get("labels") or {}).get(MD_LABEL) == md_name
            and not c["metadata"].get("deletionTimestamp")
        ]

    def inconsistencies(self, names: Sequence[str] | None = None) -> list[str]:
        """Everything that is not as it should be once the operator has converged; [] if none."""
        problems: list[str] = []
        for name in sorted(self.mds if names is None else names):
            md = self.mds.get(name)
            if md is None:
                problems.append(f"{name}: gone")
                continue
            problems.extend(f"{name}: {p}" for p in self._md_problems(md))
        problems.extend(self._orphans())
        return problems

    def _md_problems(self, md: dict[str, Any]) -> list[str]:
        name, uid = md["metadata"]["name"], md["metadata"]["uid"]
        spec, status = md["spec"], md.get("status") or {}
        replicas = int(spec.get("replicas", 1))
        if status.get("observedGeneration") != md["metadata"]["generation"]:
            return [
                f"observedGeneration {status.get('observedGeneration')} is not "
                f"generation {md['metadata']['generation']}"
            ]
        problems: list[str] = []
        stable = status.get("stable") or {}
        if status.get("phase") != "Ready":
            problems.append(f"phase {status.get('phase')}")
        if status.get("canary"):
            problems.append(f"a canary is left: {status['canary'].get('revision')}")
        if stable.get("version") != spec["model"]["version"]:
            problems.append(f"stable version {stable.get('version')} != {spec['model']['version']}")
        if status.get("readyReplicas") != replicas:
            problems.append(f"status.readyReplicas {status.get('readyReplicas')} != {replicas}")
        history = [h["revision"] for h in status.get("history") or []]
        limit = int(spec.get("revisionHistoryLimit", 3))
        if len(history) > limit + 1:
            problems.append(f"history keeps {len(history)} revisions, limit {limit} (+ stable)")
        if len(set(history)) != len(history):
            problems.append(f"history names a revision twice: {history}")
        revision = stable.get("revision", "")

        # Deployments: exactly the stable and the kept history, one each, all ours
        deployments = self.owned("Deployment", name)
        wanted = {deployment_name(name, r) for r in {revision, *history}}
        have = [d["metadata"]["name"] for d in deployments]
        if sorted(have) != sorted(wanted):
            problems.append(f"Deployments {sorted(have)}, status names {sorted(wanted)}")
        for d in deployments:
            problems.extend(_ownership(d, uid))
            replicas_now = d["spec"].get("replicas")
            is_stable = d["metadata"]["name"] == deployment_name(name, revision)
            if is_stable and replicas_now != replicas:
                problems.append(f"stable Deployment has {replicas_now} replicas, not {replicas}")
            if not is_stable and replicas_now != 0:
                problems.append(f"old Deployment {d['metadata']['name']} has {replicas_now}")

        # Services: <name> and <name>-stable, selecting what they should
        services = {s["metadata"]["name"]: s for s in self.owned("Service", name)}
        wanted_services = {service_name(name), service_name(name, "stable")}
        if set(services) != wanted_services:
            problems.append(f"Services {sorted(services)}, expected {sorted(wanted_services)}")
        for svc in services.values():
            problems.extend(_ownership(svc, uid))
        selector = (services.get(service_name(name, "stable")) or {}).get("spec", {}).get(
            "selector"
        ) or {}
        if services and selector.get(REVISION_LABEL) != revision:
            problems.append(f"{name}-stable selects {selector}, stable is {revision}")
        whole = (services.get(service_name(name)) or {}).get("spec", {}).get("selector")
        if services and whole != {MD_LABEL: name}:
            problems.append(f"Service {name} selects {whole}")

        # Pods: exactly `replicas` of the stable revision, all Ready
        pods = self.owned("Pod", name)
        revisions = sorted(
            {(p["metadata"].get("labels") or {}).get(REVISION_LABEL, "") for p in pods}
        )
        ready = sum(1 for p in pods if _pod_ready(p))
        if len(pods) != replicas or revisions not in ([revision], []) or ready != replicas:
            problems.append(f"{len(pods)} pods ({ready} Ready) of revisions {revisions}")
        return problems

    def _orphans(self) -> list[str]:
        """Children whose ModelDeployment is gone, or is another object of the same name."""
        problems = []
        for kind in ("Deployment", "Service"):
            for child in self.children[kind]:
                meta = child["metadata"]
                if meta.get("deletionTimestamp"):
                    continue
                owner = (meta.get("labels") or {}).get(MD_LABEL, "")
                md = self.mds.get(owner)
                if md is None or md["metadata"].get("deletionTimestamp"):
                    problems.append(f"orphan {kind} {meta['name']} (no ModelDeployment {owner})")
        return problems


def _ownership(child: Mapping[str, Any], uid: str) -> list[str]:
    refs = [r for r in child["metadata"].get("ownerReferences") or () if r.get("controller")]
    if [r.get("uid") for r in refs] != [uid]:
        return [
            f"{child.get('kind', '')} {child['metadata']['name']} is "
            f"controlled by {[r.get('uid') for r in refs]}, not {uid}"
        ]
    return []


def _label(obj: Mapping[str, Any], key: str) -> str:
    return str((obj["metadata"].get("labels") or {}).get(key, ""))


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or ()
    )


def wait_consistent(
    api: Api, timeout: float, names: Sequence[str] | None = None, what: str = "convergence"
) -> tuple[Snapshot, float]:
    """Wait until the namespace is consistent; the snapshot and the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    next_note = started + 10
    problems: list[str] = []
    while time.monotonic() < deadline:
        try:
            snapshot = Snapshot.read(api)
        except Exception as exc:  # (the API server may be restarting)
            problems = [f"cannot read: {exc}"]
        else:
            problems = snapshot.inconsistencies(names)
            if not problems:
                return snapshot, time.monotonic() - started
        if time.monotonic() >= next_note:  # shown with the output of a slow or failed test
            next_note += 10
            print(f"{what}, {time.monotonic() - started:.0f}s: {problems[:5]}")
        time.sleep(1)
    shown = "\n  ".join(problems[:40])
    raise AssertionError(f"{what}: still {len(problems)} problems after {timeout:.0f}s:\n  {shown}")


# -- watching a rollout for steps that go backwards -----------------------------------------------


@dataclass
class StepRecord:
    revision: str
    started_at: str
    step: int


@dataclass
class StepWatch:
    """Samples every canary's step in a thread; a step that goes back for the same canary (same
    revision, same start) is a rollout that did not resume where it was."""

    api: Api
    period: float = 0.5
    latest: dict[str, StepRecord] = field(default_factory=dict)
    regressions: list[str] = field(default_factory=list)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def sample(self) -> dict[str, StepRecord]:
        # the test thread samples too (around a kill): one read-and-compare at a time, or an
        # older list compared after a newer one would look like a step going back
        with self._lock:
            return self._sample()

    def _sample(self) -> dict[str, StepRecord]:
        seen: dict[str, StepRecord] = {}
        for md in self.api.mds():
            canary = (md.get("status") or {}).get("canary")
            # a canary rolled back, aborted or withdrawn moves no more
            if not canary or canary.get("state") in ("RolledBack", "Aborted", "Withdrawn"):
                continue
            name = md["metadata"]["name"]
            record = StepRecord(canary["revision"], canary.get("startedAt", ""), canary["step"])
            before = self.latest.get(name)
            same = before is not None and (before.revision, before.started_at) == (
                record.revision,
                record.started_at,
            )
            if same and record.step < before.step:  # type: ignore[union-attr]
                self.regressions.append(
                    f"{name}: canary {record.revision} went from step {before.step} "  # type: ignore[union-attr]
                    f"back to {record.step}"
                )
            if before is not None and before.revision == record.revision and not same:
                self.regressions.append(
                    f"{name}: canary {record.revision} restarted "
                    f"({before.started_at} → {record.started_at})"
                )
            seen[name] = record
            self.latest[name] = record
        self.samples += 1
        return seen

    def _run(self) -> None:
        while not self._stop.is_set():
            # an API server restart: the next sample sees it
            with contextlib.suppress(Exception):
                self.sample()
            self._stop.wait(self.period)

    def __enter__(self) -> StepWatch:
        self._thread = threading.Thread(target=self._run, daemon=True, name="step-watch")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


class ReadyFloor:
    """Samples the Ready pods of every ModelDeployment of a namespace in a thread; `breaches`
    lists each time one had fewer than `floor[name]` once it had reached it."""

    def __init__(self, api: Api, floor: Mapping[str, int], period: float = 0.5) -> None:
        self.api, self.floor, self.period = api, dict(floor), period
        self.reached: set[str] = set()
        self.breaches: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="ready-floor")

    def sample(self) -> None:
        ready: dict[str, int] = {}
        for pod in self.api.children()["Pod"]:
            name = (pod["metadata"].get("labels") or {}).get(MD_LABEL, "")
            if not pod["metadata"].get("deletionTimestamp") and _pod_ready(pod):
                ready[name] = ready.get(name, 0) + 1
        for name, floor in self.floor.items():
            if ready.get(name, 0) >= floor:
                self.reached.add(name)
            elif name in self.reached:
                self.breaches.append(f"{name}: {ready.get(name, 0)} Ready pods < {floor}")
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period)

    def __enter__(self) -> ReadyFloor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# -- the operator and the control plane -----------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident memory of a process from /proc/<pid>/status (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def running(pid: int) -> bool:
    """Whether any thread of a process still runs (a zombie that nobody reaped yet does not).

    Every thread counts: a killed Go server's main thread turns zombie while its other threads
    are still exiting, and their open files (its listening socket) close only with the last one.
    Checking the main thread alone let `up` start the next API server while the killed one still
    held its port (`bind: address already in use`, a fresh-clone run on a loaded machine)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return False
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # exited between the listing and the read
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            return True
    return False


def operator_pid(op: Operator) -> int:
    assert op.proc is not None and op.proc.poll() is None, f"operator is down: {op.log_tail()}"
    return op.proc.pid


OperatorFactory = Callable[..., Operator]


@pytest.fixture
def operators(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> Iterator[OperatorFactory]:
    """Start operators that watch only this test's namespace; each is stopped afterwards."""
    started: list[Operator] = []

    def start(*extra_args: str, log_name: str = "") -> Operator:
        log_dir = tmp_path / (log_name or f"operator-{len(started)}")
        log_dir.mkdir()
        op = Operator(cluster, log_dir, namespaces=[namespace], extra_args=extra_args)
        started.append(op)
        op.start()
        return op

    yield start
    for op in started:
        op.stop()


@pytest.fixture
def operator(operators: OperatorFactory) -> Operator:
    return operators()


@pytest.fixture
def k(cluster: Cluster, namespace: str) -> Driver:
    return Driver(cluster, namespace)


@pytest.fixture
def api(cluster: Cluster, namespace: str) -> Iterator[Api]:
    client = Api(cluster, namespace)
    yield client
    client.close()


@dataclass(frozen=True)
class ControlPlane:
    """Restarts one component of the local control plane (etcd, kube-apiserver, ...)."""

    cluster: Cluster
    directory: Path

    def restart(self, component: str, crash: bool) -> float:
        """Stop `component` and start it again; the seconds until the cluster is ready again.

        crash: SIGKILL it (what a crash or an OOM kill does), then `hack/cluster.sh up` starts
        what is not running. Otherwise `hack/cluster.sh restart` (SIGTERM; kube-apiserver then
        drains its watches for about a minute before it exits).
        """
        started = time.monotonic()
        script = ["bash", str(ROOT / "hack" / "cluster.sh")]
        if crash:
            pid_file = self.directory / "pids" / f"{component}.pid"
            pid = int(pid_file.read_text())
            os.killpg(pid, signal.SIGKILL)  # started with setsid: its pid is its group
            until(f"{component} to exit", lambda: not running(pid), 30, 0.1)
            pid_file.unlink()  # as `restart` does: `up` takes a recorded dead pid for a failure
            command = [*script, "up"]
        else:
            command = [*script, "restart", component]
        done = subprocess.run(
            command, env=self.cluster.env, capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, (
            f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}{done.stdout}"
        )
        return time.monotonic() - started


@pytest.fixture
def control_plane(cluster: Cluster) -> ControlPlane:
    if os.environ.get("SLIPWAY_TEST_EXISTING_CLUSTER") == "1":
        pytest.fail(
            "restarting etcd and kube-apiserver needs the local control plane (hack/cluster.sh); "
            "unset SLIPWAY_TEST_EXISTING_CLUSTER"
        )
    directory = Path(os.environ.get("SLIPWAY_CLUSTER_DIR", ROOT / ".cluster"))
    return ControlPlane(cluster, directory)


@pytest.fixture
def peering_crds(cluster: Cluster) -> None:
    """kopf's peering CRDs (from the chart), Established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PEERING_CRDS_FILE))
    for crd in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd}")


def seeded(test: str) -> random.Random:
    """A random generator per test, reproducible with SLIPWAY_CHAOS_SEED."""
    return random.Random(f"{SEED}-{test}")


def until(what: str, check: Callable[[], Any], timeout: float, period: float = 0.5) -> Any:
    """Poll `check` until it is truthy; its value, or AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # (the API server may be restarting)
            last = exc
        else:
            if last:
                return last
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
