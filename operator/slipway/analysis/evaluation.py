"""The operator's side of an evaluation step: read the Job's result, judge it with the gates. Pure.

The Job (resources/evaluation.py) runs `slipway evaluate`, which writes an `EvaluationResult` as
its container's termination message. Each gate becomes a `Measurement` in status.analysis, judged
by the same rules as analysis metrics (slipway.analysis.verdict): no data or too few answers is
Inconclusive, a threshold crossed is Failed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from slipway.analysis.prometheus import finite
from slipway.analysis.verdict import Side, verdict_of
from slipway.api import Measurement, Verdict
from slipway.api.evaluation import (
    EvaluateStep,
    EvaluationGate,
    EvaluationResult,
    Measure,
    SideResult,
)
from slipway.resources.evaluation import EVALUATE_CONTAINER
from slipway.rollout.times import rfc3339


class ResultUnreadable(ValueError):
    """A finished evaluation pod without a result Slipway can read; the message says why."""


def result_of_pod(pod: Mapping[str, Any]) -> EvaluationResult:
    """The result in the termination message of the evaluation pod's container."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or ()
    status = next((s for s in statuses if s.get("name") == EVALUATE_CONTAINER), None)
    terminated = ((status or {}).get("state") or {}).get("terminated")
    if not terminated:
        raise ResultUnreadable("the evaluation container has not finished")
    message = terminated.get("message") or ""
    if not message:
        reason = terminated.get("reason") or "no reason given"
        code = terminated.get("exitCode")
        raise ResultUnreadable(
            f"the evaluation container ended ({reason}, exit code {code}) without a result"
        )
    try:
        return EvaluationResult.model_validate(json.loads(message))
    except (ValueError, ValidationError) as exc:
        raise ResultUnreadable(
            "the evaluation container's result is not one Slipway can read"
        ) from exc


def judge_evaluation(
    step: EvaluateStep,
    result: EvaluationResult,
    revision: str,
    now: dt.datetime,
) -> list[Measurement]:
    """One measurement per gate, in spec order."""
    sent = f"evaluate {step.data.uri}: {result.lines} lines to canary and stable"
    return [_judged(gate, step, result, revision, now, sent) for gate in step.gates]


def failed_to_run(
    step: EvaluateStep, why: str, revision: str, now: dt.datetime
) -> list[Measurement]:
    """An Error measurement per gate: the evaluation gave no numbers (it pauses, as an analysis
    that cannot query Prometheus does)."""
    return [
        Measurement(
            metric=gate.metric_name,
            min=gate.min,
            max=gate.max,
            max_ratio_to_stable=gate.max_ratio_to_stable,
            max_increase_over_stable=gate.max_increase_over_stable,
            verdict=Verdict.ERROR,
            message=f"evaluation: {why}",
            query=f"evaluate {step.data.uri}",
            at=rfc3339(now),
            revision=revision,
        )
        for gate in step.gates
    ]


def _judged(
    gate: EvaluationGate,
    step: EvaluateStep,
    result: EvaluationResult,
    revision: str,
    now: dt.datetime,
    sent: str,
) -> Measurement:
    if result.error:
        return failed_to_run(step, f"it could not run: {result.error}", revision, now)[
            0
        ].model_copy(update={"metric": gate.metric_name})
    canary, stable = sides_of(gate.measure, result)
    verdict, message = verdict_of(
        gate, canary.value, canary.samples, step.min_samples, stable if gate.relative else None
    )
    if message == "no data":
        message = f"no data ({_why_no_data(gate.measure, step, result)})"
    shown = stable if gate.measure in _PER_SIDE else None
    return Measurement(
        metric=gate.metric_name,
        value=finite(canary.value),
        min=gate.min,
        max=gate.max,
        samples=canary.samples,
        verdict=verdict,
        message=f"evaluation: {message}",
        query=sent,
        at=rfc3339(now),
        revision=revision,
        stable_value=finite(shown.value) if shown else None,
        stable_samples=shown.samples if shown else None,
        max_ratio_to_stable=gate.max_ratio_to_stable,
        max_increase_over_stable=gate.max_increase_over_stable,
    )


_PER_SIDE = (Measure.ACCURACY, Measure.LATENCY_P50, Measure.LATENCY_P99, Measure.ERROR_RATE)


def sides_of(measure: Measure, result: EvaluationResult) -> tuple[Side, Side]:
    """The value of `measure` for the canary and for stable, with the samples each rests on
    (measures of the two together have the same value and samples on both sides)."""
    both = float(min(result.canary.predictions, result.stable.predictions))
    if measure is Measure.AGREEMENT:
        shared = Side(result.agreement, float(result.compared))
        return shared, shared
    if measure in (Measure.PSI, Measure.KS, Measure.LABEL_DISTANCE):
        value = {
            Measure.PSI: result.psi,
            Measure.KS: result.ks,
            Measure.LABEL_DISTANCE: result.label_distance,
        }[measure]
        return Side(value, both), Side(value, both)
    return _per_side(measure, result.canary), _per_side(measure, result.stable)


def _per_side(measure: Measure, side: SideResult) -> Side:
    answered = float(side.requests - side.errors)
    if measure is Measure.ACCURACY:
        return Side(side.accuracy, float(side.expected))
    if measure is Measure.ERROR_RATE:
        rate = side.errors / side.requests if side.requests else None
        return Side(rate, float(side.requests))
    value = side.latency_p50 if measure is Measure.LATENCY_P50 else side.latency_p99
    return Side(value, answered)


def _why_no_data(measure: Measure, step: EvaluateStep, result: EvaluationResult) -> str:
    if measure is Measure.ACCURACY and not result.canary.expected:
        return "the evaluation set has no expected outputs"
    if measure is Measure.KS and step.compare.value == "labels":
        return "ks compares numbers: set compare: numbers"
    if measure is Measure.LABEL_DISTANCE and step.compare.value == "numbers":
        return "label-distance compares labels: set compare: labels"
    return "no request was answered by both sides"
