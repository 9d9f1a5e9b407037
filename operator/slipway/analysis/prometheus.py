"""The Prometheus provider: instant queries over the HTTP API. The only I/O of analysis."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
from typing import Any

import aiohttp

from slipway.analysis.verdict import TemplateError, render_query, verdict_of
from slipway.api import AnalysisMetric, AnalysisSpec, Measurement, ModelDeployment, Verdict
from slipway.api import duration_seconds as seconds_of
from slipway.rollout.times import rfc3339

# what a query must return, for the messages of errors
_ONE_NUMBER = "it must return one number (a scalar, or an instant vector with one series)"


class QueryError(Exception):
    """A query Prometheus could not answer with one number; the message says why."""


async def query_scalar(
    address: str,
    query: str,
    timeout: float,
    *,
    session: aiohttp.ClientSession | None = None,
) -> float | None:
    """The value of an instant query (`GET /api/v1/query`); None when it returns no series."""
    url = address.rstrip("/") + "/api/v1/query"
    own_session = session is None
    client = aiohttp.ClientSession() if session is None else session
    try:
        async with client.get(
            url, params={"query": query}, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            status = response.status
            body = await response.text()
    except TimeoutError as exc:
        raise QueryError(f"Prometheus at {address} did not answer within {timeout:g}s") from exc
    except aiohttp.ClientError as exc:
        raise QueryError(f"cannot query Prometheus at {address}: {exc}") from exc
    finally:
        if own_session:
            await client.close()
    return value_of_response(status, body)


def value_of_response(status: int, body: str) -> float | None:
    """The number in a `/api/v1/query` answer (pure, so every answer shape is easy to test)."""
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise QueryError(
            f"Prometheus answered HTTP {status} with a body that is not JSON: {body[:200]!r}"
        ) from exc
    if not isinstance(answer, dict):
        raise QueryError(f"Prometheus answered HTTP {status} with unexpected JSON: {body[:200]!r}")
    if answer.get("status") != "success" or status != 200:
        kind = answer.get("errorType") or "error"
        error = answer.get("error") or body[:200]
        raise QueryError(f"Prometheus rejected the query (HTTP {status}, {kind}): {error}")
    data = answer.get("data") or {}
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _number(result[1])
    if kind == "vector" and isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            raise QueryError(
                f"the query returned {len(result)} series; {_ONE_NUMBER}: aggregate it, e.g. "
                "with sum(...)"
            )
        return _number((result[0] or {}).get("value", [None, None])[1])
    raise QueryError(f"the query returned a {kind or 'malformed'} result; {_ONE_NUMBER}")


def _number(text: Any) -> float:
    try:
        return float(text)  # Prometheus writes numbers as strings, "NaN" and "+Inf" included
    except (TypeError, ValueError) as exc:
        raise QueryError(f"Prometheus returned {text!r}, which is not a number") from exc


async def measure(
    md: ModelDeployment, canary_revision: str, stable_revision: str, now: dt.datetime
) -> list[Measurement]:
    """One round of analysis: every metric of `md` measured for the canary, in spec order.

    A query that fails gives an Error measurement (which pauses the rollout like Inconclusive),
    never an exception: the round always has one measurement per metric.
    """
    spec = md.spec.rollout.analysis
    if spec is None:
        return []
    async with aiohttp.ClientSession() as session:
        rounds = [
            _measure_metric(session, md, spec, metric, canary_revision, stable_revision, now)
            for metric in spec.metrics
        ]
        return list(await asyncio.gather(*rounds))


async def _measure_metric(
    session: aiohttp.ClientSession,
    md: ModelDeployment,
    spec: AnalysisSpec,
    metric: AnalysisMetric,
    canary_revision: str,
    stable_revision: str,
    now: dt.datetime,
) -> Measurement:
    address = spec.prometheus.address
    timeout = seconds_of(spec.prometheus.timeout)
    sent = metric.query

    def measured(
        verdict: Verdict, message: str, value: float | None = None, samples: float | None = None
    ) -> Measurement:
        return Measurement(
            metric=metric.name,
            value=value if value is not None and math.isfinite(value) else None,
            min=metric.min,
            max=metric.max,
            samples=samples if samples is not None and math.isfinite(samples) else None,
            verdict=verdict,
            message=message,
            query=sent,
            at=rfc3339(now),
            revision=canary_revision,
        )

    def render(template: str) -> str:
        return render_query(
            template,
            namespace=md.namespace,
            name=md.name,
            stable_revision=stable_revision,
            canary_revision=canary_revision,
            interval=spec.interval,
        )

    try:
        sent = render(metric.query)
        samples_query = render(metric.samples_query) if metric.samples_query else None
    except TemplateError as exc:
        return measured(Verdict.ERROR, str(exc))
    try:
        value = await query_scalar(address, sent, timeout, session=session)
        samples: float | None = None
        if samples_query is not None:
            counted = await query_scalar(address, samples_query, timeout, session=session)
            samples = 0.0 if counted is None else counted  # no series: no requests at all
    except QueryError as exc:
        return measured(Verdict.ERROR, f"query failed: {exc}")
    verdict, message = verdict_of(metric, value, samples, spec.min_samples)
    return measured(verdict, message, value, samples)
