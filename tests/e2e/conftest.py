"""The operator as a real process (`slipway run`) against the test cluster, and test helpers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, Cluster, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    """One `slipway run` process; can be killed and restarted mid-test."""

    def __init__(
        self,
        cluster: Cluster,
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
        kubeconfig: Path | None = None,
        namespaces: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ):
        self.cluster = cluster
        self.log_dir = log_dir
        self.extra_env = extra_env or {}
        # another identity than the cluster's admin (tests/e2e/test_rbac.py: the chart's own)
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.namespaces = tuple(namespaces)  # empty: --all-namespaces
        self.extra_args = list(extra_args)  # e.g. --peering NAME --priority N
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.starts = 0

    def start(self) -> None:
        self.metrics_port = free_port()
        self.starts += 1
        log = open(self.log_dir / f"operator-{self.starts}.log", "wb")  # noqa: SIM115
        env = {
            **self.cluster.env,
            **self.extra_env,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONUNBUFFERED": "1",
        }
        # another source tree for the operator only (e.g. an older commit, to show that a test
        # fails there): the tests themselves keep importing this tree's slipway
        if source := os.environ.get("SLIPWAY_TEST_OPERATOR_PYTHONPATH"):
            env["PYTHONPATH"] = source
        scope = [a for ns in self.namespaces for a in ("--namespace", ns)] or ["--all-namespaces"]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "slipway",
                "run",
                *scope,
                "--kubeconfig",
                str(self.kubeconfig),
                "--metrics-port",
                str(self.metrics_port),
                "--metrics-address",
                "127.0.0.1",
                "--log-level",
                "info",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"operator exited with {self.proc.returncode}: {self.log_tail()}"
                )
            try:
                self.scrape()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"operator metrics never answered: {self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def scrape(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return str(r.read().decode())

    def metric(self, name: str, /, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (a label may be "name")."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(self.scrape()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_dir / f"operator-{self.starts}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def log(self) -> str:
        """Everything the current process logged so far."""
        path = self.log_dir / f"operator-{self.starts}.log"
        return path.read_text(errors="replace") if path.exists() else ""


class InClusterOperator(Operator):
    """The operator the chart installed in the cluster (SLIPWAY_TEST_OPERATOR=external, as
    hack/e2e-kind.sh runs the suite): stopped and started by scaling its Deployment, scraped
    through the API server's service proxy."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        super().__init__(cluster, Path.cwd())
        self.namespace = namespace
        self.name = name

    def start(self) -> None:
        self.starts += 1
        self.cluster.kubectl("scale", "deployment", self.name, "-n", self.namespace, "--replicas=1")
        self.cluster.kubectl(
            "rollout", "status", "deployment", self.name, "-n", self.namespace, "--timeout=180s"
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.scrape()
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.cluster.kubectl("scale", "deployment", self.name, "-n", self.namespace, "--replicas=0")
        pods = ["pods", "-n", self.namespace, "-l", f"app.kubernetes.io/instance={self.release}"]
        if sig == signal.SIGKILL:
            self.cluster.kubectl("delete", *pods, "--grace-period=0", "--force", check=False)
        self.cluster.kubectl("wait", "--for=delete", *pods, "--timeout=60s", check=False)

    @property
    def release(self) -> str:
        deployment = self.cluster.kubectl(
            "get", "deployment", self.name, "-n", self.namespace, "-o", "json"
        ).stdout
        return str(json.loads(deployment)["metadata"]["labels"]["app.kubernetes.io/instance"])

    def scrape(self) -> str:
        service = f"/api/v1/namespaces/{self.namespace}/services/{self.name}-metrics:metrics"
        path = f"{service}/proxy/metrics"
        return self.cluster.kubectl("get", "--raw", path, timeout=10).stdout

    def log_tail(self, lines: int = 40) -> str:
        proc = self.cluster.kubectl(
            "logs", f"deployment/{self.name}", "-n", self.namespace, f"--tail={lines}", check=False
        )
        return proc.stdout + proc.stderr


def stop_demo_operator(cluster: Cluster) -> None:
    """`make demo` leaves an operator running on the local cluster; two would fight over the
    tests' objects, so the suite stops it (`make demo` starts it again)."""
    if cluster.bin_dir is None:
        return
    pidfile = cluster.kubeconfig.parent / "pids" / "operator.pid"
    if not pidfile.exists():
        return
    with contextlib.suppress(ProcessLookupError, ValueError):
        os.killpg(int(pidfile.read_text()), signal.SIGTERM)
    pidfile.unlink()


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    op: Operator
    stop_demo_operator(cluster)
    if os.environ.get("SLIPWAY_TEST_OPERATOR") == "external":
        # the chart's operator serves the suite; no local process competes with it
        op = InClusterOperator(
            cluster,
            os.environ.get("SLIPWAY_TEST_OPERATOR_NAMESPACE", "slipway-system"),
            os.environ.get("SLIPWAY_TEST_OPERATOR_NAME", "slipway"),
        )
        op.start()
        yield op
        return
    op = Operator(cluster, tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="session")
def prometheus(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real Prometheus for the session (tests/e2e/prom.py), started by the first test that
    needs it."""
    from tests.e2e.prom import session_prometheus

    with session_prometheus(cluster, tmp_path_factory.mktemp("prometheus")) as started:
        yield started


@pytest.fixture(scope="session")
def kwok_faults(cluster: Cluster) -> None:
    """Skip a test that plays a bad canary with KWOK's fault stages (hack/kwok-fault-stages.yaml:
    pods labelled slipway.test/fault stay NotReady or crash): only KWOK's simulated nodes have
    them; on kind such pods would simply run."""
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    # where a pod without tolerations can land (the real node is tainted)
    open_nodes = [
        n
        for n in nodes
        if not any(
            t.get("effect") in ("NoSchedule", "NoExecute") for t in n["spec"].get("taints") or ()
        )
    ]
    if not open_nodes or not all(
        (n["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake"
        for n in open_nodes
    ):
        pytest.skip("needs KWOK nodes: the slipway.test/fault labels are KWOK stages")


def load_example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "examples" / name).read_text()))


def canary_model_deployment(
    name: str,
    steps: list[dict[str, Any]],
    *,
    version: str = "1.0.0",
    replicas: int = 2,
    model_format: str = "sklearn",
    **rollout: Any,
) -> dict[str, Any]:
    """A small ModelDeployment with a Canary strategy of `steps`; `rollout` adds fields to it."""
    return {
        "apiVersion": "serving.slipway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "version": version,
                "uri": f"s3://models/{name}/{version}",
                "format": model_format,
            },
            "replicas": replicas,
            "rollout": {
                "strategy": "Canary",
                "steps": steps,
                "scaleDownDelaySeconds": 1,
                **rollout,
            },
        },
    }


class Driver:
    """Small verbs over kubectl for one namespace."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace

    def apply(self, obj: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "-n", self.ns, "-f", "-", input=json.dumps(obj))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        proc = self.cluster.kubectl("get", kind, name, "-n", self.ns, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        return dict(json.loads(proc.stdout))

    def md(self, name: str) -> dict[str, Any]:
        obj = self.get("modeldeployment", name)
        assert obj is not None, f"modeldeployment {name} is gone"
        return obj

    def items(self, kind: str, selector: str) -> list[dict[str, Any]]:
        out = self.cluster.kubectl("get", kind, "-n", self.ns, "-l", selector, "-o", "json").stdout
        return list(json.loads(out)["items"])

    def patch(self, kind: str, name: str, patch: Any, type_: str = "merge") -> None:
        self.cluster.kubectl(
            "patch", kind, name, "-n", self.ns, "--type", type_, "-p", json.dumps(patch)
        )

    def plugin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from slipway.cli import kubectl_main; raise SystemExit(kubectl_main())",
                "-n",
                self.ns,
                *args,
            ],
            capture_output=True,
            text=True,
            env=self.cluster.env,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl slipway {' '.join(args)}: {proc.stderr}{proc.stdout}")
        return proc

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
        return wait_until(what, check, timeout)

    def wait_phase(self, name: str, phase: str, timeout: float = 90) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            md = self.md(name)
            status = md.get("status") or {}
            fresh = status.get("observedGeneration") == md["metadata"]["generation"]
            return md if fresh and status.get("phase") == phase else None

        result: dict[str, Any] = self.wait(f"{name} to be {phase}", check, timeout)
        return result

    def ready_pods(self, name: str) -> int:
        pods = self.items("pods", f"serving.slipway.dev/modeldeployment={name}")
        return sum(
            1
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (p.get("status") or {}).get("conditions") or []
            )
        )


@pytest.fixture
def k(cluster: Cluster, namespace: str) -> Driver:
    return Driver(cluster, namespace)


OperatorFactory = Callable[..., Operator]


@pytest.fixture
def own_operators(
    operator: Operator, cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[OperatorFactory]:
    """Start operators of the test's own, watching only its namespace, with extra arguments and
    environment; the suite's operator is stopped meanwhile (it would act on the namespace too)
    and started again afterwards."""
    if isinstance(operator, InClusterOperator):
        pytest.skip("needs operator processes of its own; the suite's runs in the cluster")
    operator.stop()
    started: list[Operator] = []

    def start(*args: str, env: dict[str, str] | None = None, name: str = "") -> Operator:
        log_dir = tmp_path / (name or f"operator-{len(started)}")
        log_dir.mkdir()
        op = Operator(cluster, log_dir, extra_env=env, namespaces=[namespace], extra_args=args)
        started.append(op)
        op.start()
        return op

    try:
        yield start
    finally:
        for op in started:
            op.stop()
        operator.start()
