"""The operator's side of an evaluation: the result read from the Job's pod, judged by the gates."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from slipway.analysis.evaluation import (
    ResultUnreadable,
    failed_to_run,
    judge_evaluation,
    result_of_pod,
)
from slipway.api import Verdict
from slipway.api.evaluation import EvaluateStep, EvaluationResult

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)

RESULT = EvaluationResult.model_validate(
    {
        "lines": 200,
        "compared": 196,
        "agreement": 0.97,
        "psi": 0.08,
        "labelDistance": 0.03,
        "canary": {
            "requests": 200, "errors": 4, "predictions": 196, "latencyP50": 0.012,
            "latencyP99": 0.09, "accuracy": 0.93, "expected": 200,
        },
        "stable": {
            "requests": 200, "errors": 0, "predictions": 200, "latencyP50": 0.010,
            "latencyP99": 0.05, "accuracy": 0.95, "expected": 200,
        },
    }
)  # fmt: skip


def step(*gates: dict[str, Any], **extra: Any) -> EvaluateStep:
    return EvaluateStep.model_validate(
        {"data": {"uri": "s3://eval/fraud.jsonl"}, "gates": list(gates), **extra}
    )


def pod(terminated: dict[str, Any] | None) -> dict[str, Any]:
    state = {"terminated": terminated} if terminated is not None else {"running": {}}
    return {"status": {"containerStatuses": [{"name": "evaluate", "state": state}]}}


def test_the_result_is_the_evaluation_containers_termination_message() -> None:
    message = json.dumps(RESULT.wire())
    assert result_of_pod(pod({"exitCode": 0, "message": message})) == RESULT


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (pod(None), "has not finished"),
        (pod({"exitCode": 137, "reason": "OOMKilled"}), "ended (OOMKilled, exit code 137)"),
        (pod({"exitCode": 1, "message": "Traceback (most recent call last): secret"}), "not one"),
        ({"status": {}}, "has not finished"),
    ],
)
def test_a_pod_without_a_readable_result_says_why_in_our_words(
    status: dict[str, Any], says: str
) -> None:
    with pytest.raises(ResultUnreadable, match=re.escape(says)) as err:
        result_of_pod(status)
    assert "secret" not in str(err.value)


@pytest.mark.parametrize(
    ("gate", "verdict", "value", "stable", "message"),
    [
        ({"measure": "agreement", "min": 0.95}, Verdict.SUCCESSFUL, 0.97, None, "0.97 >= min 0.95"),
        ({"measure": "agreement", "min": 0.98}, Verdict.FAILED, 0.97, None, "0.97 < min 0.98"),
        ({"measure": "psi", "max": 0.1}, Verdict.SUCCESSFUL, 0.08, None, "0.08 <= max 0.1"),
        ({"measure": "label-distance", "max": 0.02}, Verdict.FAILED, 0.03, None, "0.03 > max 0.02"),
        # accuracy against stable: 0.93 against 0.95
        ({"measure": "accuracy", "maxIncreaseOverStable": 0}, Verdict.SUCCESSFUL, 0.93, 0.95,
         "canary 0.93 <= stable 0.95 + 0"),
        ({"measure": "accuracy", "min": 0.94}, Verdict.FAILED, 0.93, 0.95, "0.93 < min 0.94"),
        # p99 0.09 against 0.05: 1.8 times stable's
        ({"measure": "latency-p99", "maxRatioToStable": 1.5}, Verdict.FAILED, 0.09, 0.05,
         "canary 0.09 > 1.5 x stable 0.05 (maxRatioToStable)"),
        ({"measure": "latency-p50", "max": 0.1}, Verdict.SUCCESSFUL, 0.012, 0.010,
         "0.012 <= max 0.1"),
        # 4 of 200 requests failed: 0.02
        ({"measure": "error-rate", "max": 0.01}, Verdict.FAILED, 0.02, 0.0, "0.02 > max 0.01"),
        ({"measure": "ks", "max": 0.1}, Verdict.INCONCLUSIVE, None, None,
         "no data (ks compares numbers: set compare: numbers)"),
    ],
)  # fmt: skip
def test_each_gate_judges_its_measure(
    gate: dict[str, Any],
    verdict: Verdict,
    value: float | None,
    stable: float | None,
    message: str,
) -> None:
    [measured] = judge_evaluation(step(gate), RESULT, "9ab1", NOW)
    assert (measured.verdict, measured.value, measured.stable_value) == (verdict, value, stable)
    assert measured.message == f"evaluation: {message}"
    assert measured.metric == gate["measure"]
    assert measured.query == "evaluate s3://eval/fraud.jsonl: 200 lines to canary and stable"
    assert (measured.revision, measured.at) == ("9ab1", "2024-05-01T12:00:00Z")


def test_too_few_answers_on_either_side_is_inconclusive() -> None:
    thin = RESULT.model_copy(deep=True)
    thin.stable.errors = 195  # 5 answered
    gates = step({"measure": "latency-p99", "maxRatioToStable": 2}, minSamples=10)
    [measured] = judge_evaluation(gates, thin, "9ab1", NOW)
    assert (measured.verdict, measured.message) == (
        Verdict.INCONCLUSIVE,
        "evaluation: stable: 5 samples, needs 10",
    )


def test_accuracy_without_expected_outputs_is_inconclusive_and_says_so() -> None:
    bare = RESULT.model_copy(deep=True)
    bare.canary.accuracy, bare.canary.expected = None, 0
    [measured] = judge_evaluation(step({"measure": "accuracy", "min": 0.9}), bare, "9ab1", NOW)
    assert measured.verdict is Verdict.INCONCLUSIVE
    assert "the evaluation set has no expected outputs" in measured.message


def test_an_evaluation_that_could_not_run_is_an_error_for_every_gate() -> None:
    broken = EvaluationResult(error="fraud.jsonl: line 3 is not JSON: Expecting value at column 1")
    gates = step(
        {"measure": "agreement", "min": 0.9}, {"measure": "psi", "name": "drift", "max": 1}
    )
    measured = judge_evaluation(gates, broken, "9ab1", NOW)
    assert [(m.metric, m.verdict) for m in measured] == [
        ("agreement", Verdict.ERROR),
        ("drift", Verdict.ERROR),
    ]
    assert "line 3 is not JSON" in measured[0].message
    assert [m.verdict for m in failed_to_run(gates, "the Job failed", "9ab1", NOW)] == [
        Verdict.ERROR,
        Verdict.ERROR,
    ]


def test_gates_are_named_after_their_measure_unless_named() -> None:
    gates = step(
        {"measure": "psi", "max": 0.2}, {"measure": "psi", "name": "psi-strict", "max": 0.05}
    )
    assert [g.metric_name for g in gates.gates] == ["psi", "psi-strict"]


def test_an_evaluation_step_needs_data_and_a_gate() -> None:
    with pytest.raises(ValidationError):
        EvaluateStep.model_validate({"data": {"uri": "s3://eval/x.jsonl"}, "gates": []})
