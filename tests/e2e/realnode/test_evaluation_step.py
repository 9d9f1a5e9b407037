"""The evaluation step on real pods (issue 13, section 4): a fixed evaluation set sent by
`slipway evaluate` (a Job from the operator's image) to the canary's and the stable's MLServer,
the answers compared, the gates judged by the operator.

The evaluation set is the 150 iris measurements with their classes, and ten rows with a negative
feature and no class (the erring model refuses them). What the status says is checked against
the models' own predictions, computed here with the same scikit-learn (`models.predict`). All
along, the load generator sends user requests through Service iris: the evaluation comes before
any weight, so the canary's pod must answer none of them, and none may be lost while Service iris
leaves the canary out and takes it in again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.realnode.conftest import SECRET, Models, RealDriver, iris
from tests.e2e.realnode.load import Load, LoadResult
from tests.e2e.realnode.models import iris_data, predict, v2_request
from tests.e2e.realnode.test_rollouts_counted import (  # noqa: F401  (load: a fixture)
    FAST,
    MIN_REQUESTS,
    finish,
    gone,
    load,
    new_version,
    record,
    stable_is,
)

REPLICAS = 2
REVISION = "serving.slipway.dev/revision"
EVALUATION_KEY = "eval/iris.jsonl"


@dataclass(frozen=True)
class EvaluationSet:
    uri: str
    rows: list[list[float]]
    labels: list[int | None]  # None: a row without an expected class


@pytest.fixture(scope="module")
def evaluation_set(models: Models, tmp_path_factory: pytest.TempPathFactory) -> EvaluationSet:
    """Iris with its classes, and ten centred rows (a negative feature) without one, in S3."""
    rows, classes = iris_data()
    centred = [[-row[0], *row[1:]] for row in rows[:10]]
    labels: list[int | None] = [*classes, *([None] * len(centred))]
    every = [*rows, *centred]
    lines = []
    for row, label in zip(every, labels, strict=True):
        line: dict[str, Any] = v2_request([row])
        if label is not None:
            line["expected"] = [label]
        lines.append(json.dumps(line))
    path: Path = tmp_path_factory.mktemp("evaluation") / "iris.jsonl"
    path.write_text("\n".join(lines) + "\n")
    models.store.upload(path, EVALUATION_KEY)
    return EvaluationSet(uri=f"s3://models/{EVALUATION_KEY}", rows=every, labels=labels)


@dataclass(frozen=True)
class Expected:
    """What the evaluation must measure, from the models' own predictions."""

    agreement: float
    compared: int
    accuracy: float  # the canary's
    stable_accuracy: float
    error_rate: float  # the canary's
    errors: int


def expected(models: Models, data: EvaluationSet, canary: str, stable: str) -> Expected:
    ours = predict(models.trained[canary], data.rows)
    theirs = predict(models.trained[stable], data.rows)
    pairs = [(c, s) for c, s in zip(ours, theirs, strict=True) if c is not None and s is not None]
    labelled = [(i, label) for i, label in enumerate(data.labels) if label is not None]

    def accuracy(predictions: Sequence[int | None]) -> float:
        return sum(1 for i, label in labelled if predictions[i] == label) / len(labelled)

    errors = sum(1 for c in ours if c is None)
    return Expected(
        agreement=sum(1 for c, s in pairs if c == s) / len(pairs),
        compared=len(pairs),
        accuracy=accuracy(ours),
        stable_accuracy=accuracy(theirs),
        error_rate=errors / len(data.rows),
        errors=errors,
    )


def evaluate_step(data: EvaluationSet, *gates: dict[str, Any]) -> dict[str, Any]:
    return {
        "evaluate": {
            "data": {"uri": data.uri, "storage": {"secretName": SECRET}},
            "timeout": "5m",
            "gates": list(gates),
        }
    }


def deployed(rk: RealDriver, steps: list[dict[str, Any]]) -> str:
    """iris 1.0.0 on two real pods, Ready and routed; its stable revision."""
    rk.apply(
        iris("1.0.0", replicas=REPLICAS, rollout={"strategy": "Canary", "steps": steps, **FAST})
    )
    md = rk.wait_phase("iris", "Ready", timeout=300)
    rk.routable("iris")
    return str(md["status"]["stable"]["revision"])


def gates_of(md: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The evaluation's measurements in status, by gate."""
    measurements = (md["status"].get("analysis") or {}).get("measurements") or []
    return {m["metric"]: m for m in measurements if m.get("step") is not None}


def service_left_the_canary_out(rk: RealDriver, stable: str) -> Callable[[], bool]:
    return lambda: (
        (rk.get("service", "iris") or {}).get("spec", {}).get("selector", {}).get(REVISION)
        == stable
    )


def no_user_request_lost(result: LoadResult) -> None:
    assert result.sent >= MIN_REQUESTS, result.summary()
    assert result.failed == 0, (result.summary(), result.failures[:20])


def test_a_canary_whose_answers_differ_is_rolled_back_by_its_evaluation_before_any_user_sees_it(
    rk: RealDriver,
    models: Models,
    evaluation_set: EvaluationSet,
    load: Callable[[], Load],  # noqa: F811
) -> None:
    step = evaluate_step(
        evaluation_set,
        {"measure": "agreement", "min": 0.9},
        {"measure": "accuracy", "min": 0.9},
        {"measure": "error-rate", "max": 0.01},
    )
    stable = deployed(rk, [step, {"setWeight": 50}, {"pause": {}}])
    generator = load()
    new_version(rk, "3.0.0-worse")
    rk.wait("Service iris to leave the canary out", service_left_the_canary_out(rk, stable))
    md = rk.wait_phase("iris", "RolledBack", timeout=300)
    canary = md["status"]["canary"]
    rk.wait("the canary pod to be gone", gone(rk, canary["revision"]), timeout=120)
    rk.wait(
        "Service iris to select every pod again",
        lambda: REVISION not in rk.get("service", "iris")["spec"]["selector"],
    )
    result = finish(generator)
    want = expected(models, evaluation_set, "3.0.0-worse", "1.0.0")
    measured = gates_of(md)
    record(
        "evaluation: a canary whose answers differ, rolled back",
        result,
        measured_agreement=measured["agreement"]["value"],
        predicted_agreement=want.agreement,
        measured_accuracy=measured["accuracy"]["value"],
        predicted_accuracy=want.accuracy,
        stable_accuracy=measured["accuracy"]["stableValue"],
    )

    assert (canary["reason"], canary["evaluation"]["verdict"]) == ("AnalysisFailed", "Failed")
    assert measured["agreement"]["verdict"] == "Failed"
    assert measured["agreement"]["value"] == pytest.approx(want.agreement, abs=1e-9)
    assert measured["agreement"]["samples"] == want.compared == len(evaluation_set.rows)
    assert measured["accuracy"]["value"] == pytest.approx(want.accuracy, abs=1e-9)
    assert measured["accuracy"]["stableValue"] == pytest.approx(want.stable_accuracy, abs=1e-9)
    assert measured["accuracy"]["verdict"] == "Failed"
    assert (
        measured["error-rate"]["value"] == 0 and measured["error-rate"]["verdict"] == "Successful"
    )
    # the user requests: none lost, and the canary, evaluated before any weight, answered none
    no_user_request_lost(result)
    assert set(result.versions) == {"1.0.0"}, result.versions


def test_a_canary_that_errs_on_part_of_the_set_is_rolled_back_by_its_evaluation(
    rk: RealDriver,
    models: Models,
    evaluation_set: EvaluationSet,
    load: Callable[[], Load],  # noqa: F811
) -> None:
    step = evaluate_step(evaluation_set, {"measure": "error-rate", "max": 0.01})
    stable = deployed(rk, [step, {"setWeight": 50}, {"pause": {}}])
    generator = load()
    new_version(rk, "2.0.0-bad")
    md = rk.wait_phase("iris", "RolledBack", timeout=300)
    rk.wait("the canary pod to be gone", gone(rk, md["status"]["canary"]["revision"]), 120)
    result = finish(generator)
    want = expected(models, evaluation_set, "2.0.0-bad", "1.0.0")
    errors = gates_of(md)["error-rate"]
    record(
        "evaluation: a canary that errs on part of the set, rolled back",
        result,
        measured_error_rate=errors["value"],
        predicted_error_rate=want.error_rate,
    )

    assert want.errors == 10, "the model refuses the ten centred rows, and only those"
    assert errors["verdict"] == "Failed"
    assert errors["value"] == pytest.approx(want.error_rate, abs=1e-9)
    assert errors["samples"] == len(evaluation_set.rows)
    assert errors["stableValue"] == 0
    assert "error-rate" in rk.md("iris")["status"]["canary"]["message"]
    no_user_request_lost(result)
    assert set(result.versions) == {"1.0.0"}, result.versions
    assert rk.md("iris")["status"]["stable"]["revision"] == stable


def test_a_good_canary_passes_its_evaluation_and_is_promoted_losing_no_request(
    rk: RealDriver,
    models: Models,
    evaluation_set: EvaluationSet,
    load: Callable[[], Load],  # noqa: F811
) -> None:
    want = expected(models, evaluation_set, "1.1.0", "1.0.0")
    step = evaluate_step(
        evaluation_set,
        {"measure": "agreement", "min": round(want.agreement - 0.02, 3)},
        {"measure": "accuracy", "min": 0.8},
        {"measure": "error-rate", "max": 0},
        {"measure": "latency-p99", "max": 5},
    )
    stable = deployed(rk, [step, {"setWeight": 50}, {"pause": {"duration": "10s"}}])
    generator = load()
    new_version(rk, "1.1.0")
    rk.wait("Service iris to leave the canary out", service_left_the_canary_out(rk, stable))
    rk.wait("1.1.0 to be promoted", stable_is(rk, "1.1.0"), timeout=300)
    rk.wait("the old pods to be gone", gone(rk, stable), timeout=120)
    result = finish(generator)
    md = rk.md("iris")
    measured = gates_of(md)
    record(
        "evaluation: a good canary, promoted",
        result,
        measured_agreement=measured["agreement"]["value"],
        predicted_agreement=want.agreement,
        measured_accuracy=measured["accuracy"]["value"],
        predicted_accuracy=want.accuracy,
        stable_accuracy=measured["accuracy"]["stableValue"],
        latency_p99_s=measured["latency-p99"]["value"],
    )

    assert {m["verdict"] for m in measured.values()} == {"Successful"}, measured
    assert measured["agreement"]["value"] == pytest.approx(want.agreement, abs=1e-9)
    assert measured["accuracy"]["value"] == pytest.approx(want.accuracy, abs=1e-9)
    assert measured["accuracy"]["stableValue"] == pytest.approx(want.stable_accuracy, abs=1e-9)
    assert measured["error-rate"]["value"] == 0
    assert 0 < measured["latency-p99"]["value"] < 5
    assert REVISION not in rk.get("service", "iris")["spec"]["selector"]
    no_user_request_lost(result)
    assert set(result.versions) == {"1.0.0", "1.1.0"}, result.versions
