"""The pieces of `slipway fetch` that need no server: digests, placement, progress, retries,
exit codes, and a full disk.

A full disk (ENOSPC) is injected: a test cannot make the real filesystem run out of space on
demand, so the file write raises OSError(ENOSPC) as the kernel would.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipway.storage import ExitCode, FetchError, add_fetch_arguments, fetch_main
from slipway.storage import fetch as fetch_module
from slipway.storage.digest import model_digest, tree_digest
from slipway.storage.errors import is_disk_full
from slipway.storage.placement import (
    READY_MARKER,
    ReadyMarker,
    new_partial_dir,
    place,
    placed_model,
    read_marker,
    safe_relpath,
)
from slipway.storage.progress import Progress, human_bytes, progress_line
from slipway.storage.retry import Backoff, with_retries
from slipway.storage.sources import Listing, RemoteFile


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- digests ----------------------------------------------------------------------------------


def test_directory_digest_is_sha256_of_sorted_relpath_nul_sha256_lines() -> None:
    files = {"b/w.bin": sha(b"w"), "a.json": sha(b"{}")}
    text = f"a.json\0{sha(b'{}')}\nb/w.bin\0{sha(b'w')}\n"
    assert tree_digest(files) == sha(text.encode())


def test_single_file_digest_is_the_files_own_sha256(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx bytes")
    assert model_digest(tmp_path, ["model.onnx"], single_file=True) == sha(b"onnx bytes")


# --- placement --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relpath", "safe"),
    [
        ("model.bin", "model.bin"),
        ("sub/dir/w.bin", "sub/dir/w.bin"),
        ("../escape", None),
        ("a/../../escape", None),
        ("/etc/passwd", None),
        ("", None),
        (READY_MARKER, None),
        (".slipway-partial-x/f", None),
    ],
)
def test_only_relative_paths_inside_the_model_are_accepted(relpath: str, safe: str | None) -> None:
    assert safe_relpath(relpath) == safe


def test_placing_moves_the_download_in_and_writes_the_marker_last(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    (dest / "old-file").parent.mkdir(parents=True)
    (dest / "model.bin").write_bytes(b"stale")
    partial = new_partial_dir(dest)
    (partial / "model.bin").write_bytes(b"new")
    marker = ReadyMarker("s3://b/model.bin", sha(b"new"), ("model.bin",), single_file=True)

    place(partial, dest, marker)

    assert (dest / "model.bin").read_bytes() == b"new"
    assert read_marker(dest) == marker
    assert not partial.exists()
    assert placed_model(dest, "s3://b/model.bin", sha(b"new")) == marker


def test_a_new_download_dir_clears_what_a_killed_run_left(tmp_path: Path) -> None:
    stale = tmp_path / ".slipway-partial-dead"
    (stale / "half.bin").parent.mkdir(parents=True)
    (stale / "half.bin").write_bytes(b"half")
    fresh = new_partial_dir(tmp_path)
    assert not stale.exists()
    assert fresh.parent == tmp_path and fresh.name.startswith(".slipway-partial-")


@pytest.mark.parametrize(
    ("uri", "expected", "tamper", "reused"),
    [
        ("s3://b/m", None, False, True),
        ("s3://b/m", sha(b"w"), False, True),
        ("s3://b/other", None, False, False),
        ("s3://b/m", "0" * 64, False, False),
        ("s3://b/m", None, True, False),
    ],
)
def test_a_placed_model_is_reused_only_for_the_same_uri_digest_and_intact_files(
    tmp_path: Path, uri: str, expected: str | None, tamper: bool, reused: bool
) -> None:
    (tmp_path / "w.bin").write_bytes(b"w")
    marker = ReadyMarker("s3://b/m", sha(b"w"), ("w.bin",), single_file=True)
    (tmp_path / READY_MARKER).write_text(marker.to_json())
    if tamper:
        (tmp_path / "w.bin").write_bytes(b"changed")
    assert (placed_model(tmp_path, uri, expected) is not None) == reused


# --- progress and retries ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (5 * 1024**2, "5.0 MiB"),
        (3 * 1024**4, "3.0 TiB"),
    ],
)
def test_byte_counts_read_as_binary_units(count: int, text: str) -> None:
    assert human_bytes(count) == text


def test_progress_line_shows_files_bytes_share_and_rate() -> None:
    line = progress_line(2, 5, 12 * 1024**2, 40 * 1024**2, 4.0)
    assert line == "fetched 2/5 files, 12.0 MiB of 40.0 MiB (30%) at 3.0 MiB/s"


def test_progress_is_logged_at_most_once_per_interval_and_forgets_failed_attempts() -> None:
    now = [0.0]
    lines: list[str] = []
    progress = Progress(1, 300, lines.append, every=5.0, clock=lambda: now[0])
    progress.advance(100)
    now[0] = 4.0
    progress.advance(100)
    assert lines == []
    now[0] = 5.0
    progress.advance(50)
    assert lines == ["fetched 0/1 files, 250 B of 300 B (83%) at 50 B/s"]
    progress.file_abandoned()
    progress.advance(300)
    progress.file_done()
    progress.finish()
    assert lines[-1] == "fetched 1/1 files, 300 B of 300 B (100%) at 60 B/s"


def test_backoff_doubles_up_to_its_maximum() -> None:
    assert Backoff(retries=5, initial=1.0, maximum=6.0).delays() == [1.0, 2.0, 4.0, 6.0, 6.0]


def flaky(failures: list[FetchError]) -> object:
    def action() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    return action


def test_retryable_failures_are_retried_with_backoff_then_succeed() -> None:
    slept: list[float] = []
    retried: list[str] = []
    failures = [FetchError(ExitCode.TRANSFER_FAILED, "reset", retryable=True)] * 2
    result = with_retries(
        flaky(list(failures)),  # type: ignore[arg-type]
        Backoff(retries=3, initial=0.5),
        on_retry=lambda e, d: retried.append(f"{e.message} {d}"),
        sleep=slept.append,
    )
    assert result == "done"
    assert slept == [0.5, 1.0]
    assert retried == ["reset 0.5", "reset 1.0"]


def test_retries_are_bounded_and_the_last_error_says_how_many_attempts() -> None:
    failures = [FetchError(ExitCode.TRANSFER_FAILED, "reset", retryable=True)] * 3
    with pytest.raises(FetchError) as raised:
        with_retries(
            flaky(list(failures)),  # type: ignore[arg-type]
            Backoff(retries=2),
            on_retry=lambda e, d: None,
            sleep=lambda s: None,
        )
    assert raised.value.code == ExitCode.TRANSFER_FAILED
    assert raised.value.message == "reset (gave up after 3 attempts)"


def test_final_failures_are_not_retried() -> None:
    slept: list[float] = []
    with pytest.raises(FetchError) as raised:
        with_retries(
            flaky([FetchError(ExitCode.NOT_FOUND, "s3://b/k: no such object")]),  # type: ignore[arg-type]
            Backoff(retries=3),
            on_retry=lambda e, d: None,
            sleep=slept.append,
        )
    assert raised.value.code == ExitCode.NOT_FOUND
    assert slept == []


# --- exit codes and the command line ----------------------------------------------------------


def test_every_failure_cause_has_its_own_exit_code() -> None:
    codes = [code.value for code in ExitCode]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["pvc://claim/fraud", "DEST"], ExitCode.USAGE, "mounted directly from its claim"),
        (["oci://registry/fraud:2", "DEST"], ExitCode.USAGE, "mounted directly as an image volume"),
        (["ftp://host/model", "DEST"], ExitCode.USAGE, "bad model URI 'ftp://host/model'"),
    ],
)
def test_uris_that_cannot_be_fetched_exit_with_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, says: str
) -> None:
    argv = [a.replace("DEST", str(tmp_path / "m")) for a in argv]
    assert fetch_main(argv) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("slipway fetch: ") and says in err
    assert not (tmp_path / "m").exists()


def test_the_parser_accepts_the_documented_options() -> None:
    parser = argparse.ArgumentParser()
    add_fetch_arguments(parser)
    args = parser.parse_args(
        ["s3://b/k", "/mnt/models", "--sha256", "AB" * 32, "--retries", "0", "--timeout", "5"]
    )
    assert (args.uri, args.dest, args.sha256, args.retries, args.timeout) == (
        "s3://b/k",
        Path("/mnt/models"),
        "ab" * 32,
        0,
        5.0,
    )


@pytest.mark.parametrize("bad", [["--sha256", "abc"], ["--retries", "-1"], ["--timeout", "0"]])
def test_the_parser_rejects_malformed_options(bad: list[str]) -> None:
    parser = argparse.ArgumentParser()
    add_fetch_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["s3://b/k", "/mnt/models", *bad])


# --- a full disk (injected) -------------------------------------------------------------------


class MemorySource:
    """A source that serves bytes from memory, so the disk is the only thing under test."""

    uri = "s3://bucket/model"

    def list_files(self) -> Listing:
        return Listing([RemoteFile("model/w.bin", "w.bin", 4)], single_file=False)

    def read_chunks(self, file: RemoteFile) -> Iterator[bytes]:
        yield b"ab"
        yield b"cd"


def test_a_full_disk_fails_at_once_with_its_own_code_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(fetch_module, "source_for", lambda uri, timeout: MemorySource())
    real_open = Path.open

    def open_on_full_disk(self: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        handle = real_open(self, mode, *args, **kwargs)  # type: ignore[call-overload]
        if "w" in mode and self.name == "w.bin":

            def write(data: bytes) -> int:
                raise OSError(errno.ENOSPC, "No space left on device")

            handle.write = write
        return handle

    monkeypatch.setattr(Path, "open", open_on_full_disk)
    dest = tmp_path / "models"

    assert fetch_main(["s3://bucket/model", str(dest), "--backoff", "0.01"]) == ExitCode.DISK_FULL
    err = capsys.readouterr().err
    assert f"no space left on device while writing the model into {dest}" in err
    assert "sizeLimit" in err
    assert list(dest.iterdir()) == []


def test_disk_full_is_recognised_however_deep_a_library_wrapped_it() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("write failed") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


@pytest.mark.parametrize(
    ("uri", "module"),
    [
        ("s3://bucket/model", "obstore.store"),
        ("gs://bucket/model", "obstore.store"),
        ("https://host/model.onnx", "fsspec.implementations.http"),
        ("hf://acme/tiny", "huggingface_hub"),
    ],
)
def test_without_the_storage_extra_the_message_says_what_to_install(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    uri: str,
    module: str,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    assert fetch_main([uri, str(tmp_path / "m"), "--retries", "0"]) == ExitCode.MISSING_EXTRA
    assert "install slipway[storage]" in capsys.readouterr().err
    assert list((tmp_path / "m").iterdir()) == []
