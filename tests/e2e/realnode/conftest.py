"""Fixtures for tests on the real node (hack/realnode.sh): real pods, real models, real requests.

Every test here needs the node `slipway-real-node`; without it (SLIPWAY_REAL_NODE=0, another
cluster, no root) each is skipped with the reason, which `pytest -ra` prints in its summary.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Cluster
from tests.e2e.conftest import Driver, Operator
from tests.e2e.realnode.models import BRIDGE_IP, ROWS, ModelStore, infer, publish
from tests.fetch_servers import wait_for_http

NODE = "slipway-real-node"
NODE_LABEL = "slipway.test/node"
SECRET = "model-store"
# pods for the real node ask for it: it is tainted so that nothing else lands there
ON_REAL_NODE: dict[str, Any] = {
    "nodeSelector": {NODE_LABEL: "real"},
    "tolerations": [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
}


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> str:
    """The real node's name; skips the test when the cluster has none."""
    proc = cluster.kubectl("get", "node", NODE, "-o", "json", check=False)
    if proc.returncode != 0:
        pytest.skip(
            f"no real node in this cluster ({NODE}): hack/realnode.sh starts it with "
            "`make cluster-up` when run as root and SLIPWAY_REAL_NODE is not 0"
        )
    node = json.loads(proc.stdout)
    ready = any(
        c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", [])
    )
    if not ready:
        pytest.skip(f"the real node {NODE} is not Ready")
    return NODE


@dataclass
class Models:
    store: ModelStore
    trained: dict[str, Path]  # version -> model.joblib


@pytest.fixture(scope="session")
def models(real_node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Models]:
    """The iris models of every version, in an S3 server on the bridge address."""
    store = ModelStore.start()
    try:
        yield Models(store=store, trained=publish(store, "iris", tmp_path_factory.mktemp("models")))
    finally:
        store.stop()


class RealDriver(Driver):
    """A Driver for a namespace where pods can read the model store."""

    def __init__(self, cluster: Cluster, namespace: str, models: Models) -> None:
        super().__init__(cluster, namespace)
        self.models = models
        cluster.kubectl(
            "create", "secret", "generic", SECRET, "-n", namespace,
            *(f"--from-literal={k}={v}" for k, v in models.store.secret().items()),
        )  # fmt: skip

    def cluster_ip(self, service: str) -> str:
        svc = self.get("service", service)
        assert svc is not None, f"service {service} is missing"
        port = svc["spec"]["ports"][0]["port"]
        return f"http://{svc['spec']['clusterIP']}:{port}"

    def routable(self, service: str, model: str = "iris") -> str:
        """The Service's URL once kube-proxy routes it (a new Service takes a sync or two)."""
        url = self.cluster_ip(service)

        def answers() -> bool:
            try:
                infer(url, model, ROWS[:1], timeout=2)
                return True
            except OSError:
                return False

        self.wait(f"kube-proxy to route Service {service}", answers, timeout=30)
        return url

    def pods_ready_on_node(self, name: str) -> list[dict[str, Any]]:
        pods = self.items("pods", f"serving.slipway.dev/modeldeployment={name}")
        return [p for p in pods if p["spec"].get("nodeName") == NODE]


@pytest.fixture
def rk(cluster: Cluster, namespace: str, models: Models, operator: Operator) -> RealDriver:
    """A namespace with the model store's Secret, watched by the suite's operator."""
    return RealDriver(cluster, namespace, models)


def iris(
    version: str = "1.0.0", *, replicas: int = 4, name: str = "iris", **spec: Any
) -> dict[str, Any]:
    """A ModelDeployment of the iris model `version`, from the store, on the real node."""
    template = {**ON_REAL_NODE, **spec.pop("template", {})}
    return {
        "apiVersion": "serving.slipway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "name": "iris",
                "version": version,
                "uri": f"s3://models/iris/{version}",
                "format": "sklearn",
                "storage": {"secretName": SECRET},
            },
            "replicas": replicas,
            "template": template,
            **spec,
        },
    }


def bridge_port() -> int:
    with socket.socket() as sock:
        sock.bind((BRIDGE_IP, 0))
        return int(sock.getsockname()[1])


@dataclass
class PodPrometheus:
    """A real Prometheus scraping the real node's model servers (MLServer's metrics port)."""

    address: str

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            return list(json.loads(response.read())["data"]["result"])


def serving_pod_targets(api: Any) -> list[dict[str, Any]]:
    """Prometheus file_sd targets on the real node (what a PodMonitor or a kubernetes_sd
    relabelling gives; Debian's Prometheus is built without kubernetes_sd):

    - each serving pod, MLServer's metrics port, labelled with its namespace, ModelDeployment,
      revision and name;
    - each operator pod the chart runs there, its metrics port, job slipway-operator.
    """
    from kubernetes import client

    core = client.CoreV1Api(api)
    on_node = f"spec.nodeName={NODE},status.phase=Running"
    targets = []
    for pod in core.list_pod_for_all_namespaces(
        label_selector="serving.slipway.dev/modeldeployment", field_selector=on_node
    ).items:
        labels = pod.metadata.labels or {}
        if pod.status.pod_ip:
            targets.append(
                {
                    "targets": [f"{pod.status.pod_ip}:8082"],
                    "labels": {
                        "namespace": pod.metadata.namespace,
                        "modeldeployment": labels.get("serving.slipway.dev/modeldeployment", ""),
                        "revision": labels.get("serving.slipway.dev/revision", ""),
                        "pod": pod.metadata.name,
                    },
                }
            )
    for pod in core.list_pod_for_all_namespaces(
        label_selector="app.kubernetes.io/name=slipway,!serving.slipway.dev/modeldeployment",
        field_selector=on_node,
    ).items:
        if pod.status.pod_ip:
            targets.append(
                {
                    "targets": [f"{pod.status.pod_ip}:8080"],
                    "labels": {
                        "job": "slipway-operator",
                        "namespace": pod.metadata.namespace,
                        "pod": pod.metadata.name,
                    },
                }
            )
    return sorted(targets, key=lambda t: t["labels"]["pod"])


@pytest.fixture(scope="session")
def pod_prometheus(
    real_node: str, cluster: Cluster, api_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PodPrometheus]:
    """Prometheus scraping the real node's model servers (MLServer's metrics port, 8082) with
    namespace, modeldeployment and revision labels taken from the pods; the targets file is kept
    current every second by a thread of the test. It listens on the bridge address, where pods
    can reach it too."""
    binary = subprocess.run(
        ["bash", str(ROOT / "hack" / "prometheus.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    work = tmp_path_factory.mktemp("pod-prometheus")
    targets = work / "targets.json"
    targets.write_text("[]")
    config = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "scrape_configs": [
            {
                "job_name": "slipway-models",
                "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "5s"}],
            }
        ],
    }
    stop = threading.Event()

    def discover() -> None:
        last = ""
        while not stop.wait(1.0):
            try:
                text = json.dumps(serving_pod_targets(api_client))
            except Exception:  # the API server may be restarting: look again
                continue
            if text != last:
                (work / "targets.tmp").write_text(text)
                (work / "targets.tmp").rename(targets)
                last = text

    threading.Thread(target=discover, name="pod-discovery", daemon=True).start()
    (work / "prometheus.yml").write_text(json.dumps(config))
    address = f"http://{BRIDGE_IP}:{bridge_port()}"
    log = open(work / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address={address.removeprefix('http://')}",
            "--storage.tsdb.retention.time=2h",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_http(f"{address}/-/ready", proc, timeout=60)
    except RuntimeError:
        raise AssertionError((work / "prometheus.log").read_text()[-2000:]) from None
    try:
        yield PodPrometheus(address=address)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
