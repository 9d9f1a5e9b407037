"""Who did it (issue 14), end to end: people act on a ModelDeployment through `kubectl slipway --as`
(the chart's admission policies on, RBAC on), a GitOps controller applies a spec with its own field
manager, and the operator records each of them in status.history, the canary's actions, the Events
and `kubectl slipway history`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster
from tests.e2e.conftest import Driver
from tests.governance import ARGOCD_CONTROLLER, Governance, governed, model_deployment

pytestmark = pytest.mark.usefixtures("operator")

STEPS = [{"setWeight": 50}, {"pause": {}}]


@pytest.fixture
def gov(cluster: Cluster, crds: None, namespace: str) -> Iterator[Governance]:
    with governed(cluster, namespace) as g:
        g.bind("alice", "edit")
        g.bind("paula", g.role("approver"))
        g.bind("olga", g.role("approver"))
        g.bind(ARGOCD_CONTROLLER, "admin")
        yield g


def fraud(version: str) -> dict[str, Any]:
    md = model_deployment("fraud", version, replicas=2)
    md["spec"]["rollout"] = {"strategy": "Canary", "steps": STEPS, "scaleDownDelaySeconds": 1}
    return md


def status(k: Driver) -> dict[str, Any]:
    return dict(k.md("fraud").get("status") or {})


def events(k: Driver, reason: str) -> list[str]:
    out = k.cluster.kubectl("get", "events", "-n", k.ns, "-o", "json").stdout
    return [
        e["message"]
        for e in json.loads(out)["items"]
        if e["reason"] == reason and e["involvedObject"]["name"] == "fraud"
    ]


def waiting_at_pause(k: Driver, version: str) -> dict[str, Any]:
    result: dict[str, Any] = k.wait(
        f"{version} paused at 50 %",
        lambda: (
            (s := status(k)).get("phase") == "Paused"
            and (s.get("canary") or {}).get("version") == version
            and s
        ),
    )
    return result


def stable_at(k: Driver, version: str) -> dict[str, Any]:
    result: dict[str, Any] = k.wait(
        f"{version} stable and Ready",
        lambda: (
            (s := status(k)).get("phase") == "Ready"
            and (s.get("stable") or {}).get("version") == version
            and not s.get("canary")
            and s
        ),
    )
    return result


def test_who_applied_promoted_aborted_and_undid_is_recorded(gov: Governance, k: Driver) -> None:
    created = gov.kubectl_as("alice", "apply", "-f", "-", input=json.dumps(fraud("1.0.0")))
    assert created.returncode == 0, created.stderr
    stable_at(k, "1.0.0")
    gov.kubectl_as("alice", "apply", "-f", "-", input=json.dumps(fraud("2.0.0")))
    waiting_at_pause(k, "2.0.0")

    refused = k.plugin("--as", "alice", "promote", "fraud", check=False)
    assert refused.returncode == 1
    assert "the 'promote' verb on modeldeployments.serving.slipway.dev is needed" in refused.stderr
    # resuming at a pause that waits for a promotion promotes: the editor may not do it either
    refused = k.plugin("--as", "alice", "resume", "fraud", check=False)
    assert refused.returncode == 1
    assert "at a pause that waits for a promotion" in refused.stderr
    assert "the 'promote' verb" in refused.stderr
    assert status(k)["phase"] == "Paused"

    k.plugin("--as", "paula", "promote", "fraud")
    st = stable_at(k, "2.0.0")
    new, first = st["history"]
    assert (new["promotedBy"], new["promotion"], new["appliedBy"]) == ("paula", "Promote", "alice")
    assert (first["promotedBy"], first["promotion"], first["appliedBy"]) == (
        "alice",
        "Initial",
        "alice",
    )
    assert (first["endReason"], first["endedBy"]) == ("PromotedOver", "paula")
    k.wait(
        "the Promoted Event",
        lambda: any("promoted by paula (Promote)" in m for m in events(k, "Promoted")),
    )

    # a GitOps sync applies 3.0.0: the canary says it came from Argo CD
    sync = gov.kubectl_as(
        ARGOCD_CONTROLLER, "apply", "--server-side", "--force-conflicts",
        "--field-manager=argocd-controller", "-f", "-", input=json.dumps(fraud("3.0.0")),
    )  # fmt: skip
    assert sync.returncode == 0, sync.stderr
    canary = waiting_at_pause(k, "3.0.0")["canary"]
    assert (canary["appliedBy"], canary["appliedWith"]) == (ARGOCD_CONTROLLER, "argocd-controller")
    k.wait(
        "the CanaryStarted Event",
        lambda: any(
            f"applied by Argo CD sync ({ARGOCD_CONTROLLER})" in m
            for m in events(k, "CanaryStarted")
        ),
    )

    # alice aborts, and tries to put it on eve: the policy stamps who asked, whatever she writes
    forged = gov.kubectl_as(
        "alice", "annotate", "md", "fraud",
        "serving.slipway.dev/action=abort", "serving.slipway.dev/action-by=eve",
    )  # fmt: skip
    assert forged.returncode == 0, forged.stderr
    aborted = k.wait("the abort", lambda: status(k).get("phase") == "RolledBack" and status(k))
    assert [(a["action"], a["by"]) for a in aborted["canary"]["actions"]] == [("abort", "alice")]
    k.wait(
        "the Aborted Event",
        lambda: any(m.endswith("(asked by alice)") for m in events(k, "Aborted")),
    )
    annotations = k.md("fraud")["metadata"]["annotations"]
    assert "serving.slipway.dev/action" not in annotations  # consumed, with its stamp
    assert "serving.slipway.dev/action-by" not in annotations

    # olga undoes 2.0.0: back to 1.0.0 at once
    refused = k.plugin("--as", "alice", "undo", "fraud", check=False)
    assert "the 'undo' verb on modeldeployments.serving.slipway.dev is needed" in refused.stderr
    k.plugin("--as", "olga", "undo", "fraud")
    st = stable_at(k, "1.0.0")
    back, undone = st["history"]
    assert (back["version"], back["promotedBy"], back["promotion"]) == ("1.0.0", "olga", "Undo")
    assert (undone["version"], undone["endReason"], undone["endedBy"]) == (
        "2.0.0",
        "Undone",
        "olga",
    )
    annotations = k.md("fraud")["metadata"]["annotations"]
    assert "serving.slipway.dev/undo-to" not in annotations  # consumed with its stamp
    assert "serving.slipway.dev/undo-by" not in annotations

    history = k.plugin("history", "fraud").stdout
    print("\n" + history)
    lines = history.splitlines()
    assert "olga" in lines[1] and "Undo" in lines[1] and "(stable)" in lines[1]
    assert "paula" in lines[2] and "Undone by olga" in lines[2]
