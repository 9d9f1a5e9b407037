"""SIGKILL the operator mid-reconcile and mid-rollout, again and again: every ModelDeployment still
converges, with exactly the children its status names, and no rollout goes back a step."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from slipway.plugin import main as plugin_main
from tests.chaos.conftest import (
    SCALE,
    Api,
    Snapshot,
    StepWatch,
    model_deployment,
    report,
    seeded,
    version_patch,
    wait_consistent,
)
from tests.conftest import Cluster
from tests.e2e.conftest import Operator

pytestmark = pytest.mark.chaos

# half of the rollouts go on by the clock, half wait for `kubectl slipway promote`
TIMED_STEPS: list[dict[str, Any]] = [
    {"setWeight": 25},
    {"pause": {"duration": "2s"}},
    {"setWeight": 50},
    {"pause": {"duration": "2s"}},
]
PROMOTED_STEPS: list[dict[str, Any]] = [
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 75},
    {"pause": {}},
]


def waiting_for_promotion(md: dict[str, Any]) -> bool:
    status = md.get("status") or {}
    if status.get("observedGeneration") != md["metadata"]["generation"]:
        return False
    if "serving.slipway.dev/action" in (md["metadata"].get("annotations") or {}):
        return False  # a promote is on its way already
    progressing = [c for c in status.get("conditions") or [] if c["type"] == "Progressing"]
    return bool(progressing) and progressing[0]["reason"] == "WaitingForPromotion"


def promote_waiting(cluster: Cluster, api: Api) -> int:
    """`kubectl slipway promote` every ModelDeployment that waits for it; how many."""
    waiting = [md["metadata"]["name"] for md in api.mds() if waiting_for_promotion(md)]
    for name in waiting:
        argv = ["--kubeconfig", str(cluster.kubeconfig), "-n", api.ns, "promote", name]
        assert plugin_main(argv) == 0
    return len(waiting)


def converge_promoting(
    cluster: Cluster, api: Api, names: list[str], deadline: float
) -> tuple[Snapshot, int]:
    """Promote what waits for it until every ModelDeployment is consistent, or the deadline."""
    promotions = 0
    problems: list[str] = []
    while time.monotonic() < deadline:
        promotions += promote_waiting(cluster, api)
        snapshot = Snapshot.read(api)
        problems = snapshot.inconsistencies(names)
        if not problems:
            return snapshot, promotions
        time.sleep(1)
    raise AssertionError("no convergence; problems:\n  " + "\n  ".join(problems[:40]))


def kill_and_restart(op: Operator, rng: random.Random, down: float) -> None:
    """SIGKILL the operator, keep it down a moment, start it again."""
    op.kill()
    time.sleep(rng.uniform(0, down))
    op.start()


def test_sigkilled_operator_converges_every_rollout_without_duplicates_or_lost_steps(
    cluster: Cluster, api: Api, operator: Operator
) -> None:
    rng = seeded("kills")
    names = [f"kill-{i}" for i in range(SCALE.kill_mds)]
    began = time.monotonic()
    for i, name in enumerate(names):
        api.create(model_deployment(name, steps=PROMOTED_STEPS if i % 2 else TIMED_STEPS))
    # the first kill lands while the first reconciles create the children
    time.sleep(rng.uniform(0.5, 2.0))
    kill_and_restart(operator, rng, down=1.0)
    wait_consistent(api, SCALE.converge_seconds, names, "first deployment after a kill")
    created = time.monotonic() - began

    rollout_began = time.monotonic()
    promotions = 0
    with StepWatch(api) as watch:
        for name in names:
            api.patch_md(name, version_patch(name, "2.0.0"))
        for _ in range(SCALE.kills - 1):
            time.sleep(rng.uniform(1.0, 4.0))
            before = watch.sample()  # the steps each canary is at, just before the kill
            operator.kill()
            # promote what waits for it while the operator is down: the annotation waits for it
            promotions += promote_waiting(cluster, api)
            time.sleep(rng.uniform(0, 1.5))
            operator.start()
            after = watch.sample()
            for name, record in before.items():
                now = after.get(name)
                if now is not None and now.revision == record.revision:
                    assert now.step >= record.step, (name, record, now)
        last_kill = time.monotonic()

        snapshot = converge_promoting(cluster, api, names, last_kill + SCALE.converge_seconds)
        promotions += snapshot[1]
    assert not watch.regressions, watch.regressions
    assert watch.samples > 0
    assert operator.starts == SCALE.kills + 1
    assert operator.proc is not None and operator.proc.poll() is None, operator.log_tail()
    for name in names:
        history = [h["version"] for h in snapshot[0].mds[name]["status"]["history"]]
        assert history[:2] == ["2.0.0", "1.0.0"], (name, history)
    report(
        f"kills: {len(names)} ModelDeployments, {SCALE.kills} SIGKILLs, {promotions} promotions "
        f"through the plugin; first deployment {created:.1f}s, rollout to converged "
        f"{time.monotonic() - rollout_began:.1f}s ({time.monotonic() - last_kill:.1f}s after the "
        f"last kill); reconcile errors {operator.metric('slipway_reconcile_errors_total'):.0f} "
        f"since the last start; step samples {watch.samples}, regressions 0"
    )
