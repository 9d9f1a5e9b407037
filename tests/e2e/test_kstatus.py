"""What Flux, Helm 4 (--wait) and kpt believe about a ModelDeployment (issue 12, section 1): the
real kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, built by
hack/kstatus/build.sh) run on live objects, driven through every phase.

kstatus reads Reconciling (True: InProgress), Stalled (True: Failed) and observedGeneration: a
rollout in flight or waiting for a person must never read as Current (done), and one that failed
must read as Failed rather than wait forever.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Cluster
from tests.e2e.conftest import Driver, OperatorFactory, canary_model_deployment
from tests.unit.test_argocd_health import run_health_check

ACTION = "serving.slipway.dev/action"
V2 = {"model": {"version": "2.0.0", "uri": "s3://models/m/2.0.0"}}
CRASH = {"template": {"labels": {"slipway.test/fault": "crash"}}}

# what each situation must read as: (phase, kstatus, Argo CD's health.lua) (the README's table)
EXPECTED = {
    "created, not observed yet": ("Pending", "InProgress", "Progressing"),
    "first revision Ready": ("Ready", "Current", "Healthy"),
    "canary in flight": ("Progressing", "InProgress", "Progressing"),
    "canary paused, waiting for promotion": ("Paused", "InProgress", "Suspended"),
    "canary paused by the user": ("Paused", "InProgress", "Suspended"),
    "promoted": ("Ready", "Current", "Healthy"),
    "rolled back": ("RolledBack", "Failed", "Degraded"),
    "aborted": ("RolledBack", "Failed", "Degraded"),
    "Degraded stable (crash-looping pods)": ("Degraded", "Failed", "Degraded"),
    "Ready, HTTPRoute missing": ("Ready", "Current", "Degraded"),
    "spec cannot be served, nothing deployed": ("Failed", "Failed", "Degraded"),
    # the last status written says Ready; the spec changed since
    "a spec not yet observed": ("Ready", "InProgress", "Progressing"),
}


@pytest.fixture(scope="module")
def kstatus() -> str:
    built = subprocess.run(
        ["bash", str(ROOT / "hack" / "kstatus" / "build.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return built.stdout.strip()


class Reader:
    """Runs kstatus, and Argo CD's health check, on the live ModelDeployments of a namespace."""

    def __init__(self, binary: str, k: Driver, tmp_path: Path) -> None:
        self.binary, self.k, self.tmp_path = binary, k, tmp_path
        self.table: dict[str, tuple[str, str, str, str]] = {}

    def compute(self, live: str) -> dict[str, str]:
        out = subprocess.run(
            [self.binary], input=live, capture_output=True, text=True, check=True, timeout=30
        ).stdout
        return dict(json.loads(out))

    def record(self, case: str, name: str) -> None:
        """kstatus's verdict on `name` in this `case`, once the phase is the expected one."""
        phase, expected, argo = EXPECTED[case]

        def settled() -> tuple[str, str, str, str] | None:
            live = self.k.cluster.kubectl("get", "md", name, "-n", self.k.ns, "-o", "json").stdout
            obj = json.loads(live)
            seen = (obj.get("status") or {}).get("phase")  # Pending: the CRD's default
            if seen != phase:
                return None
            result = self.compute(live)
            health, _ = run_health_check(obj, self.tmp_path)
            return seen, result["status"], result["message"], health

        seen, status, message, health = self.k.wait(f"{name} to be {phase}", settled)
        self.table[case] = (seen, status, health, message)
        assert status == expected, f"{case}: kstatus says {status} ({message})"
        assert health == argo, f"{case}: Argo CD says {health}"


@pytest.fixture
def reader(kstatus: str, k: Driver, tmp_path: Path) -> Iterator[Reader]:
    r = Reader(kstatus, k, tmp_path)
    yield r
    lines = [f"| {case} | `{p}` | **{s}** | {h} | {m} |" for case, (p, s, h, m) in r.table.items()]
    print("\n" + "\n".join(lines))


def md(name: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    body = canary_model_deployment(name, steps, replicas=2, model_format="xgboost")
    body["spec"]["rollout"]["progressDeadlineSeconds"] = 60
    body["spec"].update(spec)
    return body


@pytest.mark.usefixtures("kwok_faults")
def test_kstatus_reads_every_phase_as_flux_and_helm_should(
    k: Driver, cluster: Cluster, own_operators: OperatorFactory, reader: Reader
) -> None:
    # no operator runs yet: nothing has looked at the spec
    k.apply(md("fresh", []))
    reader.record("created, not observed yet", "fresh")
    op = own_operators()
    reader.record("first revision Ready", "fresh")

    timed = [{"setWeight": 50}, {"pause": {"duration": "1h"}}]
    waiting = [{"setWeight": 50}, {"pause": {}}]
    for name, steps in (("inflight", timed), ("waiting", waiting), ("paused", timed),
                        ("crashing", timed), ("aborted", timed)):  # fmt: skip
        k.apply(md(name, steps))
    k.apply(md("routed", timed, rollout={
        "strategy": "Canary", "steps": timed,
        "trafficRouting": {"gatewayAPI": {"httpRoute": "no-such-route"}},
    }))  # fmt: skip
    unservable = md("unservable", [])
    unservable["spec"]["model"]["uri"] = "pvc://no-such-claim/m"
    k.apply(unservable)
    for name in ("inflight", "waiting", "paused", "crashing", "aborted", "routed"):
        k.wait_phase(name, "Ready")
    for name in ("inflight", "waiting", "paused", "aborted"):
        k.patch("md", name, {"spec": V2})
    k.patch("md", "crashing", {"spec": {**V2, **CRASH}})

    reader.record("canary in flight", "inflight")
    reader.record("canary paused, waiting for promotion", "waiting")
    k.wait("the canary of paused", lambda: k.md("paused")["status"].get("canary") or {})
    k.cluster.kubectl("annotate", "md/paused", f"{ACTION}=pause", "-n", k.ns)
    reader.record("canary paused by the user", "paused")
    k.cluster.kubectl("annotate", "md/waiting", f"{ACTION}=promote-full", "-n", k.ns)
    reader.record("promoted", "waiting")
    reader.record("rolled back", "crashing")
    k.wait("the canary of aborted", lambda: k.md("aborted")["status"].get("canary") or {})
    k.cluster.kubectl("annotate", "md/aborted", f"{ACTION}=abort", "-n", k.ns)
    reader.record("aborted", "aborted")
    reader.record("Ready, HTTPRoute missing", "routed")
    reader.record("spec cannot be served, nothing deployed", "unservable")

    # a stable whose pods start crash-looping (KWOK plays the crash for the relabelled pod)
    [pod, *_] = k.items("pods", "serving.slipway.dev/modeldeployment=fresh")
    k.cluster.kubectl(
        "label", "pod", pod["metadata"]["name"], "-n", k.ns, "slipway.test/fault=crash"
    )
    reader.record("Degraded stable (crash-looping pods)", "fresh")

    # the operator is away while the spec changes
    op.stop()
    k.patch("md", "waiting", {"spec": {"replicas": 3}})
    reader.record("a spec not yet observed", "waiting")
