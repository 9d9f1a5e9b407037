"""A soak: a seeded random churn of create, version update (a canary), scale, delete and recreate
over many ModelDeployments. The operator's memory stays flat after warm-up, and when the churn
stops every object converges, with no child left behind."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from tests.chaos.conftest import (
    SCALE,
    Api,
    model_deployment,
    operator_pid,
    report,
    rss_mb,
    seeded,
    version_patch,
    wait_consistent,
)
from tests.e2e.conftest import Operator

pytestmark = pytest.mark.chaos

STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "1s"}}]
RSS_PERIOD = 5.0
TICK = 0.25


def test_churn_keeps_memory_flat_and_ends_consistent(api: Api, operator: Operator) -> None:
    rng = seeded("soak")
    pool = [f"soak-{i}" for i in range(SCALE.soak_mds)]
    versions: dict[str, int] = {}  # the ModelDeployments that exist, and their minor version
    ops: Counter[str] = Counter()
    pid = operator_pid(operator)
    rss: list[tuple[float, float]] = []
    started = time.monotonic()
    next_rss = started

    while (now := time.monotonic()) - started < SCALE.soak_seconds:
        if now >= next_rss:
            rss.append((now - started, rss_mb(pid)))
            next_rss += RSS_PERIOD
        name = rng.choice(pool)
        roll = rng.random()
        if name not in versions:
            api.create(model_deployment(name, version="1.0.0", steps=STEPS))
            versions[name] = 0
            ops["create"] += 1
        elif roll < 0.6:
            versions[name] += 1
            api.patch_md(name, version_patch(name, f"1.{versions[name]}.0"))
            ops["update"] += 1
        elif roll < 0.8:
            api.patch_md(name, {"spec": {"replicas": rng.choice([1, 2, 3])}})
            ops["scale"] += 1
        else:
            api.delete_md(name)
            del versions[name]
            ops["delete"] += 1
        time.sleep(TICK)
    churned = time.monotonic() - started

    _, settle = wait_consistent(
        api, SCALE.converge_seconds, sorted(versions), "convergence after the churn"
    )
    assert sorted(m["metadata"]["name"] for m in api.mds()) == sorted(versions)
    rss.append((time.monotonic() - started, rss_mb(pid)))

    warm = [mb for at, mb in rss if at >= SCALE.soak_warmup_seconds]
    baseline, peak, end = warm[0], max(warm), warm[-1]
    growth = (peak - baseline) / baseline
    assert operator.proc is not None and operator.proc.poll() is None, operator.log_tail()
    assert operator.starts == 1
    report(
        f"soak: {len(pool)} names, {sum(ops.values())} operations in {churned:.0f}s "
        f"({dict(ops)}), {len(versions)} ModelDeployments at the end, consistent "
        f"{settle:.1f}s after the churn stopped; RSS after {SCALE.soak_warmup_seconds:.0f}s "
        f"warm-up {baseline:.1f} MB, peak {peak:.1f} MB, end {end:.1f} MB "
        f"(growth {growth:+.1%}, bound {SCALE.soak_rss_growth:.0%}); first sample "
        f"{rss[0][1]:.1f} MB; reconcile errors "
        f"{operator.metric('slipway_reconcile_errors_total'):.0f}"
    )
    assert growth <= SCALE.soak_rss_growth, rss
