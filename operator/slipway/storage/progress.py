"""Progress in the log: files and bytes so far, at most one line every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(count: float) -> str:
    for unit in _UNITS:
        if count < 1024 or unit == _UNITS[-1]:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def progress_line(
    files_done: int, files_total: int, bytes_done: int, bytes_total: int | None, seconds: float
) -> str:
    """e.g. `fetched 2/5 files, 12.0 MiB of 40.0 MiB (30%) at 3.0 MiB/s`."""
    amount = human_bytes(bytes_done)
    if bytes_total:
        amount += f" of {human_bytes(bytes_total)} ({100 * bytes_done // bytes_total}%)"
    rate = f" at {human_bytes(bytes_done / seconds)}/s" if seconds > 0 else ""
    return f"fetched {files_done}/{files_total} files, {amount}{rate}"


class Progress:
    """Counts what was downloaded and emits a progress line when `every` seconds have passed."""

    def __init__(
        self,
        files_total: int,
        bytes_total: int | None,
        emit: Callable[[str], None],
        *,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._files_total = files_total
        self._bytes_total = bytes_total
        self._emit = emit
        self._every = every
        self._clock = clock
        self._started = clock()
        self._last_emit = self._started
        self._files_done = 0
        self._bytes_done = 0  # of finished files
        self._bytes_current = 0  # of the file in flight

    def advance(self, count: int) -> None:
        self._bytes_current += count
        if self._clock() - self._last_emit >= self._every:
            self._report()

    def file_done(self) -> None:
        self._files_done += 1
        self._bytes_done += self._bytes_current
        self._bytes_current = 0

    def file_abandoned(self) -> None:
        """The attempt failed: its bytes will be downloaded again."""
        self._bytes_current = 0

    def finish(self) -> None:
        self._report()

    def _report(self) -> None:
        now = self._clock()
        self._last_emit = now
        self._emit(
            progress_line(
                self._files_done,
                self._files_total,
                self._bytes_done + self._bytes_current,
                self._bytes_total,
                now - self._started,
            )
        )
