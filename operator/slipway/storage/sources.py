"""Where model files come from: object stores (s3://, gs://) and plain HTTP(S).

Each source lists the files of a model and streams their bytes, and turns its library's
exceptions into FetchErrors (not found, access denied, or a transient failure worth a retry).
The libraries are imported lazily: the operator runs without the `storage` extra.

- s3:// and gs:// use obstore (the Rust `object_store` crate). Credentials come from the
  environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
  AWS_ENDPOINT_URL or S3_ENDPOINT; GOOGLE_APPLICATION_CREDENTIALS) or the workload identity
  (AWS_WEB_IDENTITY_TOKEN_FILE / instance metadata, the GKE metadata server).
- http(s):// uses fsspec's HTTP filesystem (aiohttp).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from slipway.storage.errors import (
    ExitCode,
    FetchError,
    access_denied,
    missing_extra,
    not_found,
    one_line,
    transient,
)
from slipway.storage.uri import HttpUri, ObjectStoreUri

if TYPE_CHECKING:
    from obstore.store import ClientConfig, GCSStore, RetryConfig, S3Store

CHUNK_BYTES = 8 * 1024 * 1024
_STATUS_IN_MESSAGE = re.compile(r"status code: (\d{3})")
# The default overall request timeout of object_store (30 s) would cut large downloads short.
_WHOLE_REQUEST_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a model: the source's name for it, where it lands, its size if known."""

    key: str
    relpath: str
    size: int | None


@dataclass(frozen=True)
class Listing:
    """The files of a model; `single_file` when the URI named one file, not a directory."""

    files: list[RemoteFile]
    single_file: bool


class FileSource(Protocol):
    """A place model files are downloaded from."""

    uri: str

    def list_files(self) -> Listing: ...

    def read_chunks(self, file: RemoteFile) -> Iterator[bytes]: ...


def s3_endpoint(env: Mapping[str, str]) -> str | None:
    """The S3 endpoint named in the environment (a MinIO, Ceph, R2... server), if any."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT", "S3_ENDPOINT"):
        if env.get(name):
            return env[name]
    return None


class ObjectStoreSource:
    """s3://bucket/key and gs://bucket/key: one object, or every object under key/."""

    def __init__(self, uri: ObjectStoreUri, timeout: float, env: Mapping[str, str]) -> None:
        self.uri = uri.uri
        self._target = uri
        self._store = _object_store(uri, timeout, env)

    def list_files(self) -> Listing:
        import obstore

        key = self._target.key
        if key:
            try:
                meta = obstore.head(self._store, key)
                return Listing(
                    [RemoteFile(key, posixpath.basename(key), int(meta["size"]))],
                    single_file=True,
                )
            except Exception as error:
                if not _is_obstore_not_found(error):
                    raise self._translate(error) from error
        try:
            objects = [
                meta
                for batch in obstore.list(self._store, prefix=key or None)
                for meta in batch
                if not meta["path"].endswith("/")
            ]
        except Exception as error:
            raise self._translate(error) from error
        if not objects:
            raise not_found(self.uri)
        strip = len(key) + 1 if key else 0
        files = [RemoteFile(m["path"], m["path"][strip:], int(m["size"])) for m in objects]
        return Listing(sorted(files, key=lambda f: f.relpath), single_file=False)

    def read_chunks(self, file: RemoteFile) -> Iterator[bytes]:
        import obstore

        try:
            for chunk in obstore.get(self._store, file.key).stream(min_chunk_size=CHUNK_BYTES):
                yield bytes(chunk)
        except Exception as error:
            raise self._translate(error) from error

    def _translate(self, error: Exception) -> FetchError:
        from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

        if isinstance(error, FetchError):
            return error
        # A list request's errors come back generic: the status is only in the message.
        status = _STATUS_IN_MESSAGE.search(str(error))
        code = int(status.group(1)) if status else None
        if _is_obstore_not_found(error) or code == 404:
            return not_found(self.uri)
        if isinstance(error, PermissionDeniedError | UnauthenticatedError) or code in (401, 403):
            hint = (
                "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the storage secret, "
                "or the pod's workload identity"
                if self._target.scheme == "s3"
                else "check GOOGLE_APPLICATION_CREDENTIALS in the storage secret, "
                "or the pod's workload identity"
            )
            return access_denied(self.uri, hint)
        return transient(self.uri, one_line(error))


def _is_obstore_not_found(error: Exception) -> bool:
    from obstore.exceptions import NotFoundError

    return isinstance(error, NotFoundError | FileNotFoundError)


def _object_store(
    uri: ObjectStoreUri, timeout: float, env: Mapping[str, str]
) -> S3Store | GCSStore:
    try:
        from obstore.store import GCSStore, S3Store
    except ImportError as error:
        raise missing_extra(uri.scheme, "obstore") from error
    seconds = timedelta(seconds=timeout)
    client: ClientConfig = {
        "connect_timeout": seconds,
        "read_timeout": seconds,
        "timeout": _WHOLE_REQUEST_TIMEOUT,
    }
    # Retries are ours (one policy for every scheme, see retry.py), so object_store makes none.
    retry: RetryConfig = {"max_retries": 0, "retry_timeout": seconds}
    if uri.scheme == "gs":
        return GCSStore(uri.bucket, client_options=client, retry_config=retry)
    endpoint = s3_endpoint(env)
    extra: dict[str, Any] = {}
    if endpoint is not None:
        extra["endpoint"] = endpoint
        client["allow_http"] = endpoint.startswith("http://")
    return S3Store(uri.bucket, client_options=client, retry_config=retry, **extra)


class HttpSource:
    """http(s)://host/path: one file, streamed in a single GET."""

    def __init__(self, uri: HttpUri, timeout: float) -> None:
        self.uri = uri.uri
        self._filename = uri.filename
        self._fs = _http_filesystem(uri, timeout)

    def list_files(self) -> Listing:
        try:
            size = self._fs.info(self.uri).get("size")
        except Exception as error:
            raise self._translate(error) from error
        return Listing([RemoteFile(self.uri, self._filename, size)], single_file=True)

    def read_chunks(self, file: RemoteFile) -> Iterator[bytes]:
        try:
            with self._fs.open(file.key, "rb", block_size=0) as stream:
                while chunk := stream.read(CHUNK_BYTES):
                    yield chunk
        except Exception as error:
            raise self._translate(error) from error

    def _translate(self, error: Exception) -> FetchError:
        import aiohttp

        if isinstance(error, FetchError):
            return error
        # fsspec reports any failed GET of info() as FileNotFoundError: the cause has the status.
        response_error = next(
            (e for e in _chain(error) if isinstance(e, aiohttp.ClientResponseError)), None
        )
        if response_error is None and isinstance(error, FileNotFoundError):
            return not_found(self.uri, "file (HTTP 404)")
        if response_error is not None:
            status = response_error.status
            if status == 404:
                return not_found(self.uri, "file (HTTP 404)")
            if status in (401, 403):
                return access_denied(self.uri, f"HTTP {status}: the server refused the request")
            if status == 410:
                return not_found(self.uri, "file (HTTP 410)")
            if status != 429 and status < 500:
                return FetchError(
                    ExitCode.TRANSFER_FAILED, f"{self.uri}: HTTP {status} {response_error.message}"
                )
        return transient(self.uri, one_line(error) + f" ({type(error).__name__})")


def _chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _http_filesystem(uri: HttpUri, timeout: float) -> Any:
    try:
        import aiohttp
        from fsspec.implementations.http import HTTPFileSystem
    except ImportError as error:
        raise missing_extra(uri.uri.partition(":")[0], "fsspec") from error
    client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
    return HTTPFileSystem(client_kwargs={"timeout": client_timeout}, skip_instance_cache=True)


def source_for(uri: ObjectStoreUri | HttpUri, timeout: float) -> FileSource:
    if isinstance(uri, ObjectStoreUri):
        return ObjectStoreSource(uri, timeout, os.environ)
    return HttpSource(uri, timeout)
