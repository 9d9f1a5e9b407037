"""Capture the samples of actions/testdata/ from real ModelDeployments on the local cluster.

Starts the local cluster (hack/cluster.sh), the operator (`slipway run`) and, for the Inconclusive
sample, a Prometheus that has no data; drives ModelDeployments into each state a user can act on
and writes `kubectl get md -o yaml` of each (managedFields and kubectl's last-applied annotation
stripped, as in ../testdata/). The outputs of the action cases are the inputs with the annotation
an action writes, added here in Python, independently of the Lua under test.

    .venv/bin/python integrations/argocd/capture_testdata.py

Run it after a change of the status the operator writes; then check the diff of actions/testdata/.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import Cluster  # noqa: E402
from tests.e2e.conftest import Driver, Operator, canary_model_deployment, free_port  # noqa: E402

OUT = (
    Path(__file__).resolve().parent
    / "resource_customizations"
    / "serving.slipway.dev"
    / "ModelDeployment"
    / "actions"
)
NAMESPACE = "ml"
V2 = {"model": {"version": "2.0.0", "uri": "s3://models/fraud/2.0.0"}}
ACTION_ANNOTATION = "serving.slipway.dev/action"
# (input sample, action): the output sample is the input with the action's annotation
ACTION_CASES = [
    ("waiting-for-promotion", "promote"),
    ("waiting-for-promotion", "promote-full"),
    ("canary-progressing", "abort"),
    ("aborted", "retry"),
    ("canary-progressing", "pause"),
    ("paused-by-user", "resume"),
]


def wait(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise SystemExit(f"timed out waiting for {what}")


def progressing_reason(md: dict[str, Any]) -> str | None:
    for c in (md.get("status") or {}).get("conditions") or []:
        if c["type"] == "Progressing":
            return str(c.get("reason"))
    return None


def settled(k: Driver, name: str, phase: str, reason: str | None = None) -> dict[str, Any]:
    """The object once the operator saw its spec, it is in `phase` (with that Progressing
    reason), and a running canary has all the pods it asked for Ready."""

    def check() -> dict[str, Any] | None:
        md = k.md(name)
        status = md.get("status") or {}
        canary = status.get("canary") or {}
        running = canary and not canary.get("aborted") and not canary.get("failureReason")
        if (
            status.get("observedGeneration") == md["metadata"]["generation"]
            and status.get("phase") == phase
            and reason in (None, progressing_reason(md))
            and (not running or canary.get("readyReplicas", 0) >= canary.get("replicas", 0))
        ):
            return md
        return None

    result: dict[str, Any] = wait(f"{name}: {phase} {reason or ''}", check)
    return result


def sample(obj: dict[str, Any]) -> dict[str, Any]:
    obj = json.loads(json.dumps(obj))
    meta = obj["metadata"]
    meta.pop("managedFields", None)
    annotations = meta.get("annotations") or {}
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if not annotations:
        meta.pop("annotations", None)
    return obj


def write(name: str, obj: dict[str, Any]) -> None:
    path = OUT / "testdata" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(obj, sort_keys=True, width=100))
    print(f"wrote {path.relative_to(ROOT)}")


def act(k: Driver, name: str, action: str) -> None:
    k.cluster.kubectl("annotate", "md", name, "-n", k.ns, f"{ACTION_ANNOTATION}={action}")


def empty_prometheus(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = subprocess.run(
        ["bash", str(ROOT / "hack" / "prometheus.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    (work / "prometheus.yml").write_text("global: {scrape_interval: 1s}\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def capture(k: Driver, operator: Operator, prometheus: str) -> dict[str, dict[str, Any]]:
    samples: dict[str, dict[str, Any]] = {}
    crash = {"template": {"labels": {"slipway.test/fault": "crash"}}}

    k.apply(canary_model_deployment("fraud", [{"setWeight": 25}, {"pause": {}}], replicas=4))
    samples["ready"] = settled(k, "fraud", "Ready")
    k.patch("md", "fraud", {"spec": V2})
    samples["waiting-for-promotion"] = settled(k, "fraud", "Paused", "WaitingForPromotion")

    k.apply(canary_model_deployment("search", [{"setWeight": 25}, {"pause": {"duration": "1h"}}]))
    settled(k, "search", "Ready")
    k.patch("md", "search", {"spec": V2})
    samples["canary-progressing"] = settled(k, "search", "Progressing", "CanaryProgressing")
    act(k, "search", "pause")
    samples["paused-by-user"] = settled(k, "search", "Paused", "RolloutPaused")
    act(k, "search", "abort")
    samples["aborted"] = settled(k, "search", "RolledBack")

    k.apply(canary_model_deployment("reco", [{"setWeight": 50}, {"pause": {}}]))
    settled(k, "reco", "Ready")
    k.patch("md", "reco", {"spec": {**V2, **crash}})
    samples["rolled-back"] = settled(k, "reco", "RolledBack")

    held = canary_model_deployment("held", [{"setWeight": 50}, {"pause": {}}], autoRollback=False)
    k.apply(held)
    settled(k, "held", "Ready")
    k.patch("md", "held", {"spec": {**V2, **crash}})
    samples["degraded-canary-held"] = settled(k, "held", "Degraded")

    analysis = {
        "interval": "2s",
        "prometheus": {"address": prometheus},
        "metrics": [
            {
                "name": "error-rate",
                "query": 'sum(rate(http_requests_total{revision="{{canary.revision}}",code="500"}'
                '[10s])) / sum(rate(http_requests_total{revision="{{canary.revision}}"}[10s]))',
                "max": 0.05,
            }
        ],
    }
    k.apply(canary_model_deployment("ads", [{"setWeight": 50}, {"pause": {}}], analysis=analysis))
    settled(k, "ads", "Ready")
    k.patch("md", "ads", {"spec": V2})
    samples["paused-inconclusive"] = settled(k, "ads", "Paused", "AnalysisInconclusive")

    # the operator away: a spec it has not observed, and a ModelDeployment with no status yet
    operator.stop()
    k.patch("md", "fraud", {"spec": {"replicas": 5}})
    samples["stale-generation"] = k.md("fraud")
    k.apply(canary_model_deployment("new", [{"setWeight": 25}, {"pause": {}}]))
    samples["pending"] = k.md("new")
    return samples


def main() -> None:
    subprocess.run(["bash", str(ROOT / "hack" / "cluster.sh"), "up"], check=True)
    cluster = Cluster(ROOT / ".cluster" / "kubeconfig", ROOT / ".cluster" / "bin")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
    cluster.kubectl("create", "namespace", NAMESPACE)
    wait(
        "the default ServiceAccount",
        lambda: (
            cluster.kubectl("get", "sa", "default", "-n", NAMESPACE, check=False).returncode == 0
        ),
    )
    work = Path(tempfile.mkdtemp(prefix="slipway-argocd-"))
    prometheus, address = empty_prometheus(work)
    operator = Operator(cluster, work)
    operator.start()
    try:
        samples = capture(Driver(cluster, NAMESPACE), operator, address)
    finally:
        operator.stop()
        prometheus.terminate()
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
    (OUT / "testdata").mkdir(exist_ok=True)
    for old in (OUT / "testdata").glob("*.yaml"):
        old.unlink()
    for name, obj in samples.items():
        write(name, sample(obj))
    for name, action in ACTION_CASES:
        acted = sample(samples[name])
        acted["metadata"].setdefault("annotations", {})[ACTION_ANNOTATION] = action
        write(f"{name}-{action}", acted)


if __name__ == "__main__":
    main()
