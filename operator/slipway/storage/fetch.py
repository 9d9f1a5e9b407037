"""`slipway fetch URI DEST`: download a model into DEST, verified and placed atomically.

DEST ends up holding the model's files (a single-file model as DEST/<file name>) and the
marker DEST/.slipway-ready, written last. See placement.py for how a half-downloaded model is
kept out of sight, digest.py for what `sha256` means for a directory, errors.py for the exit
codes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from slipway.storage.digest import model_digest, tree_digest
from slipway.storage.errors import (
    ExitCode,
    FetchError,
    checksum_mismatch,
    disk_full,
    is_disk_full,
)
from slipway.storage.hub import download_snapshot
from slipway.storage.placement import (
    ReadyMarker,
    files_under,
    new_partial_dir,
    place,
    placed_model,
    safe_relpath,
)
from slipway.storage.progress import Progress, human_bytes
from slipway.storage.retry import Backoff, with_retries
from slipway.storage.sources import FileSource, RemoteFile, source_for
from slipway.storage.uri import HubUri, parse_model_uri


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch: checksum, retries, timeouts and how often to log progress."""

    sha256: str | None = None
    backoff: Backoff = field(default_factory=Backoff)
    timeout: float = 60.0  # seconds to connect, and between two reads of a response
    progress_every: float = 5.0


@dataclass(frozen=True)
class FetchResult:
    marker: ReadyMarker
    skipped: bool  # the model was already in place


def fetch_model(
    uri: str, dest: Path, options: FetchOptions, emit: Callable[[str], None]
) -> FetchResult:
    """Download the model at `uri` into `dest`; raise FetchError with the reason if it fails."""
    model_uri = parse_model_uri(uri)
    expected = options.sha256.lower() if options.sha256 else None
    try:
        dest.mkdir(parents=True, exist_ok=True)
        already = placed_model(dest, uri, expected)
        if already is not None:
            emit(f"{uri}: already in {dest} (sha256 {already.sha256}), nothing to download")
            return FetchResult(already, skipped=True)
        partial = new_partial_dir(dest)
    except OSError as error:
        if is_disk_full(error):
            raise disk_full(str(dest)) from error
        raise
    try:
        if isinstance(model_uri, HubUri):
            marker = _fetch_hub(model_uri, partial, options, emit)
        else:
            marker = _fetch_files(source_for(model_uri, options.timeout), partial, options, emit)
        if expected is not None and marker.sha256 != expected:
            raise checksum_mismatch(uri, expected, marker.sha256)
        place(partial, dest, marker)
    except OSError as error:
        if is_disk_full(error):
            raise disk_full(str(dest)) from error
        raise
    finally:
        _remove_tree(partial)
    emit(f"{uri}: {len(marker.files)} files in {dest} (sha256 {marker.sha256})")
    return FetchResult(marker, skipped=False)


def _fetch_files(
    source: FileSource, partial: Path, options: FetchOptions, emit: Callable[[str], None]
) -> ReadyMarker:
    listing = with_retries(source.list_files, options.backoff, on_retry=_log_retry(emit))
    for file in listing.files:
        if safe_relpath(file.relpath) != file.relpath:
            raise FetchError(
                ExitCode.USAGE,
                f"{source.uri}: refusing the file name {file.relpath!r} (it would land outside "
                "the model directory or on one of slipway's own files)",
            )
    sizes = [f.size for f in listing.files]
    total = None if None in sizes else sum(s for s in sizes if s is not None)
    emit(
        f"{source.uri}: fetching {len(listing.files)} files"
        + (f", {human_bytes(total)}" if total is not None else "")
    )
    progress = Progress(len(listing.files), total, emit, every=options.progress_every)
    digests: dict[str, str] = {}
    for file in listing.files:

        def attempt(file: RemoteFile = file) -> str:
            try:
                return download_file(source, file, partial / file.relpath, progress)
            except FetchError:
                progress.file_abandoned()
                raise

        digests[file.relpath] = with_retries(attempt, options.backoff, on_retry=_log_retry(emit))
        progress.file_done()
    progress.finish()
    digest = next(iter(digests.values())) if listing.single_file else tree_digest(digests)
    return ReadyMarker(source.uri, digest, tuple(sorted(digests)), listing.single_file)


def download_file(source: FileSource, file: RemoteFile, target: Path, progress: Progress) -> str:
    """Stream one file to `target`, returning its sha256; a short body is a retryable error."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    received = 0
    with target.open("wb") as out:
        for chunk in source.read_chunks(file):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            progress.advance(len(chunk))
    if file.size is not None and received != file.size:
        raise FetchError(
            ExitCode.TRANSFER_FAILED,
            f"{source.uri}: {file.relpath}: the connection ended after {received} of "
            f"{file.size} bytes",
            retryable=True,
        )
    return digest.hexdigest()


def _fetch_hub(
    uri: HubUri, partial: Path, options: FetchOptions, emit: Callable[[str], None]
) -> ReadyMarker:
    emit(f"{uri.uri}: fetching the snapshot with huggingface_hub")

    def attempt() -> None:
        download_snapshot(uri, partial, options.timeout, os.environ)

    with_retries(attempt, options.backoff, on_retry=_log_retry(emit))
    files = files_under(partial)
    for relpath in files:
        if safe_relpath(relpath) != relpath:
            raise FetchError(
                ExitCode.USAGE, f"{uri.uri}: refusing the file name {relpath!r} in the snapshot"
            )
    size = sum((partial / f).stat().st_size for f in files)
    emit(f"{uri.uri}: fetched {len(files)} files, {human_bytes(size)}")
    digest = model_digest(partial, files, single_file=False)
    return ReadyMarker(uri.uri, digest, tuple(files), single_file=False)


def _log_retry(emit: Callable[[str], None]) -> Callable[[FetchError, float], None]:
    def log(error: FetchError, delay: float) -> None:
        emit(f"{error.message}; retrying in {delay:g}s")

    return log


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
