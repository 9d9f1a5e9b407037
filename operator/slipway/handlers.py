"""kopf wiring only: watch events feed the store and the work queue; settings; probes.

Only `kopf.on.event` handlers are used: they need no finalizer and no per-object bookkeeping (so
no kopf progress or diff-base storage either), and every trigger ends in the same reconcile
(slipway.reconcile). With peering, `slipway.peering.PeeringGate` stands the work queue and the
periodic re-list by whenever kopf's rule says another operator is the active one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import kopf
from kubernetes import client

from slipway import GROUP, PLURAL, VERSION, metrics
from slipway.controller import Key, Store, WorkQueue
from slipway.kube import Kube
from slipway.monitoring import POD_MONITOR_CRD, RETRY_SECONDS, PodMonitors
from slipway.peering import PeeringGate
from slipway.reconcile import Reconciler
from slipway.resources.metadata import MANAGED_BY, MANAGED_BY_LABEL

log = logging.getLogger(__name__)

MANAGED = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
CHILD_EVENT_BATCH_SECONDS = 0.3
RESYNCED_KINDS = [
    (f"{GROUP}/{VERSION}", "ModelDeployment", ""),
    ("apps/v1", "Deployment", MANAGED),
    ("v1", "Service", MANAGED),
    ("autoscaling/v2", "HorizontalPodAutoscaler", MANAGED),
    ("v1", "Pod", MANAGED),
    ("batch/v1", "Job", MANAGED),
]
RELIST_SETTLE_SECONDS = 2.0
# children are watched with a server-side label selector: other workloads never reach us
CHILD_SELECTORS: list[tuple[str, str, str] | tuple[str, str]] = [
    ("apps", "v1", "deployments"),
    ("v1", "services"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("v1", "pods"),
    ("batch", "v1", "jobs"),
]


@dataclass
class Options:
    """What `slipway run` passes to the handlers."""

    api_client: client.ApiClient
    operator_image: str
    workers: int = 4
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    resync_seconds: float = 300.0  # how often the store is listed afresh
    peering: str | None = None  # the kopf peering object, when peered
    identity: str = ""  # this operator's identity in the peering
    priority: int = 0  # and its priority
    pod_monitors: bool = True  # manage a PodMonitor per ModelDeployment (when the CRD exists)


@dataclass
class Runtime:
    store: Store
    queue: WorkQueue
    reconciler: Reconciler
    gate: PeeringGate | None  # None: standalone, always active


_options: Options | None = None
_runtime: Runtime | None = None
_tasks: list[asyncio.Task[None]] = []
_relisted = asyncio.Event()


def setup(options: Options) -> None:
    """Called by the CLI before kopf starts."""
    global _options
    _options = options
    if options.pod_monitors:
        # PodMonitors themselves are not watched through kopf: a watch on a CRD that is deleted
        # can end the whole operator (a 404 is fatal to kopf's watcher); the CRD is watched, and
        # PodMonitors are listed with every resync (slipway.monitoring)
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


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _runtime
    if _options is None:
        raise RuntimeError("slipway.handlers.setup() must run before kopf starts")
    # watch streams that go silent are reopened (kopf #585, #847)
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # Slipway records its own Events; kopf's per-log-line Events would multiply the writes
    settings.posting.enabled = False
    settings.batching.worker_limit = 64
    settings.networking.request_timeout = 60
    for selector in CHILD_SELECTORS:
        settings.watching.label_selectors[selector] = MANAGED
    store = Store()
    kube = Kube(_options.api_client)
    pod_monitors = None
    if _options.pod_monitors:
        pod_monitors = PodMonitors(kube, store)
    reconciler = Reconciler(
        kube=kube,
        store=store,
        operator_image=_options.operator_image,
        pod_monitors=pod_monitors,
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
    gate = None
    if _options.peering is not None:
        gate = PeeringGate(
            _options.api_client,
            _options.peering,
            namespaces,
            _options.identity,
            _options.priority,
            lambda active: _peering_changed(kube, namespaces, active),
        )
    _runtime = Runtime(store=store, queue=queue, reconciler=reconciler, gate=gate)
    # a reconcile must never act on a half-filled store (a restarted operator would see no
    # pods and "restore" capacity it already has): list every child once before the first one
    await loop.run_in_executor(None, resync, store, kube, namespaces, pod_monitors)
    # a peered operator stands by until the peering says otherwise (as kopf does)
    queue.start(loop, active=gate is None)
    if gate is not None:
        gate.start(loop)
    _tasks.append(loop.create_task(_resync_periodically(kube, namespaces)))


def resync(
    store: Store,
    kube: Kube,
    namespaces: tuple[str, ...],
    pod_monitors: PodMonitors | None = None,
) -> set[Key]:
    """Make the store hold every ModelDeployment and child as they are now (a fresh list).

    Returns the ModelDeployments whose children went away unseen, to reconcile them.
    """
    owners: set[Key] = set()
    for api_version, kind, selector in RESYNCED_KINDS:
        items = [
            item
            for namespace in namespaces or ("",)
            for item in kube.list_all(api_version, kind, namespace, selector)
        ]
        owners |= store.replace(kind, items)
    if pod_monitors is not None:
        owners |= pod_monitors.resync(namespaces)
    log.info("store synced: %s", {kind: store.count(kind) for _, kind, _ in RESYNCED_KINDS})
    return owners


async def _resync_periodically(kube: Kube, namespaces: tuple[str, ...]) -> None:
    """A fresh list now and then, and soon after kopf re-lists; never while standing by."""
    rt = runtime()
    assert _options is not None
    loop = asyncio.get_running_loop()
    while True:
        try:
            await asyncio.wait_for(_relisted.wait(), timeout=_options.resync_seconds)
            await asyncio.sleep(RELIST_SETTLE_SECONDS)  # let the re-list's events arrive first
        except TimeoutError:
            pass
        _relisted.clear()
        if not rt.queue.active:
            continue  # a standby neither lists nor reconciles; resuming lists afresh
        try:
            owners = await loop.run_in_executor(
                None, resync, rt.store, kube, namespaces, rt.reconciler.pod_monitors
            )
        except Exception:
            log.exception("store resync failed; the next one retries")
            continue
        if not rt.queue.active:
            continue
        for key in owners:
            rt.queue.add(key)


def _peering_changed(kube: Kube, namespaces: tuple[str, ...], active: bool) -> None:
    """Stand by (drop every key and timer), or take over: list afresh, then reconcile all."""
    rt = runtime()
    if not active:
        rt.queue.pause()
        return
    _tasks.append(asyncio.get_running_loop().create_task(_take_over(kube, namespaces)))


async def _take_over(kube: Kube, namespaces: tuple[str, ...]) -> None:
    rt = runtime()
    await asyncio.get_running_loop().run_in_executor(
        None, resync, rt.store, kube, namespaces, rt.reconciler.pod_monitors
    )
    if rt.gate is not None and not rt.gate.active:
        return  # outranked again meanwhile
    rt.queue.resume()
    for namespace, name in rt.store.keys("ModelDeployment"):
        rt.queue.add(Key(namespace, name))


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    for task in _tasks:
        task.cancel()
    if _runtime is not None:
        if _runtime.gate is not None:
            _runtime.gate.stop()
        await _runtime.queue.stop()
        _runtime.reconciler.analysis.close()


def _observe(kind: str, event: kopf.RawEvent) -> None:
    """Runs on the event loop (the handlers are async): the queue is not thread-safe."""
    rt = runtime()
    body = event["object"]
    if event.get("type") is None and rt.queue.started:
        _relisted.set()  # kopf listed again: objects deleted meanwhile got no DELETED event
    if event.get("type") == "DELETED":
        key = rt.store.remove(kind, body)
        if kind == "ModelDeployment" and key is not None:
            rt.queue.forget(key)
            rt.queue.add(key)  # one last run clears its metrics
            return
    else:
        key = rt.store.upsert(kind, body)
    if key is None:
        return
    if kind == "ModelDeployment":
        rt.queue.add(key)
    else:
        # a burst of child events (pods becoming Ready one by one) makes one reconcile, not many
        rt.queue.add_after(key, CHILD_EVENT_BATCH_SECONDS)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def modeldeployment_event(event: kopf.RawEvent, **_: Any) -> None:
    _observe("ModelDeployment", event)
    if event.get("type") != "DELETED":  # a deleted one's series go with its last reconcile
        metrics.export_object(event["object"])


@kopf.on.event("apps", "v1", "deployments", labels={MANAGED_BY_LABEL: MANAGED_BY})
async def deployment_event(event: kopf.RawEvent, **_: Any) -> None:
    _observe("Deployment", event)


@kopf.on.event("v1", "services", labels={MANAGED_BY_LABEL: MANAGED_BY})
async def service_event(event: kopf.RawEvent, **_: Any) -> None:
    _observe("Service", event)


@kopf.on.event(
    "autoscaling", "v2", "horizontalpodautoscalers", labels={MANAGED_BY_LABEL: MANAGED_BY}
)
async def hpa_event(event: kopf.RawEvent, **_: Any) -> None:
    _observe("HorizontalPodAutoscaler", event)


@kopf.on.event("v1", "pods", labels={MANAGED_BY_LABEL: MANAGED_BY})
async def pod_event(event: kopf.RawEvent, **_: Any) -> None:
    _observe("Pod", event)


@kopf.on.event("batch", "v1", "jobs", labels={MANAGED_BY_LABEL: MANAGED_BY})
async def job_event(event: kopf.RawEvent, **_: Any) -> None:
    """An evaluation Job: its end wakes the reconcile that reads its result."""
    _observe("Job", event)


async def podmonitor_crd_event(event: kopf.RawEvent, **_: Any) -> None:
    """The PodMonitor CRD came or went: every ModelDeployment looks again, now and once more a
    moment later (discovery serves a new CRD's resources shortly after its last event)."""
    rt = runtime()
    if rt.reconciler.pod_monitors is None or event.get("type") is None:
        return  # the initial listing says nothing new
    log.info("the PodMonitor CRD changed (%s): every ModelDeployment looks again", event["type"])
    rt.reconciler.pod_monitors.rediscover(gone=event["type"] == "DELETED")
    _every_modeldeployment_again()
    asyncio.get_running_loop().call_later(RETRY_SECONDS, _every_modeldeployment_again, True)


def _every_modeldeployment_again(rediscover: bool = False) -> None:
    rt = runtime()
    if rediscover and rt.reconciler.pod_monitors is not None:
        rt.reconciler.pod_monitors.rediscover()
    for namespace, name in rt.store.keys("ModelDeployment"):
        rt.queue.add(Key(namespace, name))


@kopf.on.probe(id="queue")
def queue_depth(**_: Any) -> int:
    return runtime().queue.depth if _runtime is not None else 0


__all__ = ["Key", "Options", "setup"]
