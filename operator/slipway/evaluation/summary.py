"""From what both sides answered to the numbers of an evaluation (`EvaluationResult`). Pure."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from slipway.api.evaluation import Compare, EvaluationResult, SideResult
from slipway.evaluation.protocol import Line
from slipway.evaluation.stats import (
    Output,
    ks_statistic,
    label_distance,
    psi_labels,
    psi_numbers,
    quantile,
    same,
    share_equal,
)


@dataclass(frozen=True)
class Answer:
    """One side's answer to one line."""

    seconds: float | None  # how long the answer took; None when there was none
    predictions: list[Output] | None  # None: no usable answer
    error: str | None = None  # what went wrong, in our words

    @property
    def ok(self) -> bool:
        return self.predictions is not None


@dataclass(frozen=True)
class Exchange:
    """One line of the evaluation set, sent to both sides."""

    line: Line
    canary: Answer
    stable: Answer


# one side of an exchange: its canary's answer, or its stable's
Pick = Callable[[Exchange], Answer]


def summarize(
    exchanges: Sequence[Exchange], compare: Compare, tolerance: float
) -> EvaluationResult:
    """The evaluation's numbers: agreement over predictions both sides answered, accuracy of
    each side against the expected outputs (an unanswered prediction is not accurate), the
    distance between the two sides' output distributions, latency and errors per side."""
    within = tolerance if compare is Compare.NUMBERS else None
    pairs: list[tuple[Output, Output]] = []
    for exchange in exchanges:
        c, s = exchange.canary.predictions, exchange.stable.predictions
        if c is not None and s is not None and len(c) == len(s):
            pairs.extend(zip(c, s, strict=True))
    canary = _side(exchanges, lambda e: e.canary, within)
    stable = _side(exchanges, lambda e: e.stable, within)
    canary_outputs = _outputs(exchanges, lambda e: e.canary)
    stable_outputs = _outputs(exchanges, lambda e: e.stable)
    result = EvaluationResult(
        lines=len(exchanges),
        compared=len(pairs),
        agreement=share_equal(pairs, within),
        canary=canary,
        stable=stable,
    )
    if compare is Compare.NUMBERS:
        canary_numbers, stable_numbers = _numbers(canary_outputs), _numbers(stable_outputs)
        result.psi = psi_numbers(stable_numbers, canary_numbers)
        result.ks = ks_statistic(canary_numbers, stable_numbers)
    else:
        canary_labels, stable_labels = _labels(canary_outputs), _labels(stable_outputs)
        result.psi = psi_labels(stable_labels, canary_labels)
        result.label_distance = label_distance(canary_labels, stable_labels)
    return result


def _side(exchanges: Sequence[Exchange], side: Pick, tolerance: float | None) -> SideResult:
    answers = [side(e) for e in exchanges]
    seconds = [a.seconds for a in answers if a.ok and a.seconds is not None]
    expected = correct = 0
    for exchange, answer in zip(exchanges, answers, strict=True):
        wanted = exchange.line.expected
        if wanted is None:
            continue
        expected += len(wanted)
        if answer.predictions is not None and len(answer.predictions) == len(wanted):
            correct += sum(
                1
                for got, want in zip(answer.predictions, wanted, strict=True)
                if same(got, want, tolerance)
            )
    first_error = next((a.error for a in answers if not a.ok and a.error), None)
    return SideResult(
        requests=len(answers),
        errors=sum(1 for a in answers if not a.ok),
        predictions=sum(len(a.predictions) for a in answers if a.predictions is not None),
        latency_p50=quantile(seconds, 0.5),
        latency_p99=quantile(seconds, 0.99),
        accuracy=correct / expected if expected else None,
        expected=expected,
        first_error=first_error,
    )


def _outputs(exchanges: Sequence[Exchange], side: Pick) -> list[Output]:
    return [p for e in exchanges if (a := side(e)).predictions for p in a.predictions or ()]


def _labels(outputs: Sequence[Output]) -> list[Hashable]:
    """A prediction of one value is that value; of several, the tuple."""
    return [o[0] if len(o) == 1 else o for o in outputs]


def _numbers(outputs: Sequence[Output]) -> list[float]:
    """Every value that is a number (booleans and text are not)."""
    return [
        float(v)
        for o in outputs
        for v in o
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
