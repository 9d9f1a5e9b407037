"""The approval gate (issue 14), end to end with the chart's governance policies on: a canary waits
at an approval step for `requiredApprovals` distinct people holding the promote verb, each known
by the admission policy's stamp; two approvals at once are both taken, one after the other; an
approval step that times out rolls the canary back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster
from tests.e2e.conftest import Driver, Operator
from tests.governance import Governance, governed, model_deployment

pytestmark = pytest.mark.usefixtures("operator")

TWO = {"approval": {"requiredApprovals": 2}}


@pytest.fixture
def gov(cluster: Cluster, crds: None, namespace: str) -> Iterator[Governance]:
    with governed(cluster, namespace) as g:
        g.bind("alice", "edit")
        g.bind("bob", "edit")
        for approver in ("paula", "olga"):
            g.bind(approver, g.role("approver"))
        yield g


def fraud(version: str, approval: dict[str, Any]) -> dict[str, Any]:
    md = model_deployment("fraud", version, replicas=2)
    md["spec"]["rollout"] = {
        "strategy": "Canary",
        "steps": [{"setWeight": 50}, approval],
        "scaleDownDelaySeconds": 1,
    }
    return md


def status(k: Driver) -> dict[str, Any]:
    return dict(k.md("fraud").get("status") or {})


def canary(k: Driver) -> dict[str, Any]:
    return dict(status(k).get("canary") or {})


def waiting(k: Driver, gov: Governance, approval: dict[str, Any]) -> dict[str, Any]:
    """1.0.0 stable, 2.0.0 applied by alice and waiting at the approval step."""
    gov.kubectl_as("alice", "apply", "-f", "-", input=json.dumps(fraud("1.0.0", approval)))
    k.wait_phase("fraud", "Ready")
    gov.kubectl_as("alice", "apply", "-f", "-", input=json.dumps(fraud("2.0.0", approval)))
    found: dict[str, Any] = k.wait(
        "the canary at its approval step",
        lambda: (c := canary(k)).get("reason") == "WaitingForApproval" and c,
    )
    return found


def events(k: Driver, reason: str) -> list[str]:
    out = k.cluster.kubectl("get", "events", "-n", k.ns, "-o", "json").stdout
    return [e["message"] for e in json.loads(out)["items"] if e["reason"] == reason]


def test_two_distinct_approvers_let_the_canary_go_on(gov: Governance, k: Driver) -> None:
    held = waiting(k, gov, TWO)
    assert "waits for 2 approvals" in held["message"]

    refused = k.plugin("--as", "alice", "promote", "fraud", check=False)
    assert "the 'promote' verb on modeldeployments.serving.slipway.dev is needed" in refused.stderr

    k.plugin("--as", "paula", "promote", "fraud")
    once = k.wait("paula's approval", lambda: (c := canary(k)).get("approvals") and c)
    assert [a["by"] for a in once["approvals"]] == ["paula"]
    assert once["reason"] == "WaitingForApproval" and "1 so far (paula)" in once["message"]

    k.plugin("--as", "paula", "promote", "fraud")  # twice is still one person
    k.wait(
        "the second promote of paula ignored",
        lambda: any("paula has approved" in m for m in events(k, "ActionIgnored")),
    )
    assert [a["by"] for a in canary(k)["approvals"]] == ["paula"]

    k.plugin("--as", "olga", "promote", "fraud")
    st = k.wait(
        "2.0.0 stable",
        lambda: (s := status(k))["stable"]["version"] == "2.0.0" and not s.get("canary") and s,
    )
    promoted = st["history"][0]
    assert (promoted["promotedBy"], promoted["approvedBy"]) == ("olga", ["paula", "olga"])
    k.wait(
        "the Approved Event",
        lambda: any("approval 2 of 2" in m and "(paula, olga)" in m for m in events(k, "Approved")),
    )


def test_approvals_given_at_once_are_taken_one_after_the_other(
    gov: Governance, k: Driver, operator: Operator
) -> None:
    waiting(k, gov, TWO)
    operator.stop()
    try:
        k.plugin("--as", "paula", "promote", "fraud")  # waits in its annotation
        olga = subprocess.Popen(
            [
                sys.executable, "-c",
                "from slipway.cli import kubectl_main; raise SystemExit(kubectl_main())",
                "-n", k.ns, "--as", "olga", "promote", "fraud",
            ],
            env=k.cluster.env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        # nobody replaces an action the operator has not taken yet
        bob = gov.kubectl_as("bob", "annotate", "--overwrite", "md", "fraud",
                             "serving.slipway.dev/action=abort")  # fmt: skip
        assert bob.returncode != 0
        assert "the action 'promote' asked by paula waits for Slipway to take it" in bob.stderr
    finally:
        operator.start()
    _, err = olga.communicate(timeout=60)
    assert olga.returncode == 0, err
    assert "waiting for Slipway to take the action 'promote' (asked by paula) first" in err

    st = k.wait("2.0.0 stable", lambda: (s := status(k))["stable"]["version"] == "2.0.0" and s)
    assert st["history"][0]["approvedBy"] == ["paula", "olga"]


def test_an_approval_step_that_times_out_rolls_the_canary_back(gov: Governance, k: Driver) -> None:
    waiting(k, gov, {"approval": {"requiredApprovals": 2, "timeout": "5s"}})
    k.plugin("--as", "paula", "promote", "fraud")

    st = k.wait("the rollback", lambda: (s := status(k)).get("phase") == "RolledBack" and s, 60)

    assert (st["canary"]["state"], st["canary"]["reason"]) == ("RolledBack", "ApprovalTimedOut")
    assert st["canary"]["message"] == (
        "the approval step waited 5s for 2 approvals and got 1 (paula)"
    )
    assert st["stable"]["version"] == "1.0.0"
