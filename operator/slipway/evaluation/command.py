"""`slipway evaluate`: send an evaluation set to the canary and to stable, report the numbers.

Run by the evaluation step's Job (resources/evaluation.py). Every line goes to both sides at once
(at most `--concurrency` lines in flight); the numbers (`EvaluationResult`, JSON) are printed and
written to the termination log, where the operator reads them from the Job's pod. It judges
nothing: the gates are the operator's. Exit 0 when the set was sent (whatever the answers were),
2 when it could not be (the data is missing or unreadable: the result says why).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from slipway.analysis.prometheus import describe_client_error
from slipway.api import Protocol
from slipway.api.evaluation import Compare, EvaluationResult
from slipway.evaluation.protocol import (
    AnswerError,
    Line,
    parse_line,
    predictions_of,
    request_body,
    request_path,
)
from slipway.evaluation.summary import Answer, Exchange, summarize

TERMINATION_LOG = Path("/dev/termination-log")
# the kubelet keeps at most 4096 bytes of a termination message
TERMINATION_MESSAGE_BYTES = 4096
MAX_ANSWER_BYTES = 16 * 1024 * 1024
DATA_SUFFIXES = (".jsonl", ".json", ".ndjson")


class DataError(Exception):
    """The evaluation set cannot be read; the message says why."""


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Send every line of an evaluation set (JSON lines of requests) to the canary and to "
        "stable and print what they answered: agreement, accuracy, distribution distance, "
        "latency and errors (JSON), also written to the termination log."
    )
    parser.add_argument("--data", type=Path, required=True, help="a file, or a directory of them")
    parser.add_argument("--canary", required=True, help="base URL of the canary's Service")
    parser.add_argument("--stable", required=True, help="base URL of the stable Service")
    parser.add_argument("--model", required=True, help="the name the model is served under")
    parser.add_argument(
        "--protocol", choices=[Protocol.V2.value, Protocol.OPENAI.value], default="v2"
    )
    parser.add_argument("--output", default=None, help="V2 output tensor (default: the first)")
    parser.add_argument("--compare", choices=[c.value for c in Compare], default="labels")
    parser.add_argument("--tolerance", type=float, default=0.0)
    parser.add_argument("--limit", type=int, default=None, help="send at most this many lines")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds")
    parser.add_argument("--termination-log", type=Path, default=TERMINATION_LOG)


def run_evaluate(args: argparse.Namespace) -> int:
    try:
        lines = read_lines(args.data, args.limit)
        result = asyncio.run(
            evaluate(
                lines,
                canary=args.canary,
                stable=args.stable,
                model=args.model,
                protocol=Protocol(args.protocol),
                output=args.output,
                compare=Compare(args.compare),
                tolerance=args.tolerance,
                concurrency=max(1, args.concurrency),
                request_timeout=args.request_timeout,
            )
        )
        code = 0
    except DataError as exc:
        result, code = EvaluationResult(error=str(exc)), 2
    report(result, args.termination_log)
    return code


def read_lines(path: Path, limit: int | None) -> list[Line]:
    """The evaluation set: every non-blank line of the file, or of the directory's data files
    (sorted by name)."""
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix in DATA_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise DataError(f"{path} holds no {', '.join(DATA_SUFFIXES)} file")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{path} does not exist")
    lines: list[Line] = []
    for file in files:
        with file.open(encoding="utf-8") as handle:
            for text in handle:
                if not text.strip():
                    continue
                try:
                    lines.append(parse_line(len(lines) + 1, text))
                except ValueError as exc:
                    raise DataError(f"{file.name}: {exc}") from exc
                if limit is not None and len(lines) >= limit:
                    return lines
    if not lines:
        raise DataError(f"the evaluation set at {path} has no lines")
    return lines


async def evaluate(
    lines: Sequence[Line],
    *,
    canary: str,
    stable: str,
    model: str,
    protocol: Protocol,
    output: str | None,
    compare: Compare,
    tolerance: float,
    concurrency: int,
    request_timeout: float,
) -> EvaluationResult:
    """Every line to both sides, then the numbers."""
    slots = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def ask(base: str, line: Line) -> Answer:
            path = request_path(protocol, model, line.body)
            body = request_body(protocol, model, line.body)
            return await _ask(
                session, base.rstrip("/") + path, body, protocol, output, request_timeout
            )

        async def exchange(line: Line) -> Exchange:
            async with slots:
                c, s = await asyncio.gather(ask(canary, line), ask(stable, line))
            return Exchange(line=line, canary=c, stable=s)

        exchanges = await asyncio.gather(*(exchange(line) for line in lines))
    return summarize(exchanges, compare, tolerance)


async def _ask(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, object],
    protocol: Protocol,
    output: str | None,
    timeout: float,
) -> Answer:
    started = time.monotonic()
    try:
        async with session.post(
            url, json=body, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as response:
            data = await response.content.read(MAX_ANSWER_BYTES + 1)
            status = response.status
    except TimeoutError:
        return Answer(None, None, f"no answer within {timeout:g}s")
    except aiohttp.ClientError as exc:
        return Answer(None, None, f"no answer: {describe_client_error(exc)}")
    seconds = time.monotonic() - started
    if status != 200:
        return Answer(seconds, None, f"HTTP {status}")
    if len(data) > MAX_ANSWER_BYTES:
        return Answer(seconds, None, f"an answer larger than {MAX_ANSWER_BYTES >> 20} MiB")
    try:
        predictions = predictions_of(protocol, json.loads(data), output)
    except (ValueError, AnswerError) as exc:
        reason = str(exc) if isinstance(exc, AnswerError) else "the answer is not JSON"
        return Answer(seconds, None, reason)
    return Answer(seconds, predictions)


def report(result: EvaluationResult, termination_log: Path) -> None:
    """Print the result and write it where the kubelet keeps it for the operator."""
    text = json.dumps(result.wire(), separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > TERMINATION_MESSAGE_BYTES:
        # only texts can make it long: the numbers always fit
        result = result.model_copy(deep=True)
        result.canary.first_error = result.stable.first_error = None
        result.error = (result.error or "")[:500] or None
        text = json.dumps(result.wire(), separators=(",", ":"), sort_keys=True)
    sys.stdout.write(text + "\n")
    with contextlib.suppress(OSError):  # not in a pod: stdout is the report
        termination_log.write_text(text)
