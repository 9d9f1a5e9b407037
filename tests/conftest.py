"""Test harness: markers by folder, and a real Kubernetes cluster for integration and e2e tests.

The cluster is the project's local control plane (hack/cluster.sh: etcd, kube-apiserver,
controller-manager, scheduler, KWOK), brought up once per session, or the cluster in KUBECONFIG
when SLIPWAY_TEST_EXISTING_CLUSTER=1 (kind, or a real one). Each test gets its own namespace.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CRD_FILE = ROOT / "crds" / "serving.slipway.dev_modeldeployments.yaml"


def wait_until(
    what: str, check: Callable[[], Any], timeout: float = 60, every: float = 0.25
) -> Any:
    """Poll `check` until it returns something truthy, and return that; or fail, saying what."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in ("unit", "integration", "e2e", "hostclean"):
            item.add_marker(getattr(pytest.mark, parts[0]))
        if parts[:2] == ("e2e", "realnode"):
            item.add_marker(pytest.mark.realnode)


@dataclass(frozen=True)
class Cluster:
    """A reachable Kubernetes cluster and the tools to drive it."""

    kubeconfig: Path
    bin_dir: Path | None

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        if self.bin_dir is not None:
            env["PATH"] = f"{self.bin_dir}:{env['PATH']}"
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raise with its stderr when check and it fails."""
        proc = subprocess.run(
            ["kubectl", *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
        return proc


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    if os.environ.get("SLIPWAY_TEST_EXISTING_CLUSTER") == "1":
        kubeconfig = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
        return Cluster(kubeconfig=Path(kubeconfig), bin_dir=None)
    subprocess.run(["bash", str(ROOT / "hack" / "cluster.sh"), "up"], check=True)
    # hack/cluster.sh honours SLIPWAY_CLUSTER_DIR too (a second cluster beside the default one)
    cluster_dir = Path(os.environ.get("SLIPWAY_CLUSTER_DIR", ROOT / ".cluster"))
    return Cluster(kubeconfig=cluster_dir / "kubeconfig", bin_dir=cluster_dir / "bin")


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    """The ModelDeployment CRD, applied and Established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/modeldeployments.serving.slipway.dev",
    )


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for it to go)."""
    name = f"t-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(c for c in name if c.isalnum() or c == "-")
    cluster.kubectl("create", "namespace", name)
    # the ServiceAccount controller must create "default" before pods can be admitted
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0:
            break
        time.sleep(0.2)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
