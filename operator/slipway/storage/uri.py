"""Model URIs: what `spec.model.uri` names, parsed into the few shapes `slipway fetch` knows.

Pure: no I/O and no third-party imports, so the resource builders can use it too.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from slipway.storage.errors import ExitCode, FetchError

# Fetched by the init container; the rest are mounted (pvc://, oci://).
FETCHED_SCHEMES = ("s3", "gs", "hf", "http", "https")
MOUNTED_SCHEMES = ("pvc", "oci")

_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_EXPECTED = (
    "expected s3://bucket/key, gs://bucket/key, hf://org/model[@revision] or http(s)://host/path"
)


@dataclass(frozen=True)
class ObjectStoreUri:
    """s3://bucket/key or gs://bucket/key: one object, or every object under `key/`."""

    uri: str
    scheme: str
    bucket: str
    key: str  # without leading or trailing slash; empty for the whole bucket


@dataclass(frozen=True)
class HttpUri:
    """http(s)://host/path: one file, saved under the last segment of its path."""

    uri: str
    filename: str


@dataclass(frozen=True)
class HubUri:
    """hf://org/model[@revision]: a snapshot of a Hugging Face Hub model repository."""

    uri: str
    repo_id: str
    revision: str | None


ModelUri = ObjectStoreUri | HttpUri | HubUri


def needs_fetch(uri: str) -> bool:
    """Whether a model at `uri` reaches the server through `slipway fetch` (else it is mounted)."""
    return uri.partition("://")[0].lower() in FETCHED_SCHEMES


def parse_model_uri(uri: str) -> ModelUri:
    """Parse a fetchable model URI; raise FetchError(USAGE) naming what is wrong with it."""
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if scheme in MOUNTED_SCHEMES and sep:
        how = "from its claim" if scheme == "pvc" else "as an image volume"
        raise FetchError(
            ExitCode.USAGE,
            f"{uri}: {scheme}:// models are mounted directly {how}; there is nothing to fetch",
        )
    if not sep or scheme not in FETCHED_SCHEMES or not rest:
        raise FetchError(ExitCode.USAGE, f"bad model URI {uri!r}: {_EXPECTED}")
    if scheme in ("s3", "gs"):
        return _object_store_uri(uri, scheme, rest)
    if scheme == "hf":
        return _hub_uri(uri, rest)
    return _http_uri(uri)


def _object_store_uri(uri: str, scheme: str, rest: str) -> ObjectStoreUri:
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise FetchError(ExitCode.USAGE, f"bad model URI {uri!r}: the bucket name is empty")
    return ObjectStoreUri(uri=uri, scheme=scheme, bucket=bucket, key=key.strip("/"))


def _hub_uri(uri: str, rest: str) -> HubUri:
    repo_id, at, revision = rest.rstrip("/").partition("@")
    parts = repo_id.split("/")
    if len(parts) > 2 or not all(_HUB_NAME.match(part) for part in parts):
        raise FetchError(
            ExitCode.USAGE,
            f"bad model URI {uri!r}: expected hf://org/model or hf://org/model@revision",
        )
    if at and not revision:
        raise FetchError(ExitCode.USAGE, f"bad model URI {uri!r}: the revision after @ is empty")
    return HubUri(uri=uri, repo_id=repo_id, revision=revision or None)


def _http_uri(uri: str) -> HttpUri:
    parts = urlsplit(uri)
    if not parts.hostname:
        raise FetchError(ExitCode.USAGE, f"bad model URI {uri!r}: the host name is empty")
    filename = posixpath.basename(unquote(parts.path).rstrip("/"))
    if filename in ("", ".", ".."):
        raise FetchError(
            ExitCode.USAGE,
            f"bad model URI {uri!r}: the path must end in a file name, e.g. https://host/model.onnx",
        )
    return HttpUri(uri=uri, filename=filename)
