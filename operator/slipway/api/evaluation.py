"""The evaluation step: a fixed evaluation set sent to the canary and to stable, answers compared.

`steps: [{evaluate: {...}}]` runs `slipway evaluate` as a Kubernetes Job from the operator image;
its numbers (the `EvaluationResult`) come back through the Job pod's termination message, and
the gates judge them as analysis metrics are judged.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import ConfigDict, Field, field_validator, model_validator

from slipway.api.storage import (
    PVC_URI_RULE,
    URI_MESSAGE,
    URI_PATTERN,
    ModelStorage,
    pvc_uri_problem,
)
from slipway.api.types import DNS_LABEL, ApiModel, Duration


class Measure(StrEnum):
    """What an evaluation gate judges."""

    AGREEMENT = "agreement"  # share of answers where the canary agrees with stable
    ACCURACY = "accuracy"  # share of the canary's answers equal to the expected outputs
    PSI = "psi"  # population stability index, canary's outputs against stable's
    KS = "ks"  # Kolmogorov-Smirnov statistic (numbers)
    LABEL_DISTANCE = "label-distance"  # total variation distance of label frequencies
    LATENCY_P50 = "latency-p50"
    LATENCY_P99 = "latency-p99"
    ERROR_RATE = "error-rate"  # share of requests without an answer


# measures that have a value per side, and so can be compared with stable's
PER_SIDE = (Measure.ACCURACY, Measure.LATENCY_P50, Measure.LATENCY_P99, Measure.ERROR_RATE)


class Compare(StrEnum):
    """How outputs are compared."""

    LABELS = "labels"  # classes: equal or not; label frequencies
    NUMBERS = "numbers"  # numbers: equal within tolerance; PSI over bins, KS


class EvaluationData(ApiModel):
    """The evaluation set: JSON lines, one request per line, with optional expected outputs."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.uri.matches('{URI_PATTERN}')",
                    "message": URI_MESSAGE,
                    "fieldPath": ".uri",
                },
                PVC_URI_RULE,
            ]
        }
    )

    uri: str = Field(
        min_length=1,
        max_length=2048,
        description="Where the file (or a directory of *.jsonl files) is, as a model's uri. Each "
        "line: a V2 inference request ({inputs: [...]}) or, for runtime protocol openai, an "
        "OpenAI request ({messages: [...]} or {prompt: ...}); an optional 'expected' key holds "
        "the right output (one per prediction of a batch).",
    )
    storage: ModelStorage | None = Field(
        default=None, description="Credentials and size limit for fetching it."
    )

    @field_validator("uri")
    @classmethod
    def _mountable_or_fetchable(cls, uri: str) -> str:
        # the CRD's rules, for an object stored before them: the Job could never be built
        if re.match(URI_PATTERN, uri) is None:
            raise ValueError(URI_MESSAGE)
        problem = pvc_uri_problem(uri)
        if problem is not None:
            raise ValueError(problem)
        return uri


class EvaluationGate(ApiModel):
    """A threshold on one measure of the evaluation, judged like an analysis metric."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.min) || has(self.max) || has(self.maxRatioToStable) "
                    "|| has(self.maxIncreaseOverStable)",
                    "message": "a gate needs a threshold: min, max, maxRatioToStable or "
                    "maxIncreaseOverStable",
                },
                {
                    "rule": "!(has(self.maxRatioToStable) || has(self.maxIncreaseOverStable)) "
                    f"|| self.measure in {[m.value for m in PER_SIDE]}",
                    "message": "only accuracy, latency-p50, latency-p99 and error-rate have a "
                    "value for each side to compare with stable; agreement, psi, ks and "
                    "label-distance compare the two already",
                    "fieldPath": ".measure",
                },
                {
                    "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                    "message": "min must not be greater than max",
                    "fieldPath": ".min",
                },
            ]
        }
    )

    measure: Measure = Field(description="What is judged.")
    name: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_LABEL,
        description="Name in status and metrics. Default: the measure.",
    )
    min: float | None = Field(default=None, description="Lowest acceptable value.")
    max: float | None = Field(default=None, description="Highest acceptable value.")
    max_ratio_to_stable: float | None = Field(
        default=None, ge=0, description="The canary's value may be at most this times stable's."
    )
    max_increase_over_stable: float | None = Field(
        default=None, ge=0, description="The canary's value may exceed stable's by this much."
    )

    @model_validator(mode="after")
    def _named_after_the_measure(self) -> EvaluationGate:
        if self.name is None:
            self.name = self.measure.value
        return self

    @property
    def metric_name(self) -> str:
        return self.name or self.measure.value

    @property
    def relative(self) -> bool:
        return self.max_ratio_to_stable is not None or self.max_increase_over_stable is not None


def _gate_name(var: str) -> str:
    """A gate's name in CEL: its name, or its measure when it has none."""
    return f"(has({var}.name) ? {var}.name : {var}.measure)"


class EvaluateStep(ApiModel):
    """Send the evaluation set to the canary and to stable (their Services) and judge the
    answers with gates; a failed gate fails the canary like a failed analysis."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.gates.all(a, self.gates.exists_one(b, "
                    f"{_gate_name('b')} == {_gate_name('a')}))",
                    "message": "gate names must be unique (a gate without a name is named after "
                    "its measure): name the second one",
                    "fieldPath": ".gates",
                }
            ]
        }
    )

    data: EvaluationData = Field(description="The evaluation set.")
    output: str | None = Field(
        default=None,
        max_length=253,
        description="V2: the name of the output tensor compared. Default: the first output.",
    )
    compare: Compare = Field(
        default=Compare.LABELS,
        description="labels: outputs are classes (agreement is equality; distribution by label "
        "frequencies); numbers: outputs are numbers (agreement within tolerance; PSI over "
        "deciles of stable's outputs, KS).",
    )
    tolerance: float = Field(
        default=0.0,
        ge=0,
        description="numbers: two outputs agree when they differ by at most this.",
    )
    limit: int | None = Field(
        default=None, ge=1, le=100000, description="Send at most this many lines. Default: all."
    )
    concurrency: int = Field(default=4, ge=1, le=64, description="Lines in flight at once.")
    request_timeout: Duration = Field(
        default="30s", description="Timeout of one request; a request without answer is an error."
    )
    timeout: Duration = Field(
        default="10m", description="The whole evaluation; a Job still running then has failed."
    )
    min_samples: int = Field(
        default=1,
        ge=0,
        description="Fewest answers (on each side for a comparison with stable) a gate needs; "
        "fewer is Inconclusive.",
    )
    gates: list[EvaluationGate] = Field(
        min_length=1, max_length=16, description="Thresholds that must all pass."
    )


class SideResult(ApiModel):
    """What one side (canary or stable) answered."""

    requests: int = Field(default=0, ge=0, description="Requests sent.")
    errors: int = Field(default=0, ge=0, description="Requests without a usable answer.")
    predictions: int = Field(default=0, ge=0, description="Predictions answered.")
    latency_p50: float | None = Field(default=None, description="Seconds.")
    latency_p99: float | None = Field(default=None, description="Seconds.")
    accuracy: float | None = Field(
        default=None, description="Share of predictions equal to the expected outputs."
    )
    expected: int = Field(default=0, ge=0, description="Predictions that had an expected output.")
    first_error: str | None = Field(
        default=None, max_length=200, description="What went wrong with the first failed request."
    )


class EvaluationResult(ApiModel):
    """What `slipway evaluate` reports (the Job pod's termination message)."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    version: int = Field(default=1, description="Format of this result.")
    error: str | None = Field(default=None, description="Why the evaluation could not run.")
    lines: int = Field(default=0, ge=0, description="Lines of the evaluation set sent.")
    compared: int = Field(
        default=0, ge=0, description="Predictions both sides answered (agreement rests on them)."
    )
    agreement: float | None = Field(
        default=None, description="Share of compared predictions that agree."
    )
    psi: float | None = Field(default=None, description="Population stability index.")
    ks: float | None = Field(default=None, description="Kolmogorov-Smirnov statistic.")
    label_distance: float | None = Field(
        default=None, description="Total variation distance of the label frequencies."
    )
    canary: SideResult = Field(default_factory=SideResult)
    stable: SideResult = Field(default_factory=SideResult)
