"""kopf wiring only: start-up and clean-up, settings, probes; the watches feed the store and the
work queue.

ModelDeployments and their children are watched by slipway.watch (list once, then watch with
bookmarks and resume), not through kopf's per-object event processing, which cost 40 % of the
operator's CPU at 1,000 ModelDeployments. kopf runs the operator around them: its peering (kopf's
priority rule, followed by `slipway.peering.PeeringGate`, stands the watches and the work queue
by whenever another operator is the active one), the liveness probe, and the watch of the
PodMonitor CRD. No kopf handler needs a finalizer or per-object bookkeeping, and every trigger
ends in the same reconcile (slipway.reconcile).
"""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client

from slipway import GROUP, PLURAL, VERSION, metrics
from slipway.controller import CHANGE, PROGRESS, Key, Store, WorkQueue
from slipway.events import EventPoster
from slipway.kube import Kube
from slipway.monitoring import POD_MONITOR_CRD, RETRY_SECONDS, PodMonitors
from slipway.peering import PeeringGate
from slipway.reconcile import Reconciler
from slipway.resources.metadata import MANAGED_BY, MANAGED_BY_LABEL
from slipway.resources.podmonitor import POD_MONITOR_KIND
from slipway.watch import Change, Informer, Watched

log = logging.getLogger(__name__)

MANAGED = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
# a child event is acted on at once, unless the ModelDeployment's last reconcile started less
# than this ago: a burst of them (pods becoming Ready one by one, the echoes of our own writes)
# makes at most one more reconcile, not one per event
CHILD_EVENT_SPACING_SECONDS = 0.3
# children are watched with a server-side label selector: other workloads never reach us
WATCHED = (
    Watched("ModelDeployment", f"/apis/{GROUP}/{VERSION}", PLURAL),
    Watched("Deployment", "/apis/apps/v1", "deployments", MANAGED),
    Watched("Service", "/api/v1", "services", MANAGED),
    Watched("HorizontalPodAutoscaler", "/apis/autoscaling/v2", "horizontalpodautoscalers", MANAGED),
    Watched("Pod", "/api/v1", "pods", MANAGED),
    # an evaluation Job: its end wakes the reconcile that reads its result
    Watched("Job", "/apis/batch/v1", "jobs", MANAGED),
)
# PodMonitors are watched while the cluster serves them (a 404 ends that watch quietly)
POD_MONITORS = Watched(POD_MONITOR_KIND, "/apis/monitoring.coreos.com/v1", "podmonitors", MANAGED)
SYNC_TIMEOUT_SECONDS = 600.0


@dataclass
class Options:
    """What `slipway run` passes to the handlers."""

    api_client: client.ApiClient
    operator_image: str
    workers: int = 16
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    resync_seconds: float = 0.0  # > 0: list everything afresh that often (0: never)
    peering: str | None = None  # the kopf peering object, when peered
    identity: str = ""  # this operator's identity in the peering
    priority: int = 0  # and its priority
    peering_lifetime: int = 60  # seconds a keep-alive lasts (kopf's settings.peering.lifetime)
    pod_monitors: bool = True  # manage a PodMonitor per ModelDeployment (when the CRD exists)


class Inbox:
    """Changes the watch threads report, handed to the event loop in one hop per burst."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: WorkQueue) -> None:
        self._loop = loop
        self._queue = queue
        self._lock = threading.Lock()
        self._pending: list[Change] = []

    def put(self, change: Change) -> None:
        with self._lock:
            first = not self._pending
            self._pending.append(change)
        if first:
            self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for change in pending:
            for key in change.deleted:
                self._queue.forget(key)
                self._queue.add(key, PROGRESS)  # one last run clears its metrics
            if change.kind == "ModelDeployment":
                for key in change.owners:
                    self._queue.add(key, CHANGE)
            elif change.listed:
                self._queue.add_many(change.owners, PROGRESS)
            else:
                self._queue.add_many(change.owners, PROGRESS, spacing=CHILD_EVENT_SPACING_SECONDS)


@dataclass
class Watches:
    """The informers of every watched kind (per namespace, when the operator serves some)."""

    api: client.ApiClient
    store: Store
    namespaces: tuple[str, ...]
    inbox: Inbox | None = None
    pod_monitors: bool = False
    informers: list[Informer] = field(default_factory=list)
    _pod_monitor_informers: list[Informer] = field(default_factory=list)

    def start(self) -> None:
        """Start every watch (each lists first); `synced` says when all have."""
        assert self.inbox is not None
        self.stop()  # never two watches of one kind
        self.informers = [self._informer(w, ns) for w in WATCHED for ns in self._scopes()]
        for informer in self.informers:
            informer.start()
        if self.pod_monitors:
            self.start_pod_monitors()

    def start_pod_monitors(self) -> None:
        """(Re)start the PodMonitor watch: at the start, and when the CRD comes (back)."""
        for old in self._pod_monitor_informers:
            old.stop()
        self._pod_monitor_informers = [self._informer(POD_MONITORS, ns) for ns in self._scopes()]
        for informer in self._pod_monitor_informers:
            informer.start()

    def stop_pod_monitors(self) -> None:
        for informer in self._pod_monitor_informers:
            informer.stop()
        self._pod_monitor_informers = []

    def stop(self) -> None:
        """Stop every watch at once: nothing is listed or delivered afterwards."""
        for informer in self.informers:
            informer.stop()
        self.informers = []
        self.stop_pod_monitors()

    def synced(self, timeout: float) -> bool:
        """Wait until every watch has listed once (it blocks: run it on a thread); False when
        they were stopped (or ran out of time) first."""
        every = [*self.informers, *self._pod_monitor_informers]
        return all(informer.wait_synced(timeout) for informer in every)

    def unsynced(self) -> list[str]:
        """The watches that have not listed yet, by kind and namespace."""
        every = [*self.informers, *self._pod_monitor_informers]
        return [
            f"{i.watched.plural}{f' in {i.namespace}' if i.namespace else ''}"
            for i in every
            if not i.synced.is_set()
        ]

    def relist(self) -> None:
        """List everything afresh (--resync-seconds): new watches replace the running ones."""
        self.start()

    def _scopes(self) -> tuple[str, ...]:
        return self.namespaces or ("",)

    def _informer(self, watched: Watched, namespace: str) -> Informer:
        assert self.inbox is not None
        on_body = metrics.export_object if watched.kind == "ModelDeployment" else None
        return Informer(self.api, watched, self.store, self.inbox.put, namespace, on_body)


@dataclass
class Runtime:
    store: Store
    queue: WorkQueue
    reconciler: Reconciler
    watches: Watches
    gate: PeeringGate | None  # None: standalone, always active
    events: EventPoster | None = None  # None: Events are posted in line


_options: Options | None = None
_runtime: Runtime | None = None
_tasks: list[asyncio.Task[None]] = []


def setup(options: Options) -> None:
    """Called by the CLI before kopf starts."""
    global _options
    _options = options
    if options.pod_monitors:
        # PodMonitors are not watched through kopf: a watch on a CRD that is deleted can end the
        # whole operator (a 404 is fatal to kopf's watcher); kopf watches the CRD, and
        # slipway.watch the PodMonitors, stopping quietly on a 404
        kopf.on.event(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            when=lambda name, **_: name == POD_MONITOR_CRD,
        )(podmonitor_crd_event)


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the operator has not started")
    return _runtime


def watch_client(api: client.ApiClient, informers: int) -> client.ApiClient:
    """A client of its own for the watches: each holds a connection for as long as it runs, and
    the reconcile workers' pool must not run short of them."""
    configuration = copy.copy(api.configuration)
    configuration.connection_pool_maxsize = informers + 4
    return client.ApiClient(configuration)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _runtime
    if _options is None:
        raise RuntimeError("slipway.handlers.setup() must run before kopf starts")
    # kopf's own watches (the PodMonitor CRD, the peering) that go silent are reopened
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # Slipway records its own Events; kopf's per-log-line Events would multiply the writes
    settings.posting.enabled = False
    settings.networking.request_timeout = 60
    settings.peering.lifetime = _options.peering_lifetime
    store = Store()
    kube = Kube(_options.api_client)
    pod_monitors = None
    if _options.pod_monitors:
        pod_monitors = PodMonitors(kube, store)
    events = EventPoster(kube)
    reconciler = Reconciler(
        kube=kube,
        store=store,
        operator_image=_options.operator_image,
        pod_monitors=pod_monitors,
        emit_event=events.emit,
    )
    queue = WorkQueue(reconciler.reconcile, workers=_options.workers)
    reconciler.analysis.notify = queue.add  # a finished measurement round wakes its reconcile
    reconciler.registry.kube = kube  # reads a registry's credentials Secret
    reconciler.registry.notify = queue.add  # a registry's answer wakes its reconcile
    if pod_monitors is not None:
        pod_monitors.retry = queue.add_after
    metrics.watch_work_queue(lambda: queue.depth)
    loop = asyncio.get_running_loop()
    namespaces = _options.namespaces
    scopes = len(namespaces or ("",))
    watches = Watches(
        watch_client(_options.api_client, (len(WATCHED) + 1) * scopes),
        store,
        namespaces,
        Inbox(loop, queue),
        pod_monitors=pod_monitors is not None,
    )
    gate = None
    if _options.peering is not None:
        gate = PeeringGate(
            _options.api_client,
            _options.peering,
            namespaces,
            _options.identity,
            _options.priority,
            _peering_changed,
            lifetime=_options.peering_lifetime,
        )
    _runtime = Runtime(
        store=store, queue=queue, reconciler=reconciler, watches=watches, gate=gate, events=events
    )
    if gate is None:
        # a reconcile must never act on a half-filled store (a restarted operator would see no
        # pods and "restore" capacity it already has): every watch lists once before the first
        await _start_watches(rt=_runtime)
        queue.start(loop)
    else:
        # a peered operator stands by, watching nothing, until the peering says otherwise (as
        # kopf does)
        queue.start(loop, active=False)
        gate.start(loop)
    if _options.resync_seconds > 0:
        _tasks.append(loop.create_task(_relist_periodically(_options.resync_seconds)))


async def _start_watches(rt: Runtime) -> bool:
    """Start the watches and wait until each has listed; False when they were stopped first (a
    peer took over meanwhile).

    It never gives up while it should act: a list refused or too slow for a while (a 403 to be
    fixed, API priority and fairness rejecting lists) is warned of and waited out, as each
    watch retries on its own. Given up, the queue of a peered operator that took over stayed
    paused for good (nothing reconciled until the next change of peers), and kopf's retry of a
    failed start-up started a second set of watches beside the first."""
    rt.watches.start()
    loop = asyncio.get_running_loop()
    while True:
        began = loop.time()
        if await loop.run_in_executor(None, rt.watches.synced, SYNC_TIMEOUT_SECONDS):
            break
        if rt.gate is not None and not rt.gate.active:
            return False
        if loop.time() - began < SYNC_TIMEOUT_SECONDS:
            continue  # another take-over started them afresh: wait for those
        log.warning(
            "the watches of %s have not listed yet after %.0fs; nothing is reconciled until "
            "they have (each retries on its own, and says why above)",
            ", ".join(rt.watches.unsynced()) or "nothing",
            SYNC_TIMEOUT_SECONDS,
        )
    log.info("store synced: %s", {w.kind: rt.store.count(w.kind) for w in WATCHED})
    freeze_long_lived()
    return True


def freeze_long_lived() -> None:
    """Take every object alive now out of the garbage collector's full scans (`gc.freeze`).

    Modules, classes, the clients' models and what the watches listed: 90,000 of the 105,000
    objects the collector tracked at 1,000 ModelDeployments (bench, 2026-12-03), each scanned by
    every full collection (0.1-0.17 s with every thread held, several a minute while a batch of
    rollbacks made garbage). They live as long as the process: frozen, they are scanned no more.
    What is garbage now is collected first; a frozen object freed later goes by its reference
    count as before, and only a cycle among the objects frozen here would stay until exit (a
    bounded amount, once: the store's records hold none)."""
    gc.collect()
    gc.freeze()
    log.info(
        "%d long-lived objects frozen out of the garbage collector's scans", gc.get_freeze_count()
    )


async def _relist_periodically(seconds: float) -> None:
    """--resync-seconds: a fresh list of everything that often (the watches need none)."""
    rt = runtime()
    while True:
        await asyncio.sleep(seconds)
        if rt.queue.active:
            rt.watches.relist()


def _peering_changed(active: bool) -> None:
    """Stand by (stop every watch, drop every key and timer), or take over: list afresh, then
    reconcile all."""
    rt = runtime()
    if not active:
        rt.watches.stop()
        rt.queue.pause()
        return
    _tasks.append(asyncio.get_running_loop().create_task(_take_over()))


async def _take_over() -> None:
    rt = runtime()
    if rt.gate is not None and not rt.gate.active:
        return  # outranked again before this ran: a standby starts no watch
    if not await _start_watches(rt) or (rt.gate is not None and not rt.gate.active):
        return  # outranked again meanwhile (its own change stopped the watches)
    rt.queue.resume()
    for namespace, name in rt.store.keys("ModelDeployment"):
        rt.queue.add(Key(namespace, name), CHANGE)


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    for task in _tasks:
        task.cancel()
    if _runtime is not None:
        if _runtime.gate is not None:
            _runtime.gate.stop()
        _runtime.watches.stop()
        await _runtime.queue.stop()
        _runtime.reconciler.analysis.close()
        if _runtime.events is not None:
            # the decisions already written are told (a few seconds at most)
            await asyncio.to_thread(_runtime.events.close, 5.0)


async def podmonitor_crd_event(event: kopf.RawEvent, **_: Any) -> None:
    """The PodMonitor CRD came or went: its watch starts or stops, and every ModelDeployment
    looks again, now and once more a moment later (discovery serves a new CRD's resources
    shortly after its last event)."""
    rt = runtime()
    if rt.reconciler.pod_monitors is None or event.get("type") is None:
        return  # the initial listing says nothing new
    log.info("the PodMonitor CRD changed (%s): every ModelDeployment looks again", event["type"])
    gone = event["type"] == "DELETED"
    rt.reconciler.pod_monitors.rediscover(gone=gone)
    if rt.queue.active:
        if gone:
            rt.watches.stop_pod_monitors()
        else:
            rt.watches.start_pod_monitors()
    _every_modeldeployment_again()
    asyncio.get_running_loop().call_later(RETRY_SECONDS, _every_modeldeployment_again, not gone)


def _every_modeldeployment_again(rediscover: bool = False) -> None:
    rt = runtime()
    if rediscover and rt.reconciler.pod_monitors is not None:
        rt.reconciler.pod_monitors.rediscover()
        if rt.queue.active:
            rt.watches.start_pod_monitors()  # the first one may have come too early (a 404)
    for namespace, name in rt.store.keys("ModelDeployment"):
        rt.queue.add(Key(namespace, name), CHANGE)


@kopf.on.probe(id="queue")
def queue_depth(**_: Any) -> int:
    return runtime().queue.depth if _runtime is not None else 0


__all__ = ["Key", "Options", "setup"]
