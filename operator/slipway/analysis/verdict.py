"""Verdicts of analysis measurements and the templating of their queries. Pure."""

from __future__ import annotations

import math
import re

from slipway.api import AnalysisMetric, Verdict

# {{ name }}, with or without spaces inside the braces
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
PLACEHOLDERS = ("namespace", "name", "stable.revision", "canary.revision", "interval")


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
) -> str:
    """The query with {{namespace}}, {{name}}, {{stable.revision}}, {{canary.revision}} and
    {{interval}} replaced; an unknown placeholder is an error that names it."""
    values = dict(
        zip(
            PLACEHOLDERS,
            (namespace, name, stable_revision, canary_revision, interval),
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


def verdict_of(
    metric: AnalysisMetric, value: float | None, samples: float | None, min_samples: int
) -> tuple[Verdict, str]:
    """Judge one measurement; the message says why, with the numbers.

    No value (or NaN) and too few samples are Inconclusive, never Failed: missing evidence is not
    evidence of a bad canary. `samples` None means the metric has no samplesQuery.
    """
    if value is None or math.isnan(value):
        return Verdict.INCONCLUSIVE, "no data"
    if samples is not None and (math.isnan(samples) or samples < min_samples):
        count = "no" if math.isnan(samples) else f"{samples:g}"
        return Verdict.INCONCLUSIVE, f"{count} samples, needs {min_samples}"
    if metric.max is not None and value > metric.max:
        return Verdict.FAILED, f"{value:g} > max {metric.max:g}"
    if metric.min is not None and value < metric.min:
        return Verdict.FAILED, f"{value:g} < min {metric.min:g}"
    return Verdict.SUCCESSFUL, f"{value:g} {_within(metric)}"


def _within(metric: AnalysisMetric) -> str:
    if metric.min is not None and metric.max is not None:
        return f"within [{metric.min:g}, {metric.max:g}]"
    if metric.max is not None:
        return f"<= max {metric.max:g}"
    if metric.min is not None:
        return f">= min {metric.min:g}"
    return "(no bounds)"
