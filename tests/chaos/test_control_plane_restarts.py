"""Restart kube-apiserver, and separately etcd, while reconciles run: the operator reconnects by
itself (the same process all along, never restarted) and everything converges, including changes
made after the restart, which reach it only through its re-established watches."""

from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import (
    SCALE,
    Api,
    ControlPlane,
    model_deployment,
    report,
    seeded,
    until,
    version_patch,
    wait_consistent,
)
from tests.e2e.conftest import Operator

pytestmark = pytest.mark.chaos


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_operator_reconnects_by_itself_when_the_control_plane_restarts(
    component: str, api: Api, operator: Operator, control_plane: ControlPlane
) -> None:
    rng = seeded(f"restart-{component}")
    names = [f"cp-{i}" for i in range(SCALE.restart_mds)]
    for name in names:
        api.create(model_deployment(name))
    wait_consistent(api, SCALE.converge_seconds, names, "the first deployment")
    assert operator.proc is not None
    pid = operator.proc.pid
    errors_before = operator.metric("slipway_reconcile_errors_total")

    outages: list[float] = []
    converged: list[float] = []
    for round_ in range(SCALE.restarts):
        # canaries in flight when the component goes away
        for name in names:
            api.patch_md(name, version_patch(name, f"{round_ + 2}.0.0"))
        time.sleep(rng.uniform(0.3, 1.5))
        # the short form crashes it; the long form alternates crashes and graceful restarts
        outages.append(control_plane.restart(component, crash=round_ % 2 == 0))
        after_restart = time.monotonic()
        # a change the operator can only learn about through a watch it re-opened itself
        until("the API server to answer", lambda: api.mds(), timeout=60)
        for i, name in enumerate(names):
            api.patch_md(name, {"spec": {"replicas": 3 if (i + round_) % 2 else 2}})
        _, seconds = wait_consistent(
            api, SCALE.converge_seconds, names, f"convergence after restarting {component}"
        )
        converged.append(time.monotonic() - after_restart)
        del seconds

    assert operator.proc.poll() is None, operator.log_tail()
    assert (operator.proc.pid, operator.starts) == (pid, 1), "the operator was restarted"
    errors = operator.metric("slipway_reconcile_errors_total") - errors_before
    report(
        f"restart {component}: {len(names)} ModelDeployments, {SCALE.restarts} restarts "
        f"(restart took {max(outages):.1f}s at most), converged {max(converged):.1f}s after "
        f"the restart at most; same operator process, {errors:.0f} reconcile errors meanwhile"
    )
