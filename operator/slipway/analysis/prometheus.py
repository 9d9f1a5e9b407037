"""The Prometheus provider: instant queries over the HTTP API. The only I/O of analysis.

The address is user input, so whatever answers there is treated as untrusted: every query is
bounded in time (`prometheus.timeout`, never above `TIMEOUT_CAP_SECONDS`) and in size, redirects
are not followed, and an answer that is not what Prometheus sends is described in Slipway's own
words (HTTP status, content type, the first parse error), never copied into status or Events.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from typing import Any

import aiohttp

from slipway.api import duration_seconds

# the highest prometheus.timeout the CRD accepts; older objects may hold more, so it is clamped too
TIMEOUT_CAP_SECONDS = 60.0
# an answer of one number is a few hundred bytes; anything far larger is not one
MAX_ANSWER_BYTES = 256 * 1024
# Prometheus's own error types (api/v1): safe to repeat, being a closed set
_ERROR_TYPES = {
    "bad_data": "the query is not valid PromQL, or a parameter is wrong",
    "execution": "the query failed while Prometheus evaluated it",
    "timeout": "the query took longer than Prometheus allows",
    "canceled": "Prometheus canceled the query",
    "internal": "Prometheus failed internally",
    "unavailable": "Prometheus is not ready to answer",
    "not_found": "Prometheus has no such endpoint",
    "too_many_requests": "Prometheus refused the query: too many requests",
    "not_acceptable": "Prometheus cannot answer in the format asked for",
}
_RESULT_TYPES = ("scalar", "vector", "matrix", "string")
_MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}$"
)
# what a query must return, for the messages of errors
_ONE_NUMBER = "it must return one number (a scalar, or an instant vector with one series)"


class QueryError(Exception):
    """A query Prometheus could not answer with one number; the message says why.

    `detail` is Prometheus's own error text, for the operator's log only: status and Events are
    read by whoever may write a ModelDeployment, and the address is theirs to choose.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def query_timeout(text: str) -> float:
    """Seconds one query may take: `prometheus.timeout`, capped."""
    return min(duration_seconds(text), TIMEOUT_CAP_SECONDS)


async def query_scalar(
    address: str,
    query: str,
    timeout: float,
    *,
    session: aiohttp.ClientSession | None = None,
    at: dt.datetime | None = None,
) -> float | None:
    """The value of an instant query (`GET /api/v1/query`); None when it returns no series.

    `at` evaluates the query at that moment, so that queries of one round share their window.
    """
    url = address.rstrip("/") + "/api/v1/query"
    params = {"query": query, "timeout": f"{timeout:g}s"}
    if at is not None:
        params["time"] = f"{at.timestamp():.3f}"
    own_session = session is None
    client = aiohttp.ClientSession() if session is None else session
    try:
        async with client.get(
            url,
            params=params,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            status = response.status
            content_type = response.headers.get("Content-Type", "")
            body = await _read_bounded(response)
    except TimeoutError as exc:
        raise QueryError(f"Prometheus at {address} did not answer within {timeout:g}s") from exc
    except aiohttp.ClientError as exc:
        why = describe_client_error(exc)
        raise QueryError(f"cannot query Prometheus at {address}: {why}") from exc
    finally:
        if own_session:
            await client.close()
    return value_of_response(status, body, content_type)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None when it is larger than any answer of one number."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            return None
    return bytes(body)


def describe_client_error(exc: aiohttp.ClientError) -> str:
    """A client error in our own words (exception texts may quote what the server sent)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        code = exc.os_error.errno
        return f"cannot connect ({os.strerror(code)})" if code else "cannot connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without an answer"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut off or malformed"
    if isinstance(exc, aiohttp.InvalidURL):
        return "the address is not a valid URL"
    return type(exc).__name__


def media_type(content_type: str) -> str:
    """The media type of a Content-Type header, when it looks like one; never other text."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind if _MEDIA_TYPE.match(kind) else "an unreadable content type"


def value_of_response(
    status: int, body: bytes | str | None, content_type: str = ""
) -> float | None:
    """The number in a `/api/v1/query` answer (pure, so every answer shape is easy to test).

    Messages name the HTTP status, the content type and what was wrong, in Slipway's words: the
    body of an answer is never quoted.
    """
    answered = f"HTTP {status}, {media_type(content_type) if content_type else 'no content type'}"
    if 300 <= status < 400:
        raise QueryError(
            f"Prometheus answered with a redirect ({answered}); redirects are not "
            "followed: give the address that answers itself"
        )
    if body is None:
        raise QueryError(
            f"the answer ({answered}) is larger than {MAX_ANSWER_BYTES // 1024} KiB; {_ONE_NUMBER}"
        )
    try:
        answer = json.loads(body)
    except json.JSONDecodeError as exc:
        raise QueryError(
            f"the answer ({answered}) is not the JSON of Prometheus's query API: {exc.msg} at "
            f"line {exc.lineno} column {exc.colno}; is the address a Prometheus?"
        ) from exc
    except ValueError as exc:  # bytes that are not UTF-8
        raise QueryError(f"the answer ({answered}) is not text") from exc
    if not isinstance(answer, dict) or answer.get("status") not in ("success", "error"):
        raise QueryError(
            f"the answer ({answered}) is JSON but not Prometheus's query API; is the address a "
            "Prometheus?"
        )
    if answer["status"] == "error" or status != 200:
        kind = answer.get("errorType")
        detail = str(answer.get("error") or "")[:300]
        if isinstance(kind, str) and kind in _ERROR_TYPES:
            raise QueryError(
                f"Prometheus refused the query ({answered}, {kind}): {_ERROR_TYPES[kind]}; the "
                "query as sent is in the measurement, try it in the Prometheus UI",
                detail,
            )
        raise QueryError(f"Prometheus refused the query ({answered})", detail)
    data = answer.get("data")
    data = data if isinstance(data, dict) else {}
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
        sample = result[0] if isinstance(result[0], dict) else {}
        value = sample.get("value")
        return _number(value[1] if isinstance(value, list) and len(value) == 2 else None)
    named = kind if kind in _RESULT_TYPES else "malformed"
    raise QueryError(f"the query returned a {named} result; {_ONE_NUMBER}")


def _number(text: Any) -> float:
    if isinstance(text, str):
        try:
            return float(text)  # Prometheus writes numbers as strings, "NaN" and "+Inf" included
        except ValueError:
            pass
    raise QueryError("Prometheus returned a sample value that is not a number")


def finite(value: float | None) -> float | None:
    """The value, or None for no data (NaN and infinities cannot be stored in status)."""
    return value if value is not None and math.isfinite(value) else None
