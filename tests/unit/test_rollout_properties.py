"""Properties of the rollout state machine over many random (but seeded) histories.

Each history (with 0, 1 or 3 old revisions kept for undo) starts from a stable revision, Ready
or (a GPU shortage) only partly Ready, and then, step by step, lets pods get Ready (and some go
unready for a moment, or a canary crash), lets time pass, answers analysis and evaluation Jobs
with random verdicts, consumes random actions, scales, and changes
the spec (new versions, some of them broken, some refused by the cluster, some that cannot be
served at all; reverts; undos), with the traffic route sometimes missing. Through all of it:
- what serves is never torn down for what does not: the Ready pods that users reach (a canary
  being evaluated behind a Service <name> that selects stable alone is reached by none) never
  drop below what they were (or spec.replicas, if that is lower), so a serving revision loses
  Ready pods only to a replacement that has at least as many (maxUnavailable 0);
- Service <name> never takes in a canary's pods before its first weight;
- a canary with no Ready pod never has weight;
- with a route, a stable with no Ready pod gets no weight while the canary has Ready pods that
  users may reach: neither the weight taken back from a canary that goes (rolled back, aborted,
  withdrawn), nor a running canary's when the stable has fewer pods than its share (replicas
  raised, or a step's weight lowered, while the canary stands at 100 %);
- a canary rolled back, aborted or held failed never becomes stable unless someone asks (a
  retry, a promotion, a new spec): not even when the stable's pods all go unready;
- a running canary that has pods is never made stable outright (`Replaced`) with no one asking,
  even when nothing is Ready (a canary at 100 % that starts crashing): it is judged, and only
  promoted through its steps;
- every problem the core was told of is in a condition that names it, and kstatus's Reconciling
  and Stalled are never both True;
- decide on its own output, with the same observations and time, changes nothing.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from slipway.api import CanaryState, CanaryStatus, Measurement, Phase, Verdict
from slipway.rollout import Action, Decision, Observed, decide
from slipway.rollout.facts import ROLLED_BACK, RUNNING, steps_of
from slipway.rollout.steps import weight_at
from tests.unit.test_rollout import (
    ANALYSIS,
    BAD,
    GATEWAY,
    GOOD,
    NO_DATA,
    PINS,
    measured,
    model_deployment,
)
from tests.unit.test_rollout_evaluation import EVALUATE, EvaluatingRollout, gates

SEEDS = range(120)
ROUNDS = 80
ERROR = measured(Verdict.ERROR, None, "query failed")
OK = Verdict.SUCCESSFUL
JOB_VERDICTS = [(OK, OK)] * 4 + [
    (Verdict.FAILED, OK),
    (OK, Verdict.INCONCLUSIVE),
    (Verdict.ERROR,) * 2,
]


def random_rollout(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.2:
        return {"strategy": "Rolling", "maxSurge": rng.choice(["25%", 1, 2, "100%"])}
    steps: list[dict[str, Any]] = []
    weight = 0
    for _ in range(rng.randint(0, 5)):
        roll = rng.random()
        if roll < 0.4:
            weight = min(100, weight + rng.choice([5, 10, 25, 50]))
            steps.append({"setWeight": weight})
        elif roll < 0.6:
            steps.append(EVALUATE)
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


def reached(ready: dict[str, int], service_revision: str | None) -> int:
    """Ready pods that users reach through Service <name>."""
    if service_revision is not None:
        return ready.get(service_revision, 0)
    return sum(ready.values())


def _goes(canary: CanaryStatus, revision: str) -> bool:
    """Whether the canary is on its way out: rolled back, aborted, withdrawn, or not the spec's."""
    return canary.state in (*ROLLED_BACK, CanaryState.WITHDRAWN) or canary.revision != revision


def check(
    rollout: EvaluatingRollout, decision: Decision, observed_before: Observed, now: Any
) -> None:
    status = decision.status
    total = rollout.md.spec.replicas
    cluster = rollout.cluster
    before = {rev: r.ready_replicas for rev, r in observed_before.revisions.items()}
    after = reached(
        {rev: cluster.ready(rev) for rev in cluster.deployments}, rollout.service_revision
    )
    floor = min(reached(before, observed_before.service_revision), total)
    assert after >= floor, f"Ready pods dropped to {after} (floor {floor}): {cluster.snapshot()}"
    canary = status.canary
    ratio = rollout.md.spec.rollout.traffic_routing is None
    if canary is not None and ratio and rollout.service_revision is None:
        steps = steps_of(rollout.md, status, canary)
        before_any_weight = weight_at(steps, canary.step) == 0
        assert not (before_any_weight and cluster.ready(canary.revision)), (
            "Service <name> takes in a canary pod before its first weight",
            cluster.snapshot(),
        )

    assert decision.stable_weight + decision.canary_weight == 100
    assert 0 <= decision.canary_weight <= 100
    if decision.canary_weight > 0:
        assert status.canary is not None
        assert observed_before.ready(status.canary.revision) > 0, "weight to a canary not Ready"
        if rollout.md.spec.rollout.traffic_routing is not None:
            assert cluster.ready(status.canary.revision) > 0, "route weight to pods just removed"
    if canary is not None and not ratio:
        stable = status.stable.revision
        goes = _goes(canary, rollout.revision)
        weighted = goes or weight_at(steps_of(rollout.md, status, canary), canary.step) > 0
        if weighted and cluster.ready(stable) == 0 and cluster.ready(canary.revision) > 0:
            assert decision.canary_weight == 100, (
                "route weight to a stable with no Ready pod while the canary has some",
                goes,
                decision.stable_weight,
                cluster.snapshot(),
            )
    assert decision.requeue_after is None or decision.requeue_after > 0

    said = {c.type: c for c in status.conditions}
    degraded = said["Degraded"]
    problems = list(observed_before.spec_errors)
    if observed_before.route is not None and not observed_before.route.exists:
        problems.append("TrafficRoutingUnavailable")
    for entry in (status.stable, status.canary):
        if entry is not None and observed_before.refused(entry.revision):
            problems.append("FailedCreate")
    for problem in problems:
        assert degraded.status == "True", f"{problem} is in no condition"
        assert problem in f"{degraded.reason} {degraded.message}", f"{problem} is not named"
    if status.phase is Phase.READY:
        assert observed_before.ready(status.stable.revision) >= total
    in_flight = said["Reconciling"].status == "True"
    stalled = said["Stalled"].status == "True"
    assert not (in_flight and stalled)
    assert stalled is (status.phase in (Phase.DEGRADED, Phase.ROLLED_BACK, Phase.FAILED))

    again = decide(rollout.md, rollout.revision, observed_before, None, None, now, PINS)
    assert again.status == status, "decide on its own status changed it"
    assert again.events == []
    assert again.revisions == decision.revisions
    assert again.requeue_after == decision.requeue_after


def cluster_events(decision: Decision) -> list[str]:
    return [event.reason for event in decision.events]


def start(rng: random.Random, md: Any, metrics: Any) -> EvaluatingRollout:
    """A Ready first revision, or (one history in four) one that only part of its pods serve."""
    if rng.random() < 0.75:
        return EvaluatingRollout.deployed(md, metrics=metrics)
    rollout = EvaluatingRollout(md=md, metrics=metrics)
    rollout.cluster.broken[rollout.revision] = "not-ready"
    rollout.reconcile()
    pods = rollout.cluster.deployments[rollout.revision]
    pods.ready = rng.randint(0, pods.replicas)
    rollout.reconcile()
    return rollout


@pytest.mark.parametrize("seed", SEEDS)
def test_random_histories_keep_what_serves_say_every_problem_and_are_idempotent(
    seed: int,
) -> None:
    rng = random.Random(seed)
    md = model_deployment(
        replicas=rng.randint(1, 8),
        rollout=random_rollout(rng),
        history_limit=rng.choice([0, 1, 3]),
    )
    verdicts: list[list[Measurement]] = [GOOD] * 6 + [BAD, NO_DATA, NO_DATA, ERROR]
    rollout = start(rng, md, lambda rev: rng.choice(verdicts))
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
            elif fate < 0.3:
                rollout.cluster.broken[rollout.revision] = "refused"
            elif fate < 0.4:
                rollout.unservable.add(rollout.revision)
        elif roll < 0.66:
            rollout.change(version=rng.choice(versions))  # a revert or an undo
        elif roll < 0.68:
            rollout.change(replicas=rng.randint(1, 8))  # kubectl scale, an HPA
        elif roll < 0.7 and rollout.md.spec.rollout.traffic_routing is not None:
            rollout.route_missing = not rollout.route_missing
        elif roll < 0.8:
            for job in rollout.jobs.values():
                if job.outcome is None:
                    job.outcome = gates(*rng.choice(JOB_VERDICTS))
        elif roll < 0.84:
            # a readiness blip: some Ready pods of one revision go unready (until a settle)
            serving = [p for p in rollout.cluster.deployments.values() if p.ready > 0]
            if serving:
                pods = rng.choice(serving)
                pods.ready = rng.randint(0, pods.ready - 1)
        elif roll < 0.86 and rollout.status.canary is not None:
            # a canary that served starts crashing (under load, at its weight)
            crashing = rollout.status.canary.revision
            rollout.cluster.broken[crashing] = "crash"
            if crashing in rollout.cluster.deployments:
                rollout.cluster.deployments[crashing].ready = 0
        observed = rollout.observe()
        now = rollout.now
        turned_down = rollout.status.canary if action is None else None
        running = rollout.status.canary
        decision = rollout.reconcile(action=action)
        check(rollout, decision, observed, now)
        if (
            action is None
            and running is not None
            and running.revision == rollout.revision
            and running.state in RUNNING
            and observed.replicas(running.revision) > 0
        ):
            assert "Replaced" not in cluster_events(decision), (
                "a running canary with pods was handed the ModelDeployment unjudged",
                cluster_events(decision),
            )
        if turned_down is not None and turned_down.state in (*ROLLED_BACK, CanaryState.FAILED):
            assert decision.status.stable.revision != turned_down.revision, (
                "a canary turned down became stable with no one asking",
                cluster_events(decision),
            )
