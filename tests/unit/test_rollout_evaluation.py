"""The evaluation step in the state machine (issue 13, section 4), driven through test_rollout's
fake cluster with two more things the shell does: Service <name>'s selector as last applied, and
the evaluation Job (created when the decision asks for one; its gates judged when a test ends it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from slipway.api import CanaryReason, CanaryState, Measurement, Phase, Verdict
from slipway.rollout import (
    Action,
    Decision,
    DesiredEvaluation,
    EvaluationOutcome,
    Observed,
    analysis_due,
    decide,
)
from slipway.rollout.machine import MIN_REQUEUE_SECONDS
from tests.unit.test_rollout import (
    ANALYSIS,
    GATEWAY,
    GOOD,
    T0,
    Rollout,
    canary_rollout,
    desired,
    model_deployment,
)

S, R = CanaryState, CanaryReason
EVALUATE = {
    "evaluate": {
        "data": {"uri": "s3://eval/fraud.jsonl"},
        "timeout": "5m",
        "gates": [{"measure": "agreement", "min": 0.95}, {"measure": "error-rate", "max": 0.01}],
    }
}


def gates(agreement: Verdict, errors: Verdict = Verdict.SUCCESSFUL) -> list[Measurement]:
    """What the shell judged from a finished Job's result (slipway.analysis.evaluation)."""
    at = "2024-05-01T12:00:00Z"
    return [
        Measurement(metric="agreement", value=0.9, min=0.95, verdict=agreement, at=at),
        Measurement(metric="error-rate", value=0.0, max=0.01, verdict=errors, at=at),
    ]


@dataclass
class Job:
    wanted: DesiredEvaluation
    outcome: list[Measurement] | None = None  # set when it ends


@dataclass
class EvaluatingRollout(Rollout):
    """The fake shell, also applying Service <name>'s selector and the evaluation Jobs."""

    service_revision: str | None = None  # what Service <name> selects alone, as last applied
    jobs: dict[tuple[int, int], Job] = field(default_factory=dict)  # (step, attempt)
    created: list[tuple[int, int]] = field(default_factory=list)

    def observe(self) -> Observed:
        observed = super().observe()
        outcome = None
        canary = self.status.canary
        run = canary.evaluation if canary is not None else None
        job = self.jobs.get((run.step, run.attempt)) if run is not None else None
        if canary is not None and run is not None and job is not None and job.outcome is not None:
            outcome = EvaluationOutcome(canary.revision, run.step, run.attempt, tuple(job.outcome))
        return Observed(
            revisions=observed.revisions,
            spec_errors=observed.spec_errors,
            route=observed.route,
            service_revision=self.service_revision,
            evaluation=outcome,
        )

    def reconcile(self, action: Action | None = None, measurements: Any = None) -> Decision:
        decision = super().reconcile(action, measurements)
        self.service_revision = decision.service_revision
        wanted = decision.evaluation
        for ref in list(self.jobs):
            if wanted is None or ref != (wanted.step, wanted.attempt):
                del self.jobs[ref]
        if wanted is not None and wanted.evaluate is not None:
            ref = (wanted.step, wanted.attempt)
            if ref not in self.jobs:
                self.jobs[ref] = Job(wanted)
                self.created.append(ref)
        return decision

    def end_job(self, outcome: list[Measurement]) -> Decision:
        [job] = [j for j in self.jobs.values() if j.outcome is None]
        job.outcome = outcome
        return self.converge()


def evaluating(
    steps: list[dict[str, Any]], *, replicas: int = 4, **rollout: Any
) -> EvaluatingRollout:
    """Stable 1.0.0 Ready on `replicas` pods, then 2.0.0 as a canary with `steps`."""
    md = model_deployment(replicas=replicas, rollout=canary_rollout(steps, **rollout))
    deployed = EvaluatingRollout.deployed(md)
    deployed.change(version="2.0.0")
    return deployed


def stable_of(rollout: EvaluatingRollout) -> str:
    return str(rollout.status.stable.revision)


# -- before any weight: one canary pod that no user reaches ---------------------------------------


def test_an_evaluation_before_any_weight_gets_one_canary_pod_only_once_service_leaves_it_out() -> (
    None
):
    rollout = evaluating([EVALUATE, {"setWeight": 50}, {"pause": {}}])
    stable = stable_of(rollout)
    first = rollout.reconcile()
    canary = rollout.revision

    # Service <name> selects the stable revision alone first; no canary pod before that is applied
    assert first.service_revision == stable
    assert desired(first)[canary] == (0, "canary")
    second = rollout.reconcile()
    assert desired(second)[canary] == (1, "canary")
    assert desired(second)[stable] == (4, "stable"), "stable keeps its capacity: the pod surges"
    decision = rollout.converge()

    assert decision.service_revision == stable
    assert decision.canary_weight == 0 and decision.status.canary.weight == 0
    assert rollout.cluster.snapshot() == {stable: (4, 4), canary: (1, 1)}
    # the canary's pod is Ready but serves no user: the model's Ready pods are stable's
    assert (decision.status.ready_replicas, decision.status.canary.ready_replicas) == (4, 1)
    run = decision.status.canary.evaluation
    assert (run.step, run.attempt, run.verdict) == (0, 1, None) and run.started_at is not None
    assert rollout.created == [(0, 1)]
    assert decision.evaluation == DesiredEvaluation(
        canary, 0, 1, rollout.md.spec.rollout.steps[0].evaluate
    )
    assert ("Normal", "EvaluationStarted") in rollout.events()
    assert decision.status.phase is Phase.PROGRESSING


def test_the_job_starts_only_once_the_canary_pod_is_ready() -> None:
    rollout = evaluating([EVALUATE, {"setWeight": 50}])
    canary = rollout.revision
    rollout.cluster.broken[canary] = "not-ready"
    decision = rollout.converge()

    assert rollout.cluster.replicas(canary) == 1
    assert decision.status.canary.evaluation.started_at is None
    assert decision.evaluation is None and rollout.created == []
    del rollout.cluster.broken[canary]
    rollout.cluster.settle()
    decision = rollout.converge()
    assert rollout.created == [(0, 1)]


def test_a_passing_evaluation_goes_on_and_stable_shrinks_only_once_service_takes_the_canary() -> (
    None
):
    rollout = evaluating([EVALUATE, {"setWeight": 50}, {"pause": {}}])
    stable = stable_of(rollout)
    rollout.converge()

    judged = rollout.reconcile()
    rollout.jobs[(0, 1)].outcome = gates(Verdict.SUCCESSFUL)
    judged = rollout.reconcile()
    assert judged.status.canary.step == 1
    assert judged.status.canary.evaluation.verdict is Verdict.SUCCESSFUL
    assert judged.service_revision is None, "from the first weight on, <name> selects every pod"
    # Service <name> still selected stable alone when this was decided: its pods stay
    assert desired(judged)[stable][0] == 4
    after = rollout.reconcile()
    assert after.service_revision is None
    assert desired(after)[stable][0] < 4
    decision = rollout.converge()
    assert decision.status.canary.step == 2
    assert decision.canary_weight == 50
    assert ("Normal", "EvaluationPassed") in rollout.events()
    # the gates are in status.analysis, marked as the evaluation's
    kept = decision.status.analysis.measurements
    assert [(m.metric, m.step, m.revision) for m in kept] == [
        ("agreement", 0, rollout.revision),
        ("error-rate", 0, rollout.revision),
    ]
    assert decision.evaluated == []  # recorded once, by the decision that judged them
    assert [m.metric for m in judged.evaluated] == ["agreement", "error-rate"]
    # the judged Job is kept for people to read, never created again
    assert decision.evaluation == DesiredEvaluation(rollout.revision, 0, 1, None)


def test_ready_pods_that_users_reach_never_drop_below_replicas_through_the_evaluation() -> None:
    rollout = evaluating([EVALUATE, {"setWeight": 25}, {"setWeight": 75}])
    stable = stable_of(rollout)
    for _ in range(40):
        decision = rollout.reconcile()
        if rollout.jobs and all(j.outcome is None for j in rollout.jobs.values()):
            rollout.jobs[next(iter(rollout.jobs))].outcome = gates(Verdict.SUCCESSFUL)
        canary_reached = rollout.service_revision != stable
        reached = rollout.cluster.ready(stable)
        if canary_reached:
            reached += rollout.cluster.ready(rollout.revision)
        assert reached >= 4, (rollout.cluster.snapshot(), rollout.service_revision)
        rollout.cluster.settle()
        if decision.status.canary is None:
            break
    assert rollout.status.stable.revision == rollout.revision


# -- failures and verdicts that do not go on ------------------------------------------------------


def test_a_failed_gate_rolls_the_canary_back_at_once_and_stable_serves_alone() -> None:
    rollout = evaluating([EVALUATE, {"setWeight": 50}])
    stable = stable_of(rollout)
    rollout.converge()
    decision = rollout.end_job(gates(Verdict.FAILED))

    canary = decision.status.canary
    assert decision.status.phase is Phase.ROLLED_BACK
    assert (canary.state, canary.reason) == (S.ROLLED_BACK, R.ANALYSIS_FAILED)
    assert canary.message.startswith("evaluation 1 at step 1/2 (evaluate s3://eval/fraud.jsonl)")
    assert "agreement = 0.9 (min 0.95): Failed" in canary.message
    assert "error-rate" not in canary.message, "only the failed gates are the evidence"
    assert rollout.cluster.snapshot() == {stable: (4, 4), rollout.revision: (0, 0)}
    assert decision.service_revision is None, "<name> selects every pod once the canary's is gone"
    assert decision.status.analysis.failures == 1
    assert ("Warning", "RolledBack") in rollout.events()


def test_the_service_leaves_a_rolled_back_canary_out_until_its_pods_are_gone() -> None:
    rollout = evaluating([EVALUATE, {"setWeight": 50}])
    stable = stable_of(rollout)
    rollout.converge()
    rollout.jobs[(0, 1)].outcome = gates(Verdict.FAILED)
    decision = rollout.reconcile()
    assert decision.status.canary.state is S.ROLLED_BACK
    assert rollout.cluster.replicas(rollout.revision) == 0
    # the pod may still be terminating: <name> never took it in, and still does not
    assert decision.service_revision == stable
    assert decision.canary_weight == 0
    decision = rollout.reconcile()
    assert decision.service_revision is None


def test_an_inconclusive_evaluation_pauses_and_resume_runs_it_again_in_a_job_of_its_own() -> None:
    rollout = evaluating([EVALUATE, {"setWeight": 50}])
    rollout.converge()
    decision = rollout.end_job(gates(Verdict.SUCCESSFUL, Verdict.INCONCLUSIVE))

    canary = decision.status.canary
    assert (canary.state, canary.reason) == (S.PAUSED, R.ANALYSIS_INCONCLUSIVE)
    assert "resume runs it again" in canary.message
    assert canary.evaluation.verdict is Verdict.INCONCLUSIVE
    assert rollout.cluster.replicas(rollout.revision) == 1, "nothing is rolled back"
    assert decision.status.analysis.inconclusive == 1

    decision = rollout.reconcile(action=Action.RESUME)
    rollout.converge()
    assert rollout.created == [(0, 1), (0, 2)]
    assert rollout.status.canary.state is S.PROGRESSING
    decision = rollout.end_job(gates(Verdict.SUCCESSFUL))
    assert decision.status.stable.revision == rollout.revision


def test_an_evaluation_that_could_not_run_pauses_like_a_query_error() -> None:
    rollout = evaluating([EVALUATE])
    rollout.converge()
    decision = rollout.end_job(gates(Verdict.ERROR, Verdict.ERROR))
    assert decision.status.canary.reason is R.ANALYSIS_INCONCLUSIVE
    assert decision.status.canary.evaluation.verdict is Verdict.ERROR


def test_a_passing_metric_round_does_not_lift_a_pause_the_evaluation_holds() -> None:
    rollout = evaluating([{"setWeight": 25}, EVALUATE, {"setWeight": 50}], analysis=ANALYSIS)
    rollout.metrics = lambda revision: GOOD
    rollout.converge()
    rollout.wait(30)
    assert rollout.status.canary.step == 1
    rollout.end_job(gates(Verdict.SUCCESSFUL, Verdict.INCONCLUSIVE))
    decision = rollout.wait(30)

    assert rollout.measured_at, "metrics are measured while the canary has weight"
    assert (decision.status.canary.state, decision.status.canary.step) == (S.PAUSED, 1)


def test_promote_skips_a_running_evaluation_and_its_job_goes() -> None:
    rollout = evaluating([EVALUATE, {"setWeight": 50}, {"pause": {}}])
    rollout.converge()
    assert rollout.jobs
    decision = rollout.reconcile(action=Action.PROMOTE)
    assert decision.status.canary.step == 1
    assert decision.evaluation is None and not rollout.jobs


def test_retry_runs_every_evaluation_again() -> None:
    rollout = evaluating([EVALUATE, {"setWeight": 50}])
    rollout.converge()
    rollout.end_job(gates(Verdict.FAILED))
    rollout.reconcile(action=Action.RETRY)
    rollout.converge()
    assert rollout.created == [(0, 1), (0, 2)]
    assert rollout.status.canary.evaluation.verdict is None
    decision = rollout.end_job(gates(Verdict.SUCCESSFUL))
    assert decision.status.stable.revision == rollout.revision


def test_a_job_of_a_canary_that_crashes_mid_evaluation_stops() -> None:
    rollout = evaluating([EVALUATE, {"setWeight": 50}])
    rollout.converge()
    rollout.cluster.broken[rollout.revision] = "crash"
    decision = rollout.reconcile()
    assert decision.status.canary.reason is R.CANARY_CRASH_LOOPING
    assert decision.evaluation is None and not rollout.jobs


# -- the other ways of routing and sizing ---------------------------------------------------------


def test_with_an_httproute_its_weight_of_zero_keeps_users_off_the_evaluated_canary() -> None:
    rollout = evaluating([EVALUATE, {"setWeight": 50}], **GATEWAY)
    decision = rollout.converge()
    assert decision.service_revision is None
    assert (decision.stable_weight, decision.canary_weight) == (100, 0)
    assert rollout.cluster.replicas(rollout.revision) == 1
    assert rollout.created == [(0, 1)]


def test_without_room_to_surge_the_evaluation_pod_takes_a_place_max_unavailable_frees() -> None:
    rollout = evaluating([EVALUATE, {"setWeight": 50}], maxSurge=0, maxUnavailable=1)
    stable = stable_of(rollout)
    rollout.converge()
    assert rollout.cluster.snapshot() == {stable: (3, 3), rollout.revision: (1, 1)}
    assert rollout.created == [(0, 1)]


def test_an_evaluation_after_a_weight_keeps_the_service_on_every_pod() -> None:
    rollout = evaluating([{"setWeight": 50}, EVALUATE, {"setWeight": 100}])
    decision = rollout.converge()
    assert decision.status.canary.step == 1
    assert decision.service_revision is None
    assert decision.canary_weight == 50
    assert rollout.created == [(1, 1)]


# -- timers ---------------------------------------------------------------------------------------


def test_a_running_evaluation_is_looked_at_again_by_the_bound_of_its_job_not_every_second() -> None:
    rollout = evaluating([EVALUATE, {"setWeight": 50}])
    decision = rollout.converge()
    assert decision.requeue_after == 5 * 60 + 30  # its timeout, and a grace


def test_no_analysis_round_while_the_canary_gets_no_user_traffic() -> None:
    rollout = evaluating([EVALUATE, {"setWeight": 50}], analysis=ANALYSIS)
    rollout.converge()
    rollout.now = T0 + dt.timedelta(minutes=5)
    assert rollout.status.canary.ready_replicas == 1
    assert not analysis_due(rollout.md, rollout.revision, rollout.now)


def test_a_measurement_round_in_flight_is_woken_by_its_end_and_its_bound_is_the_safety_net() -> (
    None
):
    rollout = Rollout.deployed(
        model_deployment(rollout=canary_rollout([{"setWeight": 50}], analysis=ANALYSIS))
    )
    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.now += dt.timedelta(seconds=30)
    assert analysis_due(rollout.md, rollout.revision, rollout.now)
    observed = rollout.observe()
    in_flight = Observed(
        revisions=observed.revisions, measuring_until=rollout.now + dt.timedelta(seconds=15)
    )
    decision = decide(
        rollout.md, rollout.revision, in_flight, None, None, rollout.now, rollout.pins
    )
    assert decision.requeue_after == 15
    # without a round in flight, a measurement that is due is asked for at once
    decision = decide(rollout.md, rollout.revision, observed, None, None, rollout.now, rollout.pins)
    assert decision.requeue_after == MIN_REQUEUE_SECONDS


def test_an_evaluation_gate_named_like_a_metric_is_no_evidence_for_the_metric() -> None:
    steps = [EVALUATE, {"setWeight": 50}, {"pause": {"duration": "1m"}}]
    rollout = evaluating(steps, analysis=ANALYSIS)
    rollout.converge()
    decision = rollout.end_job(gates(Verdict.SUCCESSFUL))
    # at weight 50 the step waits for a measurement of the metric error-rate, not the gate's
    assert decision.status.canary.step == 1
    assert decision.status.canary.state is S.PROGRESSING
