"""hf://org/model[@revision]: a Hugging Face Hub snapshot, through huggingface_hub.

Online, `snapshot_download(local_dir=...)` writes the files straight into the download
directory; the Hub is HF_ENDPOINT (default huggingface.co) and HF_TOKEN authenticates private
or gated repositories. With HF_HUB_OFFLINE=1 nothing is downloaded: the snapshot is copied out
of the local cache (HF_HUB_CACHE, or HF_HOME/hub), e.g. a cache volume filled beforehand.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slipway.storage.errors import (
    FetchError,
    access_denied,
    disk_full,
    is_disk_full,
    missing_extra,
    not_found,
    one_line,
    transient,
)
from slipway.storage.uri import HubUri

_TRUE = ("1", "ON", "YES", "TRUE")
# Where snapshot_download(local_dir=...) keeps its bookkeeping; not part of the model.
_LOCAL_DIR_METADATA = Path(".cache") / "huggingface"


def hub_cache_dir(env: Mapping[str, str]) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    home = env.get("HF_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


def is_offline(env: Mapping[str, str]) -> bool:
    return env.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def download_snapshot(uri: HubUri, into: Path, timeout: float, env: Mapping[str, str]) -> None:
    """Put the files of the model's snapshot into `into` (an empty directory)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils.tqdm import disable_progress_bars
    except ImportError as error:
        raise missing_extra("hf", "huggingface_hub") from error
    # tqdm bars are noise in a pod log; fetch logs its own lines.
    with disable_progress_bars():
        _download(uri, into, timeout, env, snapshot_download)
    shutil.rmtree(into / _LOCAL_DIR_METADATA, ignore_errors=True)
    if (into / ".cache").is_dir() and not any((into / ".cache").iterdir()):
        (into / ".cache").rmdir()


def _download(
    uri: HubUri, into: Path, timeout: float, env: Mapping[str, str], snapshot_download: Any
) -> None:
    try:
        if is_offline(env):
            snapshot = snapshot_download(
                uri.repo_id,
                revision=uri.revision,
                cache_dir=hub_cache_dir(env),
                local_files_only=True,
            )
            # The cache holds symlinks into blobs/: copy the files they point to.
            shutil.copytree(str(snapshot), into, symlinks=False, dirs_exist_ok=True)
        else:
            snapshot_download(
                uri.repo_id,
                revision=uri.revision,
                local_dir=into,
                # A private cache inside the download, so a read-only HOME is no obstacle.
                cache_dir=into / _LOCAL_DIR_METADATA / "hub",
                endpoint=env.get("HF_ENDPOINT") or None,
                token=env.get("HF_TOKEN") or None,
                etag_timeout=timeout,
            )
    except Exception as error:
        raise translate_hub_error(uri, error, offline=is_offline(env), dest=into) from error


def translate_hub_error(uri: HubUri, error: Exception, *, offline: bool, dest: Path) -> FetchError:
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, FetchError):
        return error
    if is_disk_full(error):
        return disk_full(str(dest.parent))
    if isinstance(error, GatedRepoError):
        return access_denied(uri.uri, "a gated repository: accept its terms, then set HF_TOKEN")
    if isinstance(error, RepositoryNotFoundError):
        return not_found(uri.uri, "repository (a private one needs HF_TOKEN)")
    if isinstance(error, RevisionNotFoundError):
        return not_found(uri.uri, f"revision {uri.revision!r}")
    if isinstance(error, LocalEntryNotFoundError) and offline:
        return not_found(uri.uri, "snapshot in the local cache (HF_HUB_OFFLINE is set)")
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
        if status in (401, 403):
            return access_denied(uri.uri, f"HTTP {status}: check HF_TOKEN")
        if status == 404:
            return not_found(uri.uri, "file")
    if isinstance(error, OSError | httpx2.HTTPError):
        return transient(uri.uri, one_line(error) + f" ({type(error).__name__})")
    raise error
