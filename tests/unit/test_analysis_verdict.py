"""Verdicts of analysis measurements and the templating of their queries."""

from __future__ import annotations

import math

import pytest

from slipway.analysis import TemplateError, render_query, verdict_of
from slipway.api import AnalysisMetric, Verdict

PLACES = {
    "namespace": "ml",
    "name": "fraud",
    "stable_revision": "5d8f000000",
    "canary_revision": "9ab1000000",
    "interval": "30s",
    "revision": "9ab1000000",
    "selector": 'namespace="ml",modeldeployment="fraud",revision="9ab1000000"',
    "window": "2m",
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            'sum(rate(errors{namespace="{{namespace}}",rev="{{canary.revision}}"}[{{interval}}]))',
            'sum(rate(errors{namespace="ml",rev="9ab1000000"}[30s]))',
        ),
        ("{{ name }}/{{  stable.revision }}", "fraud/5d8f000000"),
        ("up", "up"),
        ("{{name}}{{name}}", "fraudfraud"),
        (
            "sum(rate(x_total{ {{selector}} }[{{window}}]))",
            'sum(rate(x_total{ namespace="ml",modeldeployment="fraud",revision="9ab1000000" }'
            "[2m]))",
        ),
        ('x{rev="{{revision}}"}', 'x{rev="9ab1000000"}'),
    ],
)
def test_render_query_replaces_every_placeholder(template: str, expected: str) -> None:
    assert render_query(template, **PLACES) == expected


def test_an_unknown_placeholder_is_an_error_that_names_it() -> None:
    with pytest.raises(TemplateError, match=r"unknown placeholder \{\{canary\.version\}\}") as err:
        render_query('x{v="{{canary.version}}"}', **PLACES)
    assert "{{canary.revision}}" in str(err.value)  # and says what would be right


def metric(min_: float | None = None, max_: float | None = None) -> AnalysisMetric:
    return AnalysisMetric(name="error-rate", query="q", min=min_, max=max_)


@pytest.mark.parametrize(
    ("bounds", "value", "samples", "min_samples", "verdict", "message"),
    [
        ((None, 0.01), 0.002, None, 0, Verdict.SUCCESSFUL, "0.002 <= max 0.01"),
        ((None, 0.01), 0.08, None, 0, Verdict.FAILED, "0.08 > max 0.01"),
        ((0.99, None), 0.95, None, 0, Verdict.FAILED, "0.95 < min 0.99"),
        ((0.99, None), 0.995, None, 0, Verdict.SUCCESSFUL, "0.995 >= min 0.99"),
        ((0.1, 0.2), 0.15, None, 0, Verdict.SUCCESSFUL, "0.15 within [0.1, 0.2]"),
        ((None, 0.01), 0.01, None, 0, Verdict.SUCCESSFUL, "0.01 <= max 0.01"),
        ((None, 0.01), None, None, 0, Verdict.INCONCLUSIVE, "no data"),
        ((None, 0.01), math.nan, None, 0, Verdict.INCONCLUSIVE, "no data"),
        ((None, 0.01), 0.5, 3.0, 20, Verdict.INCONCLUSIVE, "3 samples, needs 20"),
        ((None, 0.01), 0.5, math.nan, 20, Verdict.INCONCLUSIVE, "no samples, needs 20"),
        ((None, 0.01), 0.002, 20.0, 20, Verdict.SUCCESSFUL, "0.002 <= max 0.01"),
        ((None, 0.01), math.inf, None, 0, Verdict.FAILED, "inf > max 0.01"),
    ],
)
def test_verdict_of_a_measurement(
    bounds: tuple[float | None, float | None],
    value: float | None,
    samples: float | None,
    min_samples: int,
    verdict: Verdict,
    message: str,
) -> None:
    assert verdict_of(metric(*bounds), value, samples, min_samples) == (verdict, message)
