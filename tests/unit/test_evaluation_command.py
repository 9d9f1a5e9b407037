"""`slipway evaluate` end to end on loopback: the command line, the evaluation set on disk, HTTP to
two V2 servers, the result printed and written to the termination log.

The two servers are test doubles of a model server (the V2 answer shape is MLServer 1.7.1's, as it
answered on loopback): a real MLServer behind real Services is what the real-node tests use.
Stable predicts the class of each row by a rule; the canary predicts the same except for rows whose
first feature is above 6, and fails (HTTP 500) the request whose first feature is 0.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from slipway.cli import main


def label(row: list[float], canary: bool) -> int:
    if canary and row[0] > 6:
        return 9
    return int(row[2] > 2.5) + int(row[3] > 1.7)


def server(canary: bool, seen: list[str]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            tensor = body["inputs"][0]
            rows, width = tensor["shape"]
            data = tensor["data"]
            table = [data[i * width : (i + 1) * width] for i in range(rows)]
            if canary and any(row[0] == 0 for row in table):
                answer, status = b"Internal Server Error", 500
            else:
                predictions = [label(row, canary) for row in table]
                output = {
                    "name": "predict",
                    "shape": [rows, 1],
                    "datatype": "INT64",
                    "parameters": {"content_type": "np"},
                    "data": predictions,
                }
                answer = json.dumps({"model_name": "iris", "model_version": "v1",
                                     "outputs": [output]}).encode()  # fmt: skip
                status = 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def sides() -> Iterator[tuple[str, str, list[str]]]:
    seen: list[str] = []
    canary, stable = server(True, seen), server(False, seen)
    yield (
        f"http://127.0.0.1:{canary.server_address[1]}",
        f"http://127.0.0.1:{stable.server_address[1]}",
        seen,
    )
    canary.shutdown()
    stable.shutdown()


ROWS = [
    ([5.1, 3.5, 1.4, 0.2], 0),  # both: 0
    ([6.7, 3.0, 5.2, 2.3], 2),  # stable 2, canary 9 (first feature > 6)
    ([5.9, 3.0, 5.1, 1.8], 2),  # both 2
    ([0.0, 1.0, 1.0, 1.0], 0),  # both would say 0; the canary fails it
    ([5.7, 2.8, 4.1, 1.3], 1),  # both 1
]


def write_set(path: Path) -> Path:
    lines = [
        json.dumps(
            {
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": row}],
                "expected": [want],
            }
        )
        for row, want in ROWS
    ]
    path.write_text("\n".join(lines) + "\n\n")
    return path


def evaluate(tmp_path: Path, canary: str, stable: str, *extra: str) -> tuple[int, dict[str, Any]]:
    log = tmp_path / "termination-log"
    code = main(
        [
            "evaluate",
            "--data", str(tmp_path / "set"),
            "--canary", canary,
            "--stable", stable,
            "--model", "iris",
            "--termination-log", str(log),
            *extra,
        ]
    )  # fmt: skip
    return code, json.loads(log.read_text())


def test_slipway_evaluate_reports_what_both_sides_answered(
    tmp_path: Path, sides: tuple[str, str, list[str]]
) -> None:
    canary, stable, seen = sides
    (tmp_path / "set").mkdir()
    write_set(tmp_path / "set" / "iris.jsonl")
    (tmp_path / "set" / ".slipway-ready").write_text("")  # what slipway fetch leaves beside it
    code, result = evaluate(tmp_path, canary, stable)
    assert code == 0
    assert seen.count("/v2/models/iris/infer") == 10  # 5 lines, both sides
    assert result["lines"] == 5
    # both answered lines 1, 2, 3, 5: they agree on 1, 3 and 5
    assert (result["compared"], result["agreement"]) == (4, 0.75)
    canary_side, stable_side = result["canary"], result["stable"]
    assert (canary_side["requests"], canary_side["errors"]) == (5, 1)
    assert canary_side["firstError"] == "HTTP 500"
    # the canary is right on lines 1, 3, 5 (2 wrong, 4 unanswered): 3/5; stable on all 5
    assert (canary_side["accuracy"], stable_side["accuracy"]) == (0.6, 1.0)
    # labels: canary 0 9 2 1, stable 0 2 2 0 1; shares canary 1/4 each of 0 1 2 9,
    # stable 0: 2/5, 1: 1/5, 2: 2/5: (|0.25-0.4| + |0.25-0.2| + |0.25-0.4| + 0.25) / 2 = 0.3
    assert result["labelDistance"] == pytest.approx(0.3)
    assert canary_side["latencyP50"] > 0 and stable_side["latencyP99"] > 0


def test_a_limit_sends_only_the_first_lines(
    tmp_path: Path, sides: tuple[str, str, list[str]]
) -> None:
    canary, stable, seen = sides
    write_set(tmp_path / "set")  # a file, not a directory
    code, result = evaluate(tmp_path, canary, stable, "--limit", "2")
    assert code == 0 and result["lines"] == 2 and len(seen) == 4


def test_an_evaluation_set_that_cannot_be_read_is_reported_as_such(
    tmp_path: Path, sides: tuple[str, str, list[str]]
) -> None:
    canary, stable, seen = sides
    (tmp_path / "set").write_text('{"inputs": []}\n{"inputs": [oops\n')
    code, result = evaluate(tmp_path, canary, stable)
    assert code == 2 and seen == []
    assert result["error"] == "set: line 2 is not JSON: Expecting value at column 13"


def test_a_side_that_is_not_there_is_an_error_per_request_not_a_crash(tmp_path: Path) -> None:
    write_set(tmp_path / "set")
    code, result = evaluate(
        tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", "--request-timeout", "2"
    )
    assert code == 0
    assert result["canary"]["errors"] == 5 and result["stable"]["errors"] == 5
    assert result["canary"]["firstError"] == "no answer: cannot connect (Connection refused)"
    assert result["compared"] == 0 and "agreement" not in result
