"""The `slipway fetch` command line: arguments, one-line errors, exit codes.

Wired by slipway.cli as a subcommand:

    fetch = subparsers.add_parser("fetch", help="download a model into a directory")
    add_fetch_arguments(fetch); fetch.set_defaults(run=run_fetch)
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import traceback
from pathlib import Path

from slipway.storage.errors import ExitCode, FetchError
from slipway.storage.fetch import FetchOptions, fetch_model
from slipway.storage.report import fetch_report
from slipway.storage.retry import Backoff

TERMINATION_LOG = Path("/dev/termination-log")


def _sha256(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise argparse.ArgumentTypeError(f"not a sha256 (64 hex digits): {text!r}")
    return text.lower()


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text}")
    return value


def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Download the model at URI (s3://, gs://, hf://, http(s)://) into the directory DEST, "
        "verify it and make it appear there atomically. Exit codes: "
        + ", ".join(f"{code.value} {code.name.lower().replace('_', ' ')}" for code in ExitCode)
        + "."
    )
    parser.add_argument("uri", metavar="URI", help="the model, e.g. s3://models/fraud/2.1.0")
    parser.add_argument("dest", metavar="DEST", type=Path, help="directory to put the model in")
    parser.add_argument(
        "--sha256",
        type=_sha256,
        help="expected sha256: of the file for a single-file model, else of the sorted "
        "'relpath\\0sha256\\n' lines of its files",
    )
    parser.add_argument(
        "--retries",
        type=_non_negative_int,
        default=Backoff().retries,
        help="attempts after the first for failures worth a retry (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=FetchOptions().timeout,
        help="seconds to connect, and to wait between two reads (default: %(default)s)",
    )
    parser.add_argument(
        "--backoff",
        type=_positive_float,
        default=Backoff().initial,
        help="seconds before the first retry, doubling up to 30 (default: %(default)s)",
    )


def run_fetch(args: argparse.Namespace) -> int:
    """Run a parsed `slipway fetch`; print one actionable line on stderr when it fails."""
    options = FetchOptions(
        sha256=args.sha256,
        backoff=Backoff(retries=args.retries, initial=args.backoff),
        timeout=args.timeout,
    )
    try:
        result = fetch_model(args.uri, args.dest, options, emit=_log)
    except FetchError as error:
        return _fail(error.code, error.message)
    except Exception as error:
        traceback.print_exc()
        return _fail(ExitCode.FAILED, f"{args.uri}: unexpected error: {error!r}")
    # the operator reads the digest of what was placed from the pod's status
    _terminate_with(fetch_report(result.marker.sha256, args.uri))
    return ExitCode.OK


def fetch_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slipway fetch")
    add_fetch_arguments(parser)
    return run_fetch(parser.parse_args(argv))


def _log(line: str) -> None:
    print(line, flush=True)


def _fail(code: ExitCode, message: str) -> int:
    line = f"slipway fetch: {message}"
    print(line, file=sys.stderr, flush=True)
    _terminate_with(line + "\n")
    return int(code)


def _terminate_with(message: str) -> None:
    """Kubernetes shows this file as the container's termination message (kubectl describe, and
    the pod's status, where the operator reads it)."""
    if TERMINATION_LOG.exists():
        with contextlib.suppress(OSError):
            TERMINATION_LOG.write_text(message)
