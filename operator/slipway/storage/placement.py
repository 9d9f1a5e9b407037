"""Atomic placement: a model appears at its final path only whole and verified.

The download goes into DEST/.slipway-partial-XXXX (same filesystem as DEST, so a rename is
atomic). After the checksum, each top-level entry is renamed into DEST (DEST itself is usually
a volume mount point and cannot be replaced), then DEST/.slipway-ready is written last. A later
run that finds the marker, for the same URI and with files that still hash to its digest, skips
the download.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from slipway.storage.digest import model_digest

PARTIAL_PREFIX = ".slipway-partial-"
READY_MARKER = ".slipway-ready"


@dataclass(frozen=True)
class ReadyMarker:
    """What DEST/.slipway-ready records about the model placed next to it."""

    uri: str
    sha256: str
    files: tuple[str, ...]
    single_file: bool

    def to_json(self) -> str:
        return json.dumps(
            {
                "uri": self.uri,
                "sha256": self.sha256,
                "files": list(self.files),
                "singleFile": self.single_file,
            },
            indent=2,
        )


def read_marker(dest: Path) -> ReadyMarker | None:
    try:
        data = json.loads((dest / READY_MARKER).read_text())
        return ReadyMarker(
            uri=str(data["uri"]),
            sha256=str(data["sha256"]),
            files=tuple(str(f) for f in data["files"]),
            single_file=bool(data["singleFile"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def placed_model(dest: Path, uri: str, expected_sha256: str | None) -> ReadyMarker | None:
    """The marker of a model already placed in `dest` from `uri`, if its files still match."""
    marker = read_marker(dest)
    if marker is None or marker.uri != uri:
        return None
    if expected_sha256 is not None and marker.sha256 != expected_sha256:
        return None
    if not all((dest / f).is_file() for f in marker.files) or not marker.files:
        return None
    actual = model_digest(dest, list(marker.files), single_file=marker.single_file)
    return marker if actual == marker.sha256 else None


def safe_relpath(relpath: str) -> str | None:
    """`relpath` if it stays inside the model directory and is not one of ours, else None."""
    path = PurePosixPath(relpath)
    if not path.parts or path.is_absolute() or ".." in path.parts:
        return None
    top = path.parts[0]
    if top == READY_MARKER or top.startswith(PARTIAL_PREFIX):
        return None
    return path.as_posix()


def new_partial_dir(dest: Path) -> Path:
    """A fresh download directory inside `dest`, after removing any left by a killed run."""
    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob(PARTIAL_PREFIX + "*"):
        _remove(stale)
    return Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=dest))


def files_under(root: Path) -> list[str]:
    """Relative POSIX paths of the regular files under `root`, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def place(partial: Path, dest: Path, marker: ReadyMarker) -> None:
    """Move the verified download from `partial` into `dest`, then write the ready marker."""
    # Without a marker during the moves, a crash here can never look like a finished model.
    (dest / READY_MARKER).unlink(missing_ok=True)
    for entry in sorted(partial.iterdir()):
        target = dest / entry.name
        if target.exists() or target.is_symlink():
            _remove(target)
        os.rename(entry, target)
    marker_tmp = partial / READY_MARKER
    marker_tmp.write_text(marker.to_json())
    os.replace(marker_tmp, dest / READY_MARKER)
    partial.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
