"""`slipway fetch` over plain HTTP, against Python's http.server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipway.storage import ExitCode, fetch_main
from slipway.storage.placement import READY_MARKER, read_marker
from slipway.storage.report import digest_in_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fetch_servers import HttpServer, http_server

MODEL = os.urandom(256 * 1024)
MODEL_SHA = hashlib.sha256(MODEL).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    root = tmp_path_factory.mktemp("www")
    (root / "model.onnx").write_bytes(MODEL)
    with http_server(root, flaky_failures=1) as running:
        yield running


def fetch(*argv: str) -> int:
    return fetch_main([*argv, "--backoff", "0.01", "--timeout", "5"])


def visible(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def test_a_file_lands_under_its_name_with_a_ready_marker(
    server: HttpServer, tmp_path: Path
) -> None:
    uri = f"{server.url}/model.onnx"
    assert fetch(uri, str(tmp_path), "--sha256", MODEL_SHA) == ExitCode.OK
    assert (tmp_path / "model.onnx").read_bytes() == MODEL
    assert visible(tmp_path) == [READY_MARKER, "model.onnx"]
    marker = read_marker(tmp_path)
    assert marker is not None and (marker.uri, marker.sha256) == (uri, MODEL_SHA)


def test_a_second_run_finds_the_model_in_place_and_downloads_nothing(
    server: HttpServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"{server.url}/model.onnx?run=twice"
    assert fetch(uri, str(tmp_path)) == ExitCode.OK
    assert fetch(uri, str(tmp_path), "--sha256", MODEL_SHA) == ExitCode.OK
    assert server.requests["/model.onnx?run=twice"] == 1
    assert "nothing to download" in capsys.readouterr().out


def test_a_download_cut_off_half_way_is_retried_and_then_succeeds(
    server: HttpServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fetch(f"{server.url}/flaky/model.onnx", str(tmp_path), "--sha256", MODEL_SHA) == 0
    assert (tmp_path / "model.onnx").read_bytes() == MODEL
    assert server.requests["/flaky/model.onnx"] == 2
    assert "retrying in 0.01s" in capsys.readouterr().out


def test_a_download_always_cut_off_fails_cleanly_after_the_retries(
    server: HttpServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = fetch(f"{server.url}/broken/model.onnx", str(tmp_path), "--retries", "2")
    assert code == ExitCode.TRANSFER_FAILED
    assert server.requests["/broken/model.onnx"] == 3
    assert "(gave up after 3 attempts)" in capsys.readouterr().err
    assert visible(tmp_path) == []


@pytest.mark.parametrize(
    ("path", "code", "says"),
    [
        ("missing.onnx", ExitCode.NOT_FOUND, "missing.onnx: no such file (HTTP 404)"),
        ("forbidden/model.onnx", ExitCode.ACCESS_DENIED, "model.onnx: access denied (HTTP 403"),
    ],
)
def test_missing_and_forbidden_files_exit_with_their_own_code_and_one_line(
    server: HttpServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    path: str,
    code: int,
    says: str,
) -> None:
    assert fetch(f"{server.url}/{path}", str(tmp_path)) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err
    assert visible(tmp_path) == []


def test_a_checksum_mismatch_fails_and_nothing_reaches_the_final_path(
    server: HttpServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "0" * 64
    assert fetch(f"{server.url}/model.onnx", str(tmp_path), "--sha256", wrong) == 5
    assert f"sha256 mismatch: expected {wrong}, got {MODEL_SHA}" in capsys.readouterr().err
    assert visible(tmp_path) == []


@pytest.fixture
def termination_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the kubelet gives a container as /dev/termination-log."""
    log = tmp_path / "termination-log"
    log.write_text("")
    monkeypatch.setattr("slipway.storage.command.TERMINATION_LOG", log)
    return log


def test_the_digest_of_what_was_placed_is_the_termination_message(
    server: HttpServer, tmp_path: Path, termination_log: Path
) -> None:
    uri = f"{server.url}/model.onnx"
    assert fetch(uri, str(tmp_path / "dest")) == ExitCode.OK

    assert digest_in_report(termination_log.read_text()) == f"sha256:{MODEL_SHA}"
    assert json.loads(termination_log.read_text())["uri"] == uri

    # a second run that finds the model in place reports the same digest
    termination_log.write_text("")
    assert fetch(uri, str(tmp_path / "dest")) == ExitCode.OK
    assert digest_in_report(termination_log.read_text()) == f"sha256:{MODEL_SHA}"


def test_a_failed_fetch_reports_its_error_and_no_digest(
    server: HttpServer, tmp_path: Path, termination_log: Path
) -> None:
    assert fetch(f"{server.url}/model.onnx", str(tmp_path), "--sha256", "0" * 64) == 5

    assert "sha256 mismatch" in termination_log.read_text()
    assert digest_in_report(termination_log.read_text()) is None


@pytest.mark.parametrize(
    ("message", "digest"),
    [
        ('{"modelDigest": "sha256:' + "a" * 64 + '", "uri": "s3://m"}', "sha256:" + "a" * 64),
        ('{"modelDigest": "sha256:' + "A" * 64 + '"}', None),
        ('{"modelDigest": "md5:abc"}', None),
        ('{"modelDigest": "sha256:' + "a" * 30, None),  # cut off at 4096 bytes
        ("slipway fetch: s3://m: not found", None),
        ("[1, 2]", None),
        ("", None),
        (None, None),
    ],
)
def test_only_a_whole_report_of_a_sha256_is_a_digest(
    message: str | None, digest: str | None
) -> None:
    assert digest_in_report(message) == digest
