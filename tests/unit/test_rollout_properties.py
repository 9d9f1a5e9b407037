"""Properties of the rollout state machine over many random (but seeded) histories.

Each history starts from a Ready stable revision and then, step by step, lets pods get Ready,
lets time pass, answers analysis with random verdicts, consumes random actions and changes the spec
(new versions, some of them broken; reverts; undos). Through all of it:
- the Ready pods of stable and canary never drop below spec.replicas (maxUnavailable 0);
- a canary with no Ready pod never has weight;
- decide on its own output, with the same observations and time, changes nothing.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from slipway.api import Measurement, Verdict
from slipway.rollout import Action, Decision, decide
from tests.unit.test_rollout import (
    ANALYSIS,
    BAD,
    GATEWAY,
    GOOD,
    NO_DATA,
    PINS,
    Rollout,
    measured,
    model_deployment,
)

SEEDS = range(120)
ROUNDS = 80
ERROR = measured(Verdict.ERROR, None, "query failed")


def random_rollout(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.2:
        return {"strategy": "Rolling", "maxSurge": rng.choice(["25%", 1, 2, "100%"])}
    steps: list[dict[str, Any]] = []
    weight = 0
    for _ in range(rng.randint(0, 5)):
        if rng.random() < 0.5:
            weight = min(100, weight + rng.choice([5, 10, 25, 50]))
            steps.append({"setWeight": weight})
        else:
            steps.append({"pause": rng.choice([{}, {"duration": "30s"}, {"duration": "2m"}])})
    rollout: dict[str, Any] = {
        "strategy": "Canary",
        "steps": steps,
        "maxSurge": rng.choice(["25%", 1, 2, "50%"]),
        "autoRollback": rng.random() < 0.8,
        "scaleDownDelaySeconds": rng.choice([0, 30, 120]),
        "progressDeadlineSeconds": rng.choice([120, 600]),
    }
    if rng.random() < 0.5:
        rollout["analysis"] = ANALYSIS
    if rng.random() < 0.5:
        rollout.update(GATEWAY)
    return rollout


def check(rollout: Rollout, decision: Decision, observed_before: Any, now: Any) -> None:
    status = decision.status
    total = rollout.md.spec.replicas
    cluster = rollout.cluster
    ready = cluster.ready(status.stable.revision)
    if status.canary is not None:
        ready += cluster.ready(status.canary.revision)
    assert ready >= total, f"Ready pods dropped to {ready}/{total}: {cluster.snapshot()}"

    assert decision.stable_weight + decision.canary_weight == 100
    assert 0 <= decision.canary_weight <= 100
    if decision.canary_weight > 0:
        assert status.canary is not None
        assert observed_before.ready(status.canary.revision) > 0, "weight to a canary not Ready"
        if rollout.md.spec.rollout.traffic_routing is not None:
            assert cluster.ready(status.canary.revision) > 0, "route weight to pods just removed"
    assert decision.requeue_after is None or decision.requeue_after > 0

    again = decide(rollout.md, rollout.revision, observed_before, None, None, now, PINS)
    assert again.status == status, "decide on its own status changed it"
    assert again.events == []
    assert again.revisions == decision.revisions
    assert again.requeue_after == decision.requeue_after


@pytest.mark.parametrize("seed", SEEDS)
def test_random_histories_keep_capacity_never_weight_an_unready_canary_and_are_idempotent(
    seed: int,
) -> None:
    rng = random.Random(seed)
    md = model_deployment(replicas=rng.randint(1, 8), rollout=random_rollout(rng))
    verdicts: list[list[Measurement]] = [GOOD] * 6 + [BAD, NO_DATA, NO_DATA, ERROR]
    rollout = Rollout.deployed(md, metrics=lambda rev: rng.choice(verdicts))
    versions = ["1.0.0"]

    for _ in range(ROUNDS):
        roll = rng.random()
        action: Action | None = None
        if roll < 0.25:
            rollout.cluster.settle()
        elif roll < 0.45:
            rollout.now += dt.timedelta(seconds=rng.choice([1, 10, 30, 60, 300]))
        elif roll < 0.55:
            action = rng.choice(list(Action))
        elif roll < 0.62:
            version = f"{len(versions) + 1}.0.0"
            versions.append(version)
            rollout.change(version=version)
            fate = rng.random()
            if fate < 0.15:
                rollout.cluster.broken[rollout.revision] = "not-ready"
            elif fate < 0.25:
                rollout.cluster.broken[rollout.revision] = "crash"
        elif roll < 0.66:
            rollout.change(version=rng.choice(versions))  # a revert or an undo
        observed = rollout.cluster.observe()
        now = rollout.now
        decision = rollout.reconcile(action=action)
        check(rollout, decision, observed, now)
