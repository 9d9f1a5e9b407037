"""The Prometheus provider, against a fake of Prometheus's `/api/v1/query` on 127.0.0.1.

The fake is a tiny aiohttp server that answers what Prometheus answers (vectors, scalars,
matrices, errors, garbage), so the parsing and the error messages are tested without a Prometheus.
It is a test double for this parser only: analysis against a real Prometheus is tested by the
integration tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from slipway.analysis.measure import measure
from slipway.analysis.prometheus import QueryError, query_scalar, value_of_response
from slipway.api import ModelDeployment, Verdict

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
Answer = tuple[int, str]  # HTTP status, body


def success(result_type: str, result: Any) -> Answer:
    body = {"status": "success", "data": {"resultType": result_type, "result": result}}
    return 200, json.dumps(body)


def vector(*values: str) -> Answer:
    return success(
        "vector",
        [{"metric": {"pod": f"p{i}"}, "value": [1714564800.0, v]} for i, v in enumerate(values)],
    )


@contextlib.asynccontextmanager
async def fake_prometheus(
    answers: dict[str, Answer], delay: float = 0.0, seen: list[str] | None = None
) -> AsyncIterator[str]:
    """A fake Prometheus answering each query from `answers`; yields its address."""

    async def query(request: web.Request) -> web.Response:
        text = request.query.get("query", "")
        if seen is not None:
            seen.append(text)
        if delay:
            await asyncio.sleep(delay)
        status, body = answers.get(text, vector())
        return web.Response(status=status, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def ask(answer: Answer, timeout: float = 5.0, delay: float = 0.0) -> float | None:
    async def run() -> float | None:
        async with fake_prometheus({"q": answer}, delay=delay) as address:
            return await query_scalar(address, "q", timeout)

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (vector("0.25"), 0.25),
        (vector("+Inf"), math.inf),
        (success("scalar", [1714564800.0, "3"]), 3.0),
        (vector(), None),
    ],
)
def test_a_query_that_returns_one_number_gives_that_number(
    answer: Answer, expected: float | None
) -> None:
    assert ask(answer) == expected


def test_nan_comes_back_as_nan() -> None:
    value = ask(vector("NaN"))
    assert value is not None and math.isnan(value)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (vector("1", "2", "3"), "returned 3 series; it must return one number"),
        (success("matrix", [{"metric": {}, "values": [[1, "1"]]}]), "returned a matrix result"),
        (success("string", [1, "x"]), "returned a string result"),
        (success("secret-kind", [1, "x"]), "returned a malformed result"),
        (vector("lots"), "a sample value that is not a number"),
        (
            (500, "<html>upstream down</html>"),
            "the answer (HTTP 500, application/json) is not the JSON of Prometheus's query API: "
            "Expecting value at line 1 column 1",
        ),
        (
            (400, json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"})),
            "Prometheus refused the query (HTTP 400, application/json, bad_data): the query is "
            "not valid PromQL",
        ),
        (
            (422, json.dumps({"status": "error", "errorType": "made-up", "error": "x"})),
            "Prometheus refused the query (HTTP 422, application/json)",
        ),
        ((200, json.dumps({"hello": "world"})), "is JSON but not Prometheus's query API"),
    ],
)
def test_a_query_that_does_not_return_one_number_is_a_query_error(
    answer: Answer, message: str
) -> None:
    with pytest.raises(QueryError) as err:
        ask(answer)
    assert message in str(err.value)
    assert "upstream down" not in str(err.value) and "parse error" not in str(err.value)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "said", "never"),
    [
        (502, b"<h1>secret page</h1>", "text/html; charset=utf-8", "HTTP 502, text/html", "secret"),
        (200, b"\xff\xfe", "application/json", "is not", "\xff"),
        (200, b"{}", "text/plain<script>", "an unreadable content type", "script"),
        (302, b"", "text/html", "redirects are not followed", "Location"),
        (200, None, "application/json", "larger than 256 KiB", "None"),
    ],
)
def test_an_answer_that_is_not_prometheus_is_described_in_our_words(
    status: int, body: bytes | None, content_type: str, said: str, never: str
) -> None:
    """The address is user input: what answers there may be anything, and is never repeated."""
    with pytest.raises(QueryError) as err:
        value_of_response(status, body, content_type)
    assert said in str(err.value)
    assert never not in str(err.value)


def test_a_prometheus_that_is_not_there_is_a_query_error_naming_its_address() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"http://127.0.0.1:{port}"
    with pytest.raises(QueryError, match=f"cannot query Prometheus at {address}: cannot connect"):
        asyncio.run(query_scalar(address, "up", 2.0))


def test_a_slow_prometheus_is_a_query_error_after_the_timeout() -> None:
    with pytest.raises(QueryError, match=r"did not answer within 0.1s"):
        ask(vector("1"), timeout=0.1, delay=0.5)


def model_deployment(address: str, min_samples: int = 0) -> ModelDeployment:
    analysis = {
        "interval": "1m",
        "minSamples": min_samples,
        "prometheus": {"address": address, "timeout": "2s"},
        "metrics": [
            {
                "name": "error-rate",
                "query": 'errors{ns="{{namespace}}",rev="{{ canary.revision }}"}',
                "samplesQuery": 'requests{rev="{{canary.revision}}"}',
                "max": 0.01,
            },
            {"name": "latency", "query": 'p99{rev="{{canary.revision}}"}', "max": 0.5},
            {"name": "typo", "query": "x{{canary.rev}}", "max": 1},
        ],
    }
    return ModelDeployment.from_body(
        {
            "metadata": {"name": "fraud", "namespace": "ml"},
            "spec": {
                "model": {"version": "2.0.0", "uri": "s3://m/2", "format": "sklearn"},
                "rollout": {"strategy": "Canary", "analysis": analysis},
            },
        }
    )


def test_measure_resolves_templates_and_judges_every_metric() -> None:
    answers = {
        'errors{ns="ml",rev="9ab1"}': vector("0.002"),
        'requests{rev="9ab1"}': vector("120"),
        'p99{rev="9ab1"}': (500, "oops"),
    }
    seen: list[str] = []

    async def run() -> list[Any]:
        async with fake_prometheus(answers, seen=seen) as address:
            return await measure(model_deployment(address, min_samples=100), "9ab1", "5d8f", NOW)

    errors, latency, typo = asyncio.run(run())

    assert (errors.metric, errors.value, errors.samples, errors.max) == (
        "error-rate",
        0.002,
        120,
        0.01,
    )
    assert (errors.verdict, errors.message) == (Verdict.SUCCESSFUL, "0.002 <= max 0.01")
    assert errors.query == 'errors{ns="ml",rev="9ab1"}'
    assert (errors.at, errors.revision) == ("2024-05-01T12:00:00Z", "9ab1")
    assert latency.verdict is Verdict.ERROR
    assert (
        "query failed: the answer (HTTP 500, application/json) is not the JSON" in latency.message
    )
    assert latency.query == 'p99{rev="9ab1"}'
    assert typo.verdict is Verdict.ERROR
    assert "unknown placeholder {{canary.rev}}" in typo.message
    assert sorted(seen) == sorted(
        ['errors{ns="ml",rev="9ab1"}', 'requests{rev="9ab1"}', 'p99{rev="9ab1"}']
    )


def test_a_samples_query_without_series_means_no_samples_and_is_inconclusive() -> None:
    answers = {'errors{ns="ml",rev="9ab1"}': vector("0.002"), 'requests{rev="9ab1"}': vector()}

    async def run() -> list[Any]:
        async with fake_prometheus(answers) as address:
            return await measure(model_deployment(address, min_samples=20), "9ab1", "5d8f", NOW)

    errors = asyncio.run(run())[0]
    assert (errors.verdict, errors.message) == (Verdict.INCONCLUSIVE, "0 samples, needs 20")
    assert errors.samples == 0


def test_a_nan_value_is_stored_as_no_data() -> None:
    answers = {'errors{ns="ml",rev="9ab1"}': vector("NaN")}

    async def run() -> list[Any]:
        async with fake_prometheus(answers) as address:
            return await measure(model_deployment(address), "9ab1", "5d8f", NOW)

    errors = asyncio.run(run())[0]
    assert (errors.value, errors.verdict, errors.message) == (None, Verdict.INCONCLUSIVE, "no data")
