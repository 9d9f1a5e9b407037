"""An operator upgrade reads the status the previous version wrote: a canary in flight goes on.

Slipway 0.1 kept a canary's state in booleans (`paused`, `aborted`) and "Reason: message" strings
(`pauseReason`, `failureReason`); this version keeps `state` and `reason`. The test leaves a canary
as 0.1 left it (the fields exactly as the statuses captured from 0.1 in
integrations/argocd/.../testdata have them) and starts the operator on it.
"""

from __future__ import annotations

import json

from tests.conftest import Cluster
from tests.e2e.conftest import Driver, OperatorFactory
from tests.e2e.test_canary import V2, canary, canary_md, start, status

LEGACY_PAUSE = "UserPaused: paused by the user at 2026-11-25T10:00:00Z"


def test_a_canary_paused_by_slipway_0_1_stays_paused_and_goes_on_when_resumed(
    k: Driver, cluster: Cluster, own_operators: OperatorFactory
) -> None:
    op = own_operators()
    steps = [{"setWeight": 25}, {"pause": {"duration": "1h"}}, {"setWeight": 50}]
    start(k, canary_md(steps=steps))
    k.patch("md", "fraud", {"spec": V2})
    k.wait("the timed pause", lambda: canary(k).get("step") == 1)
    op.stop()

    legacy = {
        "state": None,
        "reason": None,
        "message": None,
        "paused": True,
        "pauseReason": LEGACY_PAUSE,
    }
    cluster.kubectl(
        "patch", "md", "fraud", "-n", k.ns, "--subresource", "status", "--type", "merge",
        "-p", json.dumps({"status": {"canary": legacy}}),
    )  # fmt: skip
    assert canary(k).get("pauseReason") == LEGACY_PAUSE and "state" not in canary(k)

    own_operators()
    migrated = k.wait("the status in this version's terms", lambda: canary(k).get("state"))
    assert migrated == "Paused"
    assert canary(k)["reason"] == "UserPaused" and "pauseReason" not in canary(k)
    assert status(k)["phase"] == "Paused"

    k.plugin("resume", "fraud")
    k.wait("the canary to go on", lambda: canary(k).get("state") == "Progressing")
    k.plugin("promote", "fraud", "--full")
    k.wait(
        "the promotion",
        lambda: (
            (s := status(k)).get("stable", {}).get("version") == "2.0.0"
            and s.get("phase") == "Ready"
        ),
    )
