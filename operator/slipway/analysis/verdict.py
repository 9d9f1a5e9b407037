"""Verdicts of analysis measurements and the templating of their queries. Pure."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

from slipway.api import Verdict

# {{ name }}, with or without spaces inside the braces
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
PLACEHOLDERS = (
    "namespace",
    "name",
    "stable.revision",
    "canary.revision",
    "interval",
    "revision",
    "selector",
    "window",
)


class Thresholds(Protocol):
    """What a judgement needs of a metric or an evaluation gate."""

    @property
    def min(self) -> float | None: ...
    @property
    def max(self) -> float | None: ...
    @property
    def max_ratio_to_stable(self) -> float | None: ...
    @property
    def max_increase_over_stable(self) -> float | None: ...
    @property
    def relative(self) -> bool: ...


class TemplateError(ValueError):
    """A query template that names a placeholder Slipway does not know."""


def render_query(
    template: str,
    *,
    namespace: str,
    name: str,
    stable_revision: str,
    canary_revision: str,
    interval: str,
    revision: str,
    selector: str,
    window: str,
) -> str:
    """The query with every placeholder replaced: {{namespace}}, {{name}}, {{stable.revision}},
    {{canary.revision}}, {{interval}}, {{revision}} (the revision measured), {{selector}} (the
    label matchers of its scraped series) and {{window}}; an unknown one is an error that names
    it."""
    values = dict(
        zip(
            PLACEHOLDERS,
            (
                namespace,
                name,
                stable_revision,
                canary_revision,
                interval,
                revision,
                selector,
                window,
            ),
            strict=True,
        )
    )

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            known = ", ".join("{{" + p + "}}" for p in PLACEHOLDERS)
            raise TemplateError(
                f"unknown placeholder {match.group(0)} in query {template!r}; known: {known}"
            )
        return values[key]

    return _PLACEHOLDER.sub(substitute, template)


@dataclass(frozen=True)
class Side:
    """What one revision measured: its value and the samples it rests on (None: not counted)."""

    value: float | None
    samples: float | None = None


def verdict_of(
    metric: Thresholds,
    value: float | None,
    samples: float | None,
    min_samples: int,
    stable: Side | None = None,
) -> tuple[Verdict, str]:
    """Judge one measurement; the message says why, with the numbers.

    No value (or NaN) and too few samples are Inconclusive, never Failed: missing evidence is not
    evidence of a bad canary. `samples` None means the metric counts no samples. A metric compared
    with stable (maxRatioToStable, maxIncreaseOverStable) needs `stable`, measured over the same
    window; too little traffic on either side is Inconclusive.
    """
    if value is None or math.isnan(value):
        return Verdict.INCONCLUSIVE, "no data"
    short = _too_few(samples, min_samples)
    if short:
        return Verdict.INCONCLUSIVE, short
    if metric.max is not None and value > metric.max:
        return Verdict.FAILED, f"{value:g} > max {metric.max:g}"
    if metric.min is not None and value < metric.min:
        return Verdict.FAILED, f"{value:g} < min {metric.min:g}"
    absolute = f"{value:g} {_within(metric)}" if _bounded(metric) else ""
    if not metric.relative:
        return Verdict.SUCCESSFUL, absolute
    if stable is None:
        return Verdict.INCONCLUSIVE, "no stable revision to compare with"
    if stable.value is None or math.isnan(stable.value):
        return Verdict.INCONCLUSIVE, "no data for stable"
    short = _too_few(stable.samples, min_samples)
    if short:
        return Verdict.INCONCLUSIVE, f"stable: {short}"
    reference = stable.value
    ratio, increase = metric.max_ratio_to_stable, metric.max_increase_over_stable
    if ratio is not None and value > ratio * reference:
        return (
            Verdict.FAILED,
            f"canary {value:g} > {ratio:g} x stable {reference:g} (maxRatioToStable)",
        )
    if increase is not None and value > reference + increase:
        return (
            Verdict.FAILED,
            f"canary {value:g} > stable {reference:g} + {increase:g} (maxIncreaseOverStable)",
        )
    allowed = [
        f"<= {ratio:g} x stable {reference:g}" if ratio is not None else "",
        f"<= stable {reference:g} + {increase:g}" if increase is not None else "",
    ]
    relative = f"canary {value:g} " + " and ".join(a for a in allowed if a)
    return Verdict.SUCCESSFUL, "; ".join(part for part in (absolute, relative) if part)


def _too_few(samples: float | None, min_samples: int) -> str:
    if samples is not None and (math.isnan(samples) or samples < min_samples):
        count = "no" if math.isnan(samples) else f"{samples:g}"
        return f"{count} samples, needs {min_samples}"
    return ""


def _bounded(metric: Thresholds) -> bool:
    return metric.min is not None or metric.max is not None


def _within(metric: Thresholds) -> str:
    if metric.min is not None and metric.max is not None:
        return f"within [{metric.min:g}, {metric.max:g}]"
    if metric.max is not None:
        return f"<= max {metric.max:g}"
    if metric.min is not None:
        return f">= min {metric.min:g}"
    return "(no bounds)"
