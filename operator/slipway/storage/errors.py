"""How `slipway fetch` fails: one exit code per cause, one line a person can act on."""

from __future__ import annotations

import errno
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of `slipway fetch`; each cause has its own, so a pod's status tells them apart."""

    OK = 0
    FAILED = 1  # an unexpected error (a bug): the log has the traceback
    USAGE = 2  # a bad URI, or a URI that is mounted rather than fetched (pvc://, oci://)
    NOT_FOUND = 3
    ACCESS_DENIED = 4
    CHECKSUM_MISMATCH = 5
    DISK_FULL = 6
    TRANSFER_FAILED = 7  # the network kept failing after every retry
    MISSING_EXTRA = 8  # the `storage` extra is not installed


class FetchError(Exception):
    """A failure with its exit code and a one-line message; `retryable` ones get another attempt."""

    def __init__(self, code: ExitCode, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


def not_found(uri: str, what: str = "object") -> FetchError:
    return FetchError(ExitCode.NOT_FOUND, f"{uri}: no such {what}")


def access_denied(uri: str, hint: str) -> FetchError:
    return FetchError(ExitCode.ACCESS_DENIED, f"{uri}: access denied ({hint})")


def transient(uri: str, detail: str) -> FetchError:
    return FetchError(ExitCode.TRANSFER_FAILED, f"{uri}: {detail}", retryable=True)


def checksum_mismatch(uri: str, expected: str, actual: str) -> FetchError:
    return FetchError(
        ExitCode.CHECKSUM_MISMATCH, f"{uri}: sha256 mismatch: expected {expected}, got {actual}"
    )


def disk_full(dest: str) -> FetchError:
    return FetchError(
        ExitCode.DISK_FULL,
        f"no space left on device while writing the model into {dest}: "
        "raise spec.model.storage.sizeLimit or free the volume",
    )


def missing_extra(scheme: str, module: str) -> FetchError:
    return FetchError(
        ExitCode.MISSING_EXTRA,
        f"fetching {scheme}:// models needs the Python module '{module}': install slipway[storage]",
    )


def one_line(error: BaseException) -> str:
    """The first line of an exception's text (library errors are often many lines long)."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].strip()


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC (device full) or EDQUOT (quota), however deep a library wrapped it."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in chain)
