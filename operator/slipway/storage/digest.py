"""The sha256 of a model, the value `--sha256` / `spec.model.storage.sha256` is compared with.

- A model that is a single file: the sha256 of its bytes (what `sha256sum FILE` prints).
- A model that is a directory: the sha256 of the UTF-8 text made of one line per file,
  sorted by relative path, each `RELPATH\\0SHA256\\n` (RELPATH with `/` separators, SHA256 the
  file's lowercase hex digest). In a shell, from inside the model directory:
  `find . -type f ! -name .slipway-ready | sed 's|^\\./||' | LC_ALL=C sort |
  while read -r f; do printf '%s\\0%s\\n' "$f" "$(sha256sum < "$f" | cut -d' ' -f1)"; done |
  sha256sum`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

_CHUNK = 1024 * 1024


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(file_digests: Mapping[str, str]) -> str:
    """The digest of a directory model from {relative path: sha256 of the file}."""
    lines = "".join(f"{path}\0{file_digests[path]}\n" for path in sorted(file_digests))
    return hashlib.sha256(lines.encode()).hexdigest()


def model_digest(root: Path, relpaths: list[str], *, single_file: bool) -> str:
    """Hash the files of a model laid out under `root` (a single file, or a directory)."""
    digests = {relpath: sha256_of_file(root / relpath) for relpath in relpaths}
    if single_file:
        (only,) = digests.values()
        return only
    return tree_digest(digests)
