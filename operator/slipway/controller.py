"""The controller's plumbing: a local store of watched objects and a de-duplicating work queue.

The store is Slipway's own rather than kopf's indexes: the reconcile reads a ModelDeployment's
children from worker threads, writes through what it applied, and re-lists after a pause.

kopf's watch streams feed the store and enqueue the ModelDeployment concerned; workers run the one
reconcile for a key at a time. A key added while it is being reconciled runs once more afterwards,
never twice at once. Requeue-after (pauses, analysis intervals, deadlines) goes through the same
queue, so no kopf timer, and so no finalizer, is needed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from slipway.resources.metadata import MODEL_DEPLOYMENT_LABEL
from slipway.resources.names import label_value

log = logging.getLogger(__name__)


class Key(NamedTuple):
    """A ModelDeployment's namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class Store:
    """Local copies of the objects Slipway watches, indexed by owning ModelDeployment.

    Written by the watch handlers (event loop thread), read by reconcile workers (threads).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
        self._by_owner: dict[str, dict[Key, set[str]]] = defaultdict(lambda: defaultdict(set))
        # pods carry the ModelDeployment's name as a label value, which long names do not fit
        self._name_of_label: dict[tuple[str, str], str] = {}

    def upsert(self, kind: str, body: Mapping[str, Any]) -> Key | None:
        """Keep the object; return the ModelDeployment it belongs to, if any."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        if kind == "ModelDeployment":
            self._name_of_label[(namespace, label_value(name))] = name
        owner = self._owner_of(kind, meta)
        with self._lock:
            old = self._objects[kind].get((namespace, name))
            if old is not None and _older(meta, old.get("metadata") or {}):
                return owner  # a late watch event: our own write already put a newer copy here
            if old is not None:
                old_owner = self._owner_of(kind, old.get("metadata") or {})
                if old_owner is not None and old_owner != owner:
                    self._by_owner[kind][old_owner].discard(name)
            self._objects[kind][(namespace, name)] = slim(kind, body)
            if owner is not None:
                self._by_owner[kind][owner].add(name)
        return owner

    def remove(self, kind: str, body: Mapping[str, Any]) -> Key | None:
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        owner = self._owner_of(kind, meta)
        with self._lock:
            self._objects[kind].pop((namespace, name), None)
            if owner is not None:
                names = self._by_owner[kind].get(owner)
                if names is not None:
                    names.discard(name)
                    if not names:
                        del self._by_owner[kind][owner]
        return owner

    def replace(self, kind: str, items: list[dict[str, Any]]) -> set[Key]:
        """Make `items` the whole content of `kind`; return the owners whose objects went away.

        Watches do not say what was deleted while they were not running (a peering standby that
        resumes, a watch that re-lists): a fresh list does.
        """
        fresh = {
            ((i.get("metadata") or {}).get("namespace", ""), i["metadata"]["name"]) for i in items
        }
        with self._lock:
            gone = [body for ref, body in self._objects[kind].items() if ref not in fresh]
        owners = {owner for body in gone if (owner := self.remove(kind, body)) is not None}
        for item in items:
            self.upsert(kind, item)
        return owners

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects[kind].get((namespace, name))

    def children(self, kind: str, owner: Key) -> list[dict[str, Any]]:
        """Objects of `kind` labelled as belonging to the ModelDeployment `owner`."""
        with self._lock:
            names = sorted(self._by_owner[kind].get(owner, ()))
            return [self._objects[kind][(owner.namespace, n)] for n in names]

    def keys(self, kind: str) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._objects[kind])

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self._objects[kind])

    def _owner_of(self, kind: str, meta: Mapping[str, Any]) -> Key | None:
        namespace = meta.get("namespace", "")
        if kind == "ModelDeployment":
            return Key(namespace, meta.get("name", ""))
        for ref in meta.get("ownerReferences") or ():
            if ref.get("kind") == "ModelDeployment" and ref.get("controller"):
                return Key(namespace, ref["name"])
        # pods belong to ReplicaSets; their label names the ModelDeployment
        value = (meta.get("labels") or {}).get(MODEL_DEPLOYMENT_LABEL)
        if not value:
            return None
        return Key(namespace, self._name_of_label.get((namespace, value), value))


def slim(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an object the reconcile reads: managedFields never, a pod's spec neither.

    At a thousand ModelDeployments the store holds thousands of pods; this halves its memory.
    """
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    dropped = {"metadata", "spec"} if kind == "Pod" else {"metadata"}
    kept = {k: v for k, v in body.items() if k not in dropped}
    return {**kept, "metadata": meta}


def _older(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Whether `new` is an older version of the same object than `old`.

    resourceVersions are opaque, but etcd's are integers that only grow; when either is not one,
    nothing is assumed.
    """
    if new.get("uid") != old.get("uid"):
        return False
    try:
        return int(new.get("resourceVersion", "")) < int(old.get("resourceVersion", ""))
    except ValueError:
        return False


Reconcile = Callable[[Key], float | None]


class WorkQueue:
    """A de-duplicating queue of keys with delayed re-adds, drained by a fixed pool of workers.

    `add` and `add_after` may be called from any thread (the analysis runner's, a reconcile
    worker's): they hand themselves to the event loop. While it stands by (`pause`: a peering
    standby) it keeps no key and no timer and runs nothing; `resume` starts it again, and the
    caller re-lists and adds every key.
    """

    def __init__(self, reconcile: Reconcile, workers: int = 4) -> None:
        self._reconcile = reconcile
        self._workers = workers
        self._queue: asyncio.Queue[Key] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = defaultdict(int)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile")
        self._tasks: list[asyncio.Task[None]] = []
        self._active = asyncio.Event()
        self._loop_thread = 0

    def start(self, loop: asyncio.AbstractEventLoop, *, active: bool = True) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._queue = asyncio.Queue()
        self._tasks = [loop.create_task(self._work()) for _ in range(self._workers)]
        if active:
            self._active.set()
        for key in list(self._queued):
            self._queue.put_nowait(key)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for timer in self._timers.values():
            timer.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def pause(self) -> None:
        """Stand by: forget every queued key and timer; run nothing until `resume`.

        A reconcile already running finishes (as kopf's own handlers do when it pauses)."""
        self._active.clear()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._queued.clear()
        self._dirty.clear()
        self._failures.clear()
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait()

    def resume(self) -> None:
        self._active.set()

    @property
    def active(self) -> bool:
        return self._active.is_set()

    def _elsewhere(self) -> bool:
        """Called from another thread than the loop's: asyncio objects must not be touched."""
        return self._loop is not None and threading.get_ident() != self._loop_thread

    def add(self, key: Key) -> None:
        """Reconcile `key` soon (once, however often it is added before it runs)."""
        if self._elsewhere():
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self.add, key)
            return
        if self._loop is not None and not self.active:
            return  # standing by: `resume` brings every key back
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        if self._queue is not None:
            self._queue.put_nowait(key)

    def add_after(self, key: Key, seconds: float) -> None:
        """Reconcile `key` after `seconds`, unless something adds it earlier."""
        if self._elsewhere():
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self.add_after, key, seconds)
            return
        if self._loop is None or not self.active or key in self._queued:
            return  # a reconcile that has not started yet will see the latest state anyway
        existing = self._timers.get(key)
        when = self._loop.time() + seconds
        if existing is not None:
            if existing.when() <= when:
                return
            existing.cancel()
        self._timers[key] = self._loop.call_at(when, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def _work(self) -> None:
        assert self._queue is not None and self._loop is not None
        while True:
            await self._active.wait()
            key = await self._queue.get()
            self._queued.discard(key)
            if not self.active:
                continue  # paused while this worker waited: the key is forgotten with the rest
            self._processing.add(key)
            requeue: float | None = None
            try:
                requeue = await self._loop.run_in_executor(self._executor, self._reconcile, key)
                self._failures.pop(key, None)
            except Exception:
                self._failures[key] += 1
                # exponential backoff with jitter, capped at 5 minutes
                requeue = min(300.0, 0.5 * 2 ** min(self._failures[key], 10)) * random.uniform(
                    0.8, 1.2
                )
                log.exception("reconcile of %s failed; retrying in %.1fs", key, requeue)
            finally:
                self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif requeue is not None:
                self.add_after(key, max(0.05, requeue))

    def forget(self, key: Key) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)

    @property
    def started(self) -> bool:
        return self._queue is not None

    @property
    def depth(self) -> int:
        return len(self._queued)
