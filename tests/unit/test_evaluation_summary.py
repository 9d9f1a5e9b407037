"""Lines of an evaluation set, the predictions in V2 and OpenAI answers, and the numbers of an
evaluation from what both sides answered (hand-computed)."""

from __future__ import annotations

from typing import Any

import pytest

from slipway.api import Protocol
from slipway.api.evaluation import Compare
from slipway.evaluation.protocol import (
    AnswerError,
    parse_line,
    predictions_of,
    request_body,
    request_path,
)
from slipway.evaluation.summary import Answer, Exchange, summarize

V2_LINE = '{"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1,2,3,4,5,6,7,8]}], "expected": [0, 2]}'  # noqa: E501


def test_a_line_is_the_request_and_its_expected_outputs() -> None:
    line = parse_line(3, V2_LINE)
    assert line.number == 3
    assert "expected" not in line.body and line.body["inputs"][0]["shape"] == [2, 4]
    assert line.expected == [(0,), (2,)]
    assert parse_line(1, '{"prompt": "hi", "expected": "hello"}').expected == [("hello",)]
    assert parse_line(1, '{"inputs": [], "expected": [[0.1, 0.9]]}').expected == [(0.1, 0.9)]
    assert parse_line(1, '{"inputs": []}').expected is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{nope", "line 7 is not JSON: Expecting property name"),
        ("[1, 2]", "line 7 is not a JSON object"),
        ('{"inputs": [], "expected": [{"a": 1}]}', "line 7: each expected output is a value"),
    ],
)
def test_a_bad_line_is_named(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_line(7, text)


def test_requests_go_where_each_protocol_expects_them() -> None:
    assert request_path(Protocol.V2, "iris", {}) == "/v2/models/iris/infer"
    assert request_path(Protocol.OPENAI, "chat", {"messages": []}) == "/v1/chat/completions"
    assert request_path(Protocol.OPENAI, "chat", {"prompt": "x"}) == "/v1/completions"
    assert request_body(Protocol.OPENAI, "chat", {"prompt": "x"}) == {
        "prompt": "x",
        "model": "chat",
    }
    assert request_body(Protocol.V2, "iris", {"inputs": []}) == {"inputs": []}


def v2(*outputs: dict[str, Any]) -> dict[str, Any]:
    return {"model_name": "iris", "outputs": list(outputs)}


@pytest.mark.parametrize(
    ("answer", "output", "predictions"),
    [
        # MLServer 1.7.1's answer to a batch of two rows (seen on loopback)
        (
            v2({"name": "predict", "shape": [2, 1], "datatype": "INT64", "data": [0, 2]}),
            None,
            [(0,), (2,)],
        ),
        (
            v2({"name": "probs", "shape": [2, 2], "data": [0.1, 0.9, 0.8, 0.2]}),
            None,
            [(0.1, 0.9), (0.8, 0.2)],
        ),
        (
            v2({"name": "a", "shape": [1], "data": [1]}, {"name": "b", "shape": [1], "data": [7]}),
            "b",
            [(7,)],
        ),
        (v2({"name": "nested", "shape": [2, 2], "data": [[1, 2], [3, 4]]}), None, [(1, 2), (3, 4)]),
        (
            v2({"name": "no-shape", "data": ["setosa", "virginica"]}),
            None,
            [("setosa",), ("virginica",)],
        ),
    ],
)
def test_v2_predictions_are_one_per_row_of_the_batch(
    answer: dict[str, Any], output: str | None, predictions: list[tuple[Any, ...]]
) -> None:
    assert predictions_of(Protocol.V2, answer, output) == predictions


@pytest.mark.parametrize(
    ("protocol", "answer", "output", "says"),
    [
        (Protocol.V2, {"error": "Model x not found"}, None, "no outputs"),
        (Protocol.V2, v2({"name": "a", "data": [1]}), "b", "no output named 'b'"),
        (Protocol.V2, v2({"name": "a", "data": [{"x": 1}]}), None, "not a value"),
        (Protocol.OPENAI, {"object": "error"}, None, "no choices"),
        (Protocol.OPENAI, {"choices": [{"message": {}}]}, None, "has no text"),
        (Protocol.V2, ["not", "an", "object"], None, "not a JSON object"),
    ],
)
def test_an_answer_without_predictions_says_what_is_wrong(
    protocol: Protocol, answer: Any, output: str | None, says: str
) -> None:
    with pytest.raises(AnswerError, match=says):
        predictions_of(protocol, answer, output)


def test_openai_predictions_are_the_first_choices_text() -> None:
    chat = {"choices": [{"message": {"role": "assistant", "content": " Paris \n"}}]}
    assert predictions_of(Protocol.OPENAI, chat, None) == [("Paris",)]
    assert predictions_of(Protocol.OPENAI, {"choices": [{"text": "4"}]}, None) == [("4",)]


def ok(seconds: float, *labels: Any) -> Answer:
    return Answer(seconds, [(label,) for label in labels])


FAILED = Answer(None, None, "HTTP 500")


def exchange(number: int, canary: Answer, stable: Answer, expected: list[Any] | None) -> Exchange:
    body = '{"inputs": []' + (f', "expected": {expected}' if expected is not None else "") + "}"
    return Exchange(line=parse_line(number, body.replace("'", '"')), canary=canary, stable=stable)


def test_an_evaluation_of_labels_by_hand() -> None:
    exchanges = [
        exchange(1, ok(0.10, "a", "b"), ok(0.01, "a", "b"), ["a", "b"]),
        exchange(2, ok(0.20, "a"), ok(0.02, "b"), ["b"]),
        exchange(3, FAILED, ok(0.03, "a"), ["a"]),
        exchange(4, ok(0.40, "b"), ok(0.04, "b"), None),
    ]
    result = summarize(exchanges, Compare.LABELS, 0.0)
    assert result.lines == 4
    # predictions both answered: a=a, b=b (line 1), a!=b (line 2), b=b (line 4): 3 of 4 agree
    assert (result.compared, result.agreement) == (4, 0.75)
    # canary: expected 4 (lines 1-3); right: a, b (line 1); line 2 wrong; line 3 no answer: 2/4
    assert (result.canary.expected, result.canary.accuracy) == (4, 0.5)
    # stable: a, b right; line 2 b right; line 3 a right: 4/4
    assert result.stable.accuracy == 1.0
    assert (result.canary.requests, result.canary.errors, result.canary.predictions) == (4, 1, 4)
    assert result.canary.first_error == "HTTP 500" and result.stable.first_error is None
    # canary latencies 0.1 0.2 0.4: p50 0.2, p99 at 2*0.99 = 1.98: 0.2 + 0.98 * 0.2 = 0.396
    assert result.canary.latency_p50 == pytest.approx(0.2)
    assert result.canary.latency_p99 == pytest.approx(0.396)
    # labels: canary a b a b (2 a, 2 b) against stable a b b a b (2 a, 3 b):
    # |0.5 - 0.4| + |0.5 - 0.6| = 0.2, halved: 0.1
    assert result.label_distance == pytest.approx(0.1)
    # PSI of canary [0.5, 0.5] against stable [0.4, 0.6]: 0.1 ln(0.5/0.4) - 0.1 ln(0.5/0.6)
    assert result.psi == pytest.approx(0.1 * (0.2231436 + 0.1823216), abs=1e-6)
    assert result.ks is None


def test_an_evaluation_of_numbers_by_hand() -> None:
    exchanges = [
        exchange(1, ok(0.1, 1.0), ok(0.1, 1.05), [1.0]),
        exchange(2, ok(0.1, 2.0), ok(0.1, 2.5), [2.0]),
        exchange(3, ok(0.1, 3.0), ok(0.1, 3.0), [3.1]),
    ]
    result = summarize(exchanges, Compare.NUMBERS, 0.1)
    # |1.0 - 1.05| <= 0.1 agrees, |2.0 - 2.5| does not, 3.0 = 3.0: 2 of 3
    assert result.agreement == pytest.approx(2 / 3)
    # against expected within 0.1: canary 1.0, 2.0, 3.0 (|3.0 - 3.1| <= 0.1) all right;
    # stable 1.05 right, 2.5 wrong, 3.0 right
    assert result.canary.accuracy == 1.0 and result.stable.accuracy == pytest.approx(2 / 3)
    # KS of 1 2 3 against 1.05 2.5 3: at 1: 1/3 vs 0; at 1.05: 1/3 vs 1/3; at 2: 2/3 vs 1/3
    assert result.ks == pytest.approx(1 / 3)
    assert result.label_distance is None and result.psi is not None


def test_a_side_that_never_answers_has_no_latency_and_nothing_to_compare() -> None:
    result = summarize(
        [exchange(1, FAILED, ok(0.1, "a"), ["a"]), exchange(2, FAILED, ok(0.1, "b"), None)],
        Compare.LABELS,
        0.0,
    )
    assert (result.compared, result.agreement) == (0, None)
    assert result.canary.latency_p99 is None and result.canary.errors == 2
    assert result.canary.accuracy == 0.0  # one expected output, not answered
    assert result.psi is None and result.label_distance is None
