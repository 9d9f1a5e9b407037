"""The controller's plumbing: a local store of watched objects and a de-duplicating work queue.

The store is Slipway's own rather than kopf's indexes: the reconcile reads it from worker threads,
writes through what it applied, and a fresh list must drop what was deleted while no watch ran
(kopf's indexes do neither). It keeps of each object only what the reconcile reads
(`project`), so that an event that changes nothing of that (a Deployment's counters, an HPA's
metrics, our own write coming back) wakes no reconcile, and 5,000 ModelDeployments fit in memory.

The watches (slipway.watch) feed the store and enqueue the ModelDeployment concerned; workers run
the one reconcile for a key at a time. A key added while it is being reconciled runs once more
afterwards, never twice at once. Requeue-after (pauses, analysis intervals, deadlines) goes through
the same queue, so no kopf timer, and so no finalizer, is needed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, NamedTuple

from slipway import metrics
from slipway.metrics import QueueLane
from slipway.resources.metadata import MODEL_DEPLOYMENT_LABEL
from slipway.resources.names import label_value

log = logging.getLogger(__name__)

PROGRESS: Final[QueueLane] = "progress"
CHANGE: Final[QueueLane] = "change"
# progress is served first, but never more than this many in a row while changes wait
PROGRESS_BURST = 4
# how long the start of a reconcile is remembered for `add_many(..., spacing)` (longer than any
# spacing asked for)
SPACING_MEMORY = 5.0


class Key(NamedTuple):
    """A ModelDeployment's namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class _Kept(NamedTuple):
    """One object as the store keeps it: `project`'s parts as compact JSON text (a third of the
    memory of the dicts it decodes to), its resourceVersion apart, so that two versions that
    differ in nothing else compare equal."""

    text: str
    version: str
    uid: str
    owner: Key | None


class Store:
    """Local copies of the objects Slipway watches (as `project` keeps them), indexed by owning
    ModelDeployment.

    Written by the watches (their threads) and by the reconcile's write-through (worker threads);
    read by reconcile workers, each read a fresh copy.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[tuple[str, str], _Kept]] = defaultdict(dict)
        self._by_owner: dict[str, dict[Key, set[str]]] = defaultdict(lambda: defaultdict(set))
        # pods carry the ModelDeployment's name as a label value, which long names do not fit
        self._name_of_label: dict[tuple[str, str], str] = {}

    def upsert(self, kind: str, body: Mapping[str, Any]) -> Key | None:
        """Keep the object; return the ModelDeployment it belongs to, if any."""
        return self.observe(kind, body)[0]

    def observe(self, kind: str, body: Mapping[str, Any]) -> tuple[Key | None, bool]:
        """Keep the object; return its owner and whether anything the reconcile reads changed.

        Unchanged: our own write coming back through the watch, a late event older than what
        the store holds, or a change of fields the reconcile never reads.
        """
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        if kind == "ModelDeployment":
            with self._lock:
                self._name_of_label[(namespace, label_value(name))] = name
        owner = self._owner_of(kind, meta)
        kept = project(kind, body)
        kept_meta = kept["metadata"]
        version = str(kept_meta.pop("resourceVersion", ""))
        new = _Kept(_freeze(kept), version, str(meta.get("uid", "")), owner)
        with self._lock:
            old = self._objects[kind].get((namespace, name))
            if old is not None and _older(new, old):
                return owner, False  # a late watch event: our own write put a newer copy here
            if old is not None and old.owner is not None and old.owner != owner:
                self._by_owner[kind][old.owner].discard(name)
            self._objects[kind][(namespace, name)] = new
            if owner is not None:
                self._by_owner[kind][owner].add(name)
        return owner, old is None or old.text != new.text

    def remove(self, kind: str, body: Mapping[str, Any]) -> Key | None:
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        with self._lock:
            old = self._objects[kind].pop((namespace, name), None)
            owner = old.owner if old is not None else self._owner_of(kind, meta)
            if owner is not None:
                names = self._by_owner[kind].get(owner)
                if names is not None:
                    names.discard(name)
                    if not names:
                        del self._by_owner[kind][owner]
            if kind == "ModelDeployment":
                self._name_of_label.pop((namespace, label_value(name)), None)
        return owner

    def replace(
        self,
        kind: str,
        items: Iterable[Mapping[str, Any]],
        namespace: str = "",
        owners: set[Key] | None = None,
    ) -> set[Key]:
        """Make `items` the whole content of `kind` (in `namespace`; "": every namespace).

        Returns the owners of every object that appeared, changed or went away: a fresh list is
        how a watch that had to start over learns what happened meanwhile, deletions included.
        They are added to `owners` as the items come, so that a caller whose items fail midway
        knows whose objects were stored before the failure.
        """
        owners = set() if owners is None else owners
        fresh: set[tuple[str, str]] = set()
        for item in items:
            meta = item.get("metadata") or {}
            fresh.add((meta.get("namespace", ""), meta.get("name", "")))
            owner, changed = self.observe(kind, item)
            if changed and owner is not None:
                owners.add(owner)
        with self._lock:
            gone = [
                ref
                for ref in self._objects[kind]
                if ref not in fresh and (not namespace or ref[0] == namespace)
            ]
        for ref_namespace, ref_name in gone:
            owner = self.remove(kind, {"metadata": {"namespace": ref_namespace, "name": ref_name}})
            if owner is not None:
                owners.add(owner)
        return owners

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of the object as kept, or None."""
        with self._lock:
            kept = self._objects[kind].get((namespace, name))
        return _thaw(kept) if kept is not None else None

    def children(self, kind: str, owner: Key) -> list[dict[str, Any]]:
        """Copies of the objects of `kind` labelled as belonging to the ModelDeployment `owner`."""
        with self._lock:
            names = sorted(self._by_owner[kind].get(owner, ()))
            found = [self._objects[kind][(owner.namespace, n)] for n in names]
        return [_thaw(kept) for kept in found]

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


# -- what the store keeps ------------------------------------------------------------------------

# metadata the reconcile never reads (managedFields is most of a small object's size)
_DROPPED_METADATA = frozenset({"managedFields", "creationTimestamp", "generateName"})
_DROPPED_TOP = frozenset({"apiVersion", "kind", "metadata", "status"})
_KEPT_POD_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "labels",
    "deletionTimestamp",
    "creationTimestamp",  # a canary attempt is judged on the pods it made
)


def project(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an object the reconcile reads; an event that changes none of them wakes no
    reconcile.

    Children are compared with what Slipway applies (their spec and metadata), so those stay
    whole; of their status only what the core decides on: a Deployment's ready count and whether
    its ReplicaSet may create pods, a pod's readiness, why its containers wait, restart or last
    exited, and the digests they report (the fetch's termination message, imageID).
    A Service's or an HPA's status (load balancers, current metrics) is never read.
    """
    meta = body.get("metadata") or {}
    if kind == "Pod":
        return {
            "metadata": {k: meta[k] for k in _KEPT_POD_METADATA if k in meta},
            "status": _pod_status(body.get("status") or {}),
        }
    # apiVersion and kind too: list items come without them, watch events and answers with
    kept: dict[str, Any] = {k: v for k, v in body.items() if k not in _DROPPED_TOP}
    kept["metadata"] = {k: v for k, v in meta.items() if k not in _DROPPED_METADATA}
    if kind == "Deployment":
        kept["metadata"]["creationTimestamp"] = meta.get("creationTimestamp")
        kept["status"] = _deployment_status(body.get("status") or {})
    elif kind not in ("Service", "HorizontalPodAutoscaler") and "status" in body:
        kept["status"] = body["status"]
    return kept


def _deployment_status(status: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {"readyReplicas": status.get("readyReplicas") or 0}
    failures = [c for c in status.get("conditions") or () if c.get("type") == "ReplicaFailure"]
    if failures:
        kept["conditions"] = [
            {k: c.get(k) for k in ("type", "status", "reason", "message")} for c in failures
        ]
    return kept


def _pod_status(status: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {
        "conditions": [
            {"type": "Ready", "status": c.get("status")}
            for c in status.get("conditions") or ()
            if c.get("type") == "Ready"
        ]
    }
    for field in ("initContainerStatuses", "containerStatuses"):
        if status.get(field):
            kept[field] = [_container_status(cs) for cs in status[field]]
    return kept


def _container_status(cs: Mapping[str, Any]) -> dict[str, Any]:
    kept = {
        "name": cs.get("name"),
        "ready": bool(cs.get("ready")),
        "restartCount": int(cs.get("restartCount") or 0),
    }
    state = cs.get("state") or {}
    waiting = state.get("waiting")
    if waiting:
        kept["state"] = {
            "waiting": {k: waiting[k] for k in ("reason", "message") if waiting.get(k)}
        }
    # how the fetch ended (its report names the model's digest; slipway.governance.digests)
    terminated = state.get("terminated")
    if terminated:
        kept["state"] = {
            "terminated": {
                k: terminated[k] for k in ("exitCode", "reason", "message") if k in terminated
            }
        }
    # what the container said as it last exited (why a fetch failed)
    said = ((cs.get("lastState") or {}).get("terminated") or {}).get("message")
    if said:
        kept["lastState"] = {"terminated": {"message": said}}
    # the digest of the image it runs, and of an image volume's model
    if cs.get("imageID"):
        kept["imageID"] = cs["imageID"]
    mounts = [
        {"name": m.get("name"), "volumeStatus": m["volumeStatus"]}
        for m in cs.get("volumeMounts") or ()
        if m.get("volumeStatus")
    ]
    if mounts:
        kept["volumeMounts"] = mounts
    return kept


def _freeze(kept: Mapping[str, Any]) -> str:
    return json.dumps(kept, separators=(",", ":"), sort_keys=True)


def _thaw(kept: _Kept) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(kept.text)
    if kept.version:
        obj["metadata"]["resourceVersion"] = kept.version
    return obj


def _older(new: _Kept, old: _Kept) -> bool:
    """Whether `new` is an older version of the same object than `old`.

    resourceVersions are opaque, but etcd's are integers that only grow; when either is not one,
    nothing is assumed.
    """
    if new.uid != old.uid:
        return False
    try:
        return int(new.version) < int(old.version)
    except ValueError:
        return False


# -- the work queue ------------------------------------------------------------------------------

Reconcile = Callable[[Key], float | None]


class WorkQueue:
    """A de-duplicating queue of keys with delayed re-adds, drained by a fixed pool of workers.

    Two lanes: `progress` (a key's children changed, a timer fell due, its last write is to be
    looked at again: reconciles that finish what is under way) is served before `change` (the
    ModelDeployment itself changed: a new object, a new spec), so that objects whose pods are
    Ready do not wait behind the first reconciles of every object created after them; after
    PROGRESS_BURST progress keys in a row, a waiting change goes next, so neither lane starves.

    `add` and `add_after` may be called from any thread (a watch's, the analysis runner's, a
    reconcile worker's): they hand themselves to the event loop. While it stands by (`pause`: a
    peering standby) it keeps no key and no timer and runs nothing; `resume` starts it again, and
    the caller lists afresh and adds every key.
    """

    def __init__(self, reconcile: Reconcile, workers: int = 4) -> None:
        self._reconcile = reconcile
        self._workers = workers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lanes: dict[QueueLane, deque[Key]] = {PROGRESS: deque(), CHANGE: deque()}
        self._queued: dict[Key, tuple[QueueLane, float]] = {}  # lane, and since when
        self._progress_in_a_row = 0
        self._ready: asyncio.Event | None = None
        self._processing: set[Key] = set()
        self._dirty: dict[Key, QueueLane] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = defaultdict(int)
        # when a key's last reconcile started (loop time), kept for SPACING_MEMORY seconds only:
        # a deleted ModelDeployment leaves nothing behind
        self._started: dict[Key, float] = {}
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile")
        self._tasks: list[asyncio.Task[None]] = []
        self._active = asyncio.Event()
        self._loop_thread = 0

    def start(self, loop: asyncio.AbstractEventLoop, *, active: bool = True) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._ready = asyncio.Event()
        now = loop.time()
        self._queued = {key: (lane, now) for key, (lane, _) in self._queued.items()}
        if self._queued:
            self._ready.set()
        self._tasks = [loop.create_task(self._work()) for _ in range(self._workers)]
        if active:
            self._active.set()

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
        for lane in self._lanes.values():
            lane.clear()
        self._dirty.clear()
        self._failures.clear()
        self._started.clear()

    def resume(self) -> None:
        self._active.set()

    @property
    def active(self) -> bool:
        return self._active.is_set()

    def _elsewhere(self) -> bool:
        """Called from another thread than the loop's: asyncio objects must not be touched."""
        return self._loop is not None and threading.get_ident() != self._loop_thread

    def add(self, key: Key, lane: QueueLane = CHANGE) -> None:
        """Reconcile `key` soon (once, however often it is added before it runs)."""
        if self._elsewhere():
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self.add, key, lane)
            return
        if self._loop is not None and not self.active:
            return  # standing by: `resume` brings every key back
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._processing:
            if self._dirty.get(key) != PROGRESS:
                self._dirty[key] = lane
            return
        if key in self._queued:
            return  # where it waits, it will see the latest state
        self._queued[key] = (lane, self._loop.time() if self._loop is not None else 0.0)
        self._lanes[lane].append(key)
        if self._ready is not None:
            self._ready.set()

    def add_many(self, keys: Iterable[Key], lane: QueueLane, spacing: float = 0.0) -> None:
        """`add` for many keys, in one hop to the loop.

        With `spacing` > 0, a key whose last reconcile started less than `spacing` seconds ago
        waits until that much time has passed since: the first of a burst of events runs at
        once, the rest of the burst makes one more reconcile at most (a pod becoming Ready on its
        own is acted on without delay; two becoming Ready together, with the Deployment's own
        status after them, are one or two reconciles, not one per event)."""
        if self._elsewhere():
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self.add_many, list(keys), lane, spacing)
            return
        now = self._loop.time() if self._loop is not None else 0.0
        for key in keys:
            started = self._started.get(key)
            if spacing > 0 and started is not None and started + spacing > now:
                self.add_after(key, started + spacing - now)
            else:
                self.add(key, lane)

    def add_after(self, key: Key, seconds: float) -> None:
        """Reconcile `key` after `seconds` (in the progress lane), unless something adds it
        earlier."""
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
        self.add(key, PROGRESS)

    def _next(self) -> tuple[Key, QueueLane, float] | None:
        """The key to reconcile next: progress first, a change after PROGRESS_BURST of them."""
        progress, change = self._lanes[PROGRESS], self._lanes[CHANGE]
        take_change = bool(change) and (not progress or self._progress_in_a_row >= PROGRESS_BURST)
        lane: QueueLane = CHANGE if take_change else PROGRESS
        source = change if take_change else progress
        while source:
            key = source.popleft()
            queued = self._queued.get(key)
            if queued is None or queued[0] != lane:
                continue  # dropped by a pause meanwhile
            del self._queued[key]
            self._progress_in_a_row = 0 if lane == CHANGE else self._progress_in_a_row + 1
            return key, lane, queued[1]
        return None

    async def _work(self) -> None:
        assert self._ready is not None and self._loop is not None
        while True:
            await self._active.wait()
            await self._ready.wait()
            if not self.active:
                continue  # paused while this worker waited: the keys are forgotten with the rest
            picked = self._next()
            if picked is None:
                if not self._queued:
                    self._ready.clear()
                continue
            key, lane, since = picked
            metrics.observe_queue_wait(lane, self._loop.time() - since)
            self._processing.add(key)
            started = self._started[key] = self._loop.time()
            self._loop.call_later(SPACING_MEMORY, self._expire, key, started)
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
            dirty = self._dirty.pop(key, None)
            if dirty is not None:
                self.add(key, dirty)
            elif requeue is not None:
                if requeue <= 0:
                    self.add(key, PROGRESS)
                else:
                    self.add_after(key, max(0.05, requeue))

    def _expire(self, key: Key, started: float) -> None:
        if self._started.get(key) == started:
            del self._started[key]

    def forget(self, key: Key) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)
        self._started.pop(key, None)

    @property
    def started(self) -> bool:
        return self._ready is not None

    @property
    def depth(self) -> int:
        return len(self._queued)
