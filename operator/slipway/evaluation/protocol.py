"""The requests of an evaluation set and the predictions in the answers: V2 and OpenAI. Pure.

A line of the evaluation set is a request body, plus an optional `expected`: one entry per
prediction the request asks for (a value, or a list of values for a prediction of several).
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from slipway.api import Protocol
from slipway.evaluation.stats import Output


class AnswerError(ValueError):
    """An answer without usable predictions; the message says what was wrong, in our words."""


@dataclass(frozen=True)
class Line:
    """One request of the evaluation set."""

    number: int  # 1-based, in the whole set
    body: dict[str, Any]  # sent as it is
    expected: list[Output] | None  # one per prediction, when given


def parse_line(number: int, text: str) -> Line:
    """A line of JSON: the request, and its `expected` outputs taken out of it."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {number} is not JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"line {number} is not a JSON object (a request body)")
    expected = body.pop("expected", None)
    return Line(number=number, body=body, expected=_expected(number, expected))


def _expected(number: int, expected: Any) -> list[Output] | None:
    if expected is None:
        return None
    entries = expected if isinstance(expected, list) else [expected]
    outputs: list[Output] = []
    for entry in entries:
        values = entry if isinstance(entry, list) else [entry]
        if not all(isinstance(v, str | int | float | bool) for v in values):
            raise ValueError(f"line {number}: each expected output is a value or a list of values")
        outputs.append(tuple(values))
    return outputs


def request_path(protocol: Protocol, model: str, body: dict[str, Any]) -> str:
    """Where the request goes on the server."""
    if protocol is Protocol.OPENAI:
        return "/v1/chat/completions" if "messages" in body else "/v1/completions"
    return f"/v2/models/{model}/infer"


def request_body(protocol: Protocol, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body as sent: an OpenAI request names the served model."""
    if protocol is Protocol.OPENAI and "model" not in body:
        return {**body, "model": model}
    return body


def predictions_of(protocol: Protocol, answer: Any, output: str | None) -> list[Output]:
    """The predictions in an answer, one per row of the request's batch."""
    if not isinstance(answer, dict):
        raise AnswerError("the answer is not a JSON object")
    if protocol is Protocol.OPENAI:
        return _openai(answer)
    return _v2(answer, output)


def _v2(answer: dict[str, Any], name: str | None) -> list[Output]:
    outputs = answer.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        raise AnswerError("the answer has no outputs (not a V2 inference answer)")
    chosen = (
        outputs[0]
        if name is None
        else next((o for o in outputs if isinstance(o, dict) and o.get("name") == name), None)
    )
    if not isinstance(chosen, dict):
        raise AnswerError(f"the answer has no output named {name!r}")
    values = _flat(chosen.get("data"))
    shape = chosen.get("shape")
    rows = shape[0] if isinstance(shape, list) and shape and isinstance(shape[0], int) else 0
    if rows >= 1 and values and len(values) % rows == 0:
        width = len(values) // rows
        return [tuple(values[i * width : (i + 1) * width]) for i in range(rows)]
    return [(value,) for value in values]


def _flat(data: Any) -> list[Hashable]:
    if isinstance(data, list):
        return [value for item in data for value in _flat(item)]
    if isinstance(data, str | int | float | bool):
        if isinstance(data, float) and math.isnan(data):
            return ["NaN"]  # NaN never equals itself; as text, two NaNs agree
        return [data]
    raise AnswerError("an output holds something that is not a value")


def _openai(answer: dict[str, Any]) -> list[Output]:
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise AnswerError("the answer has no choices (not an OpenAI answer)")
    choice = choices[0]
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    if not isinstance(text, str):
        raise AnswerError("the answer's first choice has no text")
    return [(text.strip(),)]
