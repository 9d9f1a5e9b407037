"""Watches that feed the store: list once, then watch from there, with bookmarks, for as long as
the API server keeps our place.

One `Informer` per kind (and per namespace, when the operator serves some): it lists the kind page
by page into the store (`Store.replace`), then watches from the list's resourceVersion with
`allowWatchBookmarks`, so that the resourceVersion it resumes from stays recent even when nothing
it watches changes. A watch that ends (the server's timeout, a dropped connection) is reopened from
the last resourceVersion seen; only a `410 Gone` (the server no longer has that version) makes it
list again, and that list says what was deleted meanwhile. Nothing lists periodically.

Why not kopf's watches: kopf runs every watch event through its per-object worker and its cause
detection, which deep-copies each body for a diff base that event handlers never use; at 1,000
ModelDeployments that was 40 % of the operator's CPU (py-spy, bench/README.md). Here an event is
one json.loads, one projection and one comparison, on a thread of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from slipway.controller import Key, Store
from slipway.kube import ApiError, read_ok, send

log = logging.getLogger(__name__)

# the server ends each watch after this long (plus up to the same again, at random, so that the
# watches of many operators do not all reopen at once), as client-go's reflector does
WATCH_SECONDS = 300
LIST_PAGE = 500
# back-off after an error, doubling up to the last
RETRY_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


@dataclass(frozen=True)
class Watched:
    """A kind the operator watches: its collection under `prefix` and a server-side selector."""

    kind: str
    prefix: str  # "/api/v1", "/apis/apps/v1"
    plural: str
    selector: str = ""

    def path(self, namespace: str) -> str:
        if namespace:
            return f"{self.prefix}/namespaces/{namespace}/{self.plural}"
        return f"{self.prefix}/{self.plural}"


@dataclass(frozen=True)
class Change:
    """What one list or a burst of watch events did to the store, for the work queue."""

    kind: str
    owners: frozenset[Key]  # ModelDeployments whose own object or children changed
    deleted: frozenset[Key] = frozenset()  # ModelDeployments that were deleted
    listed: bool = False  # a (re-)list: `owners` includes those whose objects went away


Deliver = Callable[[Change], None]


class Gone(Exception):
    """The API server no longer has the resourceVersion the watch would resume from."""


class _Stopped(Exception):
    """The informer was stopped in the middle of a list."""


class NotServed(Exception):
    """The API server does not serve the kind (404): a CRD not installed, or deleted."""


class Informer:
    """Lists and watches one kind into the store on a thread of its own; `deliver` hears of every
    change the reconcile would care about (Store.observe filters the rest out)."""

    def __init__(
        self,
        api: client.ApiClient,
        watched: Watched,
        store: Store,
        deliver: Deliver,
        namespace: str = "",
        on_body: Callable[[Mapping[str, Any]], None] | None = None,
        *,
        watch_seconds: int = WATCH_SECONDS,
        resume_from: str | None = None,
    ) -> None:
        self.api = api
        self.watched = watched
        self.store = store
        self.deliver = deliver
        self.namespace = namespace
        self.on_body = on_body  # sees every body of the kind (the per-object metrics)
        self.synced = threading.Event()  # the first list is in the store
        self.not_served = threading.Event()  # the last list was answered 404
        self._stop = threading.Event()
        self.watch_seconds = watch_seconds
        self.lists = 0  # how often it listed (once, unless the server forgot its place)
        self.watches = 0  # how many watch requests it made (one per server timeout)
        self._response: Any = None
        # where its watch goes on from (None: list first); resume_from: as if it had listed
        self._version: str | None = resume_from
        self._lock = threading.Lock()
        where = f" in {namespace}" if namespace else ""
        self._thread = threading.Thread(
            target=self._run, name=f"watch {watched.plural}{where}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop at once: no list, no event and no delivery after this returns."""
        self._stop.set()
        with self._lock:
            response = self._response
        if response is not None:
            # unblocks the thread's read (one already closed has nothing to unblock)
            with contextlib.suppress(Exception):
                response.shutdown()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_synced(self, timeout: float) -> bool:
        """Wait until the first list is in the store: False when stopped (or timed out) first."""
        deadline = time.monotonic() + timeout
        while not self.synced.wait(0.2):
            if self._stop.is_set() or time.monotonic() > deadline:
                return False
        return not self._stop.is_set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self._version is None:
                    self._list()
                self._watch()
                failures = 0
            except Gone:
                log.info("%s: the watch's place is gone (410); listing afresh", self._name())
                self._version = None
            except NotServed:
                # a CRD not installed yet (applied with the operator by Argo CD or Flux, or
                # reinstalled): nothing to wait for at start-up, and asked again until it is
                if not self.not_served.is_set():
                    log.info("%s: not served (404); asked again until it is", self._name())
                self.not_served.set()
                self.synced.set()
                self._version = None
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                self._stop.wait(delay * random.uniform(0.8, 1.2))
            except Exception as exc:  # any failure: back off and go on
                if self._stop.is_set():
                    return
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("%s: %s; again in %.1fs", self._name(), _brief(exc), delay)
                self._stop.wait(delay * random.uniform(0.8, 1.2))

    def _name(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"watch of {self.watched.plural}{where}"

    def _get(self, query: list[tuple[str, str]]) -> dict[str, Any]:
        try:
            response = send(self.api, "GET", self.watched.path(self.namespace), query=query)
            result: dict[str, Any] = json.loads(read_ok(response))
        except ApiError as exc:
            if exc.not_found:
                raise NotServed from exc
            if exc.status == 410:
                raise Gone from exc
            raise
        return result

    def _list(self) -> None:
        """List the kind page by page into the store (one page in memory at a time)."""
        listed: list[str] = []
        self.lists += 1
        owners: set[Key] = set()
        try:
            self.store.replace(self.watched.kind, self._items(listed), self.namespace, owners)
        except _Stopped:
            return
        except Exception:
            # the pages before the failure are in the store: the next list finds them unchanged,
            # so their owners hear of them now or never
            if owners and not self._stop.is_set():
                self.deliver(Change(self.watched.kind, frozenset(owners)))
            raise
        self._version = listed[0]
        if self.not_served.is_set():
            log.info("%s: served now", self._name())
            self.not_served.clear()
        if not self._stop.is_set():
            self.deliver(Change(self.watched.kind, frozenset(owners), listed=True))
        self.synced.set()

    def _items(self, version: list[str]) -> Iterator[dict[str, Any]]:
        """Every listed object; the list's resourceVersion goes into `version` at the end."""
        token = ""
        while True:
            query = [("limit", str(LIST_PAGE))]
            if self.watched.selector:
                query.append(("labelSelector", self.watched.selector))
            if token:
                query.append(("continue", token))
            page = self._get(query)
            if self._stop.is_set():
                raise _Stopped
            for item in page.get("items") or ():
                self._saw(item)
                yield item
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                version.append(str(meta.get("resourceVersion") or ""))
                return

    def _watch(self) -> None:
        self.watches += 1
        seconds = int(self.watch_seconds * random.uniform(1.0, 2.0))
        query = [
            ("watch", "1"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", self._version or ""),
            ("timeoutSeconds", str(seconds)),
        ]
        if self.watched.selector:
            query.append(("labelSelector", self.watched.selector))
        try:
            response = send(
                self.api,
                "GET",
                self.watched.path(self.namespace),
                query=query,
                timeout=(30.0, seconds + 30.0),
            )
        except ApiError as exc:
            if exc.not_found:
                raise NotServed from exc
            if exc.status == 410:
                raise Gone from exc
            raise
        if not 200 <= response.status <= 299:
            read_ok(response)  # raises with the server's message
        raw = response.response
        with self._lock:
            self._response = raw
        if self._stop.is_set():
            raw.release_conn()
            return
        try:
            for batch in _batches(raw):
                if self._stop.is_set():
                    return
                self._apply(batch)
        finally:
            with self._lock:
                self._response = None
            raw.release_conn()

    def _apply(self, events: list[dict[str, Any]]) -> None:
        """One burst of watch events (those that came in one read) into the store."""
        owners: set[Key] = set()
        deleted: set[Key] = set()
        kind = self.watched.kind
        try:
            self._apply_events(events, owners, deleted)
        finally:
            # the events before an ERROR one are in the store already: delivered all the same
            if (owners or deleted) and not self._stop.is_set():
                self.deliver(Change(kind, frozenset(owners), frozenset(deleted)))

    def _apply_events(
        self, events: list[dict[str, Any]], owners: set[Key], deleted: set[Key]
    ) -> None:
        kind = self.watched.kind
        for event in events:
            type_ = event.get("type")
            obj = event.get("object") or {}
            if type_ == "ERROR":
                if obj.get("code") == 410:
                    raise Gone
                raise ApiError(int(obj.get("code") or 0), str(obj.get("reason")), str(obj))
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if type_ == "BOOKMARK":
                self._version = version or self._version
                continue
            if type_ == "DELETED":
                owner = self.store.remove(kind, obj)
                if owner is not None:
                    (deleted if kind == "ModelDeployment" else owners).add(owner)
            else:
                owner, changed = self.store.observe(kind, obj)
                if changed and owner is not None:
                    owners.add(owner)
                self._saw(obj)
            self._version = version or self._version

    def _saw(self, body: Mapping[str, Any]) -> None:
        """`on_body`, whose failure must never stop the watch (the store comes first)."""
        if self.on_body is None:
            return
        try:
            self.on_body(body)
        except Exception:
            meta = body.get("metadata") or {}
            log.exception("%s: %s/%s", self._name(), meta.get("namespace"), meta.get("name"))


def _batches(raw: Any) -> Iterator[list[dict[str, Any]]]:
    """The events of a watch stream, grouped by the read that brought them."""
    buffer = b""
    for chunk in raw.stream(65536):
        buffer += chunk
        if b"\n" not in buffer:
            continue
        *lines, buffer = buffer.split(b"\n")
        yield [json.loads(line) for line in lines if line.strip()]


def _brief(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"
