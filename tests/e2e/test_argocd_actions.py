"""The Argo CD resource actions against the live operator: each action runs in Argo CD's Lua sandbox
on the live ModelDeployment, its returned object is patched in as Argo CD patches it (the JSON merge
patch from the live object to the returned one), and the operator does what the action says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.argocd import create_merge_patch, enabled_actions, run_action
from tests.e2e.conftest import Driver
from tests.e2e.test_canary import V2, canary, canary_md, condition, paused_at, start, status

pytestmark = pytest.mark.usefixtures("operator")

ANNOTATION = "serving.slipway.dev/action"


def run_argo_action(k: Driver, action: str, tmp_path: Path) -> None:
    """What Argo CD's server does for `argocd app actions run … <action>`, on `fraud`."""
    live = k.md("fraud")
    assert action in enabled_actions(live, tmp_path), f"{action} is not offered now"
    returned = run_action(action, live, tmp_path)
    patch = create_merge_patch(live, returned)
    # Argo CD sends a status part to the status subresource; these actions never change status
    assert "status" not in patch, patch
    k.patch("md", "fraud", patch)


def progressing(k: Driver) -> str:
    return str(condition(status(k), "Progressing").get("reason"))


def annotation_consumed(k: Driver) -> bool:
    return ANNOTATION not in (k.md("fraud")["metadata"].get("annotations") or {})


def test_each_argo_cd_action_makes_the_operator_act(k: Driver, tmp_path: Path) -> None:
    steps = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
    old = start(k, canary_md(steps=steps))
    assert enabled_actions(k.md("fraud"), tmp_path) == set(), "nothing to steer without a canary"
    k.patch("md", "fraud", {"spec": V2})
    new = paused_at(k, 25)["revision"]
    k.wait("WaitingForPromotion", lambda: progressing(k) == "WaitingForPromotion")

    run_argo_action(k, "pause", tmp_path)
    k.wait("paused by the user", lambda: progressing(k) == "RolloutPaused")
    assert "pause" not in enabled_actions(k.md("fraud"), tmp_path)

    run_argo_action(k, "resume", tmp_path)
    k.wait(
        "the user's pause lifted (the step still waits for promotion)",
        lambda: progressing(k) == "WaitingForPromotion" and not canary(k).get("paused"),
    )

    run_argo_action(k, "promote", tmp_path)
    k.wait("the next pause, at 50 %", lambda: paused_at(k, 50)["step"] == 3)

    run_argo_action(k, "abort", tmp_path)
    k.wait(
        "the canary aborted",
        lambda: status(k).get("phase") == "RolledBack" and progressing(k) == "Aborted",
    )
    assert enabled_actions(k.md("fraud"), tmp_path) == {"retry"}

    run_argo_action(k, "retry", tmp_path)
    k.wait(
        "the canary back at its first pause",
        lambda: (c := canary(k)).get("step") == 1 and not c.get("aborted") and c["weight"] == 25,
    )

    run_argo_action(k, "promote-full", tmp_path)
    st = k.wait(
        "promotion",
        lambda: (s := status(k)).get("phase") == "Ready" and s["stable"]["revision"] == new and s,
    )
    assert st.get("canary") is None
    assert [h["revision"] for h in st["history"][:2]] == [new, old]
    assert annotation_consumed(k)
    assert ignored_actions(k) == []


def ignored_actions(k: Driver) -> list[str]:
    events: list[dict[str, Any]] = json.loads(
        k.cluster.kubectl(
            "get", "events", "-n", k.ns, "--field-selector", "reason=ActionIgnored", "-o", "json"
        ).stdout
    )["items"]
    return [str(e.get("message")) for e in events]
