"""What an informer delivered, for tests of the watches (unit and integration) to wait on."""

from __future__ import annotations

import threading

from slipway.controller import Key
from slipway.watch import Change


class Heard:
    """The `deliver` of an informer under test: keeps every Change it is given."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self._lock = threading.Lock()

    def __call__(self, change: Change) -> None:
        with self._lock:
            self.changes.append(change)

    def owners(self) -> set[Key]:
        with self._lock:
            return {key for change in self.changes for key in change.owners}
