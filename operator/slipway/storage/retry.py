"""Retries with exponential backoff, bounded in count, for the failures worth another try."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from slipway.storage.errors import ExitCode, FetchError

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """`retries` more attempts after the first, waiting initial, 2x initial, ... up to `maximum`."""

    retries: int = 4
    initial: float = 1.0
    maximum: float = 30.0

    def delays(self) -> list[float]:
        return [min(self.initial * 2**attempt, self.maximum) for attempt in range(self.retries)]


def with_retries(
    action: Callable[[], T],
    backoff: Backoff,
    *,
    on_retry: Callable[[FetchError, float], None],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `action`; on a retryable FetchError wait and run it again, at most `retries` times."""
    for delay in [*backoff.delays(), None]:
        try:
            return action()
        except FetchError as error:
            if not error.retryable:
                raise
            if delay is None:
                attempts = backoff.retries + 1
                raise FetchError(
                    ExitCode.TRANSFER_FAILED,
                    f"{error.message} (gave up after {attempts} attempts)",
                ) from error
            on_retry(error, delay)
            sleep(delay)
    raise AssertionError("unreachable")
