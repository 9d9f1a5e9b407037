"""One round of analysis: what to ask Prometheus (pure: `plan_round`) and asking it (`measure`).

Every query of a round is evaluated at the same moment, so the canary and stable are measured
over the same window; the queries run concurrently, each bounded by `prometheus.timeout`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

import aiohttp

from slipway.analysis.checks import (
    CheckUnavailable,
    check_queries,
    render_check,
    series_selector,
)
from slipway.analysis.prometheus import QueryError, finite, query_scalar, query_timeout
from slipway.analysis.verdict import Side, TemplateError, render_query, verdict_of
from slipway.api import AnalysisMetric, Measurement, ModelDeployment, ServingSpec, Verdict
from slipway.resources.names import label_value
from slipway.rollout.times import rfc3339

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Queries:
    """The PromQL of one side of a metric, as it will be sent."""

    value: str
    samples: str | None  # None: the metric counts no samples
    no_data: str = ""  # said beside "no data" (e.g. a server option a check needs)


@dataclass(frozen=True)
class PlannedMetric:
    """What one metric asks of Prometheus for the canary and, compared with stable, for stable."""

    metric: AnalysisMetric
    canary: Queries | None
    stable: Queries | None
    problem: str = ""  # why it cannot be measured (an Error measurement), when it cannot


def plan_round(
    md: ModelDeployment, canary_revision: str, stable_revision: str
) -> list[PlannedMetric]:
    """Every metric of `md`'s analysis with its queries rendered, in spec order. Pure."""
    spec = md.spec.rollout.analysis
    if spec is None:
        return []
    canary_serving = md.spec.serving()
    stable = md.status.stable
    stable_serving = (
        ServingSpec.model_validate(stable.template)
        if stable is not None and stable.template
        else canary_serving
    )
    planned = []
    for metric in spec.metrics:
        try:
            canary = _queries(
                md, metric, canary_serving, canary_revision, canary_revision, stable_revision
            )
            compared = None
            if metric.relative and stable_revision:
                compared = _queries(
                    md, metric, stable_serving, stable_revision, canary_revision, stable_revision
                )
            planned.append(PlannedMetric(metric, canary, compared))
        except (TemplateError, CheckUnavailable) as exc:
            planned.append(PlannedMetric(metric, None, None, str(exc)))
    return planned


def _queries(
    md: ModelDeployment,
    metric: AnalysisMetric,
    serving: ServingSpec,
    revision: str,
    canary_revision: str,
    stable_revision: str,
) -> Queries:
    spec = md.spec.rollout.analysis
    assert spec is not None
    selector = series_selector(md.namespace, label_value(md.name), revision)
    if metric.check is not None:
        table = check_queries(metric.check, serving)
        return Queries(
            value=render_check(table.value, selector, spec.window),
            samples=render_check(table.samples, selector, spec.window),
            no_data=table.no_data,
        )

    def render(template: str) -> str:
        return render_query(
            template,
            namespace=md.namespace,
            name=md.name,
            stable_revision=stable_revision,
            canary_revision=canary_revision,
            interval=spec.interval,
            revision=revision,
            selector=selector,
            window=spec.window,
        )

    assert metric.query is not None  # the CRD lets a metric have a check or a query
    samples = render(metric.samples_query) if metric.samples_query else None
    return Queries(value=render(metric.query), samples=samples)


async def measure(
    md: ModelDeployment,
    canary_revision: str,
    stable_revision: str,
    now: dt.datetime,
    *,
    session: aiohttp.ClientSession | None = None,
) -> list[Measurement]:
    """One round of analysis: every metric of `md` measured, in spec order.

    A query that fails gives an Error measurement (which pauses the rollout like Inconclusive),
    never an exception: the round always has one measurement per metric.
    """
    spec = md.spec.rollout.analysis
    if spec is None:
        return []
    planned = plan_round(md, canary_revision, stable_revision)
    ask = _Asker(spec.prometheus.address, query_timeout(spec.prometheus.timeout), now)
    if session is None:
        async with aiohttp.ClientSession() as own:
            ask.session = own
            return list(
                await asyncio.gather(
                    *(_measure_one(ask, md, p, canary_revision, now) for p in planned)
                )
            )
    ask.session = session
    return list(
        await asyncio.gather(*(_measure_one(ask, md, p, canary_revision, now) for p in planned))
    )


@dataclass
class _Asker:
    address: str
    timeout: float
    at: dt.datetime
    session: aiohttp.ClientSession | None = None

    async def one(self, query: str) -> float | QueryError | None:
        """One query's value, or its error (returned, so that the queries of a round all end)."""
        try:
            return await query_scalar(
                self.address, query, self.timeout, session=self.session, at=self.at
            )
        except QueryError as exc:
            return exc

    async def sides(self, planned: PlannedMetric) -> tuple[Side, Side | None]:
        """The canary's side and, compared with stable, stable's: every query at once."""
        assert planned.canary is not None
        wanted = [planned.canary] + ([planned.stable] if planned.stable else [])
        texts = [q for side in wanted for q in (side.value, side.samples) if q is not None]
        answers = dict(zip(texts, await asyncio.gather(*(self.one(q) for q in texts)), strict=True))
        for answer in answers.values():
            if isinstance(answer, QueryError):
                raise answer
        found = [_side(queries, answers) for queries in wanted]
        return found[0], (found[1] if len(found) > 1 else None)


def _side(queries: Queries, answers: dict[str, float | QueryError | None]) -> Side:
    value = answers[queries.value]
    assert not isinstance(value, QueryError)
    if queries.samples is None:
        return Side(value, None)
    counted = answers[queries.samples]
    assert not isinstance(counted, QueryError)
    return Side(value, 0.0 if counted is None else counted)  # no series: no requests at all


async def _measure_one(
    ask: _Asker, md: ModelDeployment, planned: PlannedMetric, revision: str, now: dt.datetime
) -> Measurement:
    spec = md.spec.rollout.analysis
    assert spec is not None
    metric = planned.metric

    def measured(
        verdict: Verdict,
        message: str,
        canary: Side | None = None,
        stable: Side | None = None,
    ) -> Measurement:
        return Measurement(
            metric=metric.metric_name,
            value=finite(canary.value) if canary else None,
            min=metric.min,
            max=metric.max,
            samples=finite(canary.samples) if canary else None,
            verdict=verdict,
            message=message,
            query=planned.canary.value if planned.canary else (metric.query or ""),
            at=rfc3339(now),
            revision=revision,
            stable_value=finite(stable.value) if stable else None,
            stable_samples=finite(stable.samples) if stable else None,
            stable_query=planned.stable.value if planned.stable else "",
            max_ratio_to_stable=metric.max_ratio_to_stable,
            max_increase_over_stable=metric.max_increase_over_stable,
        )

    if planned.canary is None:
        return measured(Verdict.ERROR, planned.problem)
    try:
        canary, stable = await ask.sides(planned)
    except QueryError as exc:
        if exc.detail:  # Prometheus's own words: for the operator's log, never for status
            log.info(
                "Prometheus refused %s of %s/%s: %s",
                metric.metric_name,
                md.namespace,
                md.name,
                exc.detail,
            )
        return measured(Verdict.ERROR, f"query failed: {exc}")
    verdict, message = verdict_of(metric, canary.value, canary.samples, spec.min_samples, stable)
    if message == "no data" and planned.canary.no_data:
        message = f"no data ({planned.canary.no_data})"
    if message == "no data for stable" and planned.stable and planned.stable.no_data:
        message = f"no data for stable ({planned.stable.no_data})"
    return measured(verdict, message, canary, stable)
