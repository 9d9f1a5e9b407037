"""The PodMonitor of each ModelDeployment: applied while the cluster serves prometheus-operator's
PodMonitor API, removed when the spec turns it off. The shell around
`slipway.resources.podmonitor`: it reads, applies, deletes.

PodMonitors are watched by slipway.watch while the cluster serves them, not through kopf: kopf ends
the whole operator when a watch gets a 404, which a watch of a CRD that someone deletes can get;
ours stops quietly, and starts again when the CRD comes back. A PodMonitor changed by hand wakes
its ModelDeployment's reconcile, which puts it back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slipway.api import ModelDeployment
from slipway.controller import Key, Store
from slipway.kube import ApiError, Kube, is_subset
from slipway.resources.metadata import controlled_by, not_ours
from slipway.resources.podmonitor import (
    POD_MONITOR_API_VERSION,
    POD_MONITOR_KIND,
    desired_pod_monitor,
)
from slipway.rollout import DesiredRevision

log = logging.getLogger(__name__)

POD_MONITOR_PLURAL = "podmonitors"
POD_MONITOR_CRD = "podmonitors.monitoring.coreos.com"
# a CRD installed later is noticed by its watch events at once; this is the fallback
DISCOVERY_SECONDS = 60.0
# the API server serves a new CRD's resources a moment after it says Established
RETRY_SECONDS = 5.0


@dataclass
class PodMonitors:
    """Applies `desired_pod_monitor` for each reconcile, when the PodMonitor API is served."""

    kube: Kube
    store: Store
    # runs the reconcile of a key again after some seconds (the work queue's add_after)
    retry: Callable[[Key, float], None] | None = None
    _served: bool | None = None
    _checked_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _refused: dict[Key, str] = field(default_factory=dict)

    def served(self) -> bool:
        """Whether the cluster serves monitoring.coreos.com/v1 PodMonitors (cached)."""
        with self._lock:
            if self._served is not None and time.monotonic() - self._checked_at < DISCOVERY_SECONDS:
                return self._served
        try:
            served = self.kube.served(POD_MONITOR_API_VERSION, POD_MONITOR_PLURAL)
        except ApiError as exc:
            log.warning("cannot tell whether the cluster serves PodMonitors: %s", exc)
            served = False
        with self._lock:
            self._served, self._checked_at = served, time.monotonic()
        return served

    def rediscover(self, gone: bool = False) -> None:
        """Ask the API server again at the next reconcile (the CRD came or went); `gone`: the
        CRD was deleted, and every PodMonitor with it."""
        with self._lock:
            self._served = None
        if gone:
            self.store.replace(POD_MONITOR_KIND, [])

    def reconcile(self, md: ModelDeployment, revisions: Sequence[DesiredRevision]) -> None:
        """Make the PodMonitor of `md` what the decided revisions need; never raise for it."""
        key = Key(md.namespace, md.name)
        live = self.store.children(POD_MONITOR_KIND, key)
        if not self.served():
            return
        stable = next((r.revision for r in revisions if r.track == "stable"), None)
        canary = next((r.revision for r in revisions if r.track == "canary"), None)
        desired = desired_pod_monitor(md, stable, canary)
        try:
            kept = self._apply(md, desired, live) if desired is not None else None
            for obj in live:
                meta = obj["metadata"]
                if meta["name"] != kept and controlled_by(obj, md):
                    self.kube.delete(
                        POD_MONITOR_API_VERSION,
                        POD_MONITOR_KIND,
                        md.namespace,
                        meta["name"],
                        meta.get("uid"),
                    )
            if kept is not None or desired is None:
                self._refused.pop(key, None)
        except ApiError as exc:
            # scraping is no reason to stop serving or rolling out: say it once, try again later
            said = f"{exc.status} {exc.reason}"
            if self._refused.get(key) != said:
                log.warning("PodMonitor of %s not applied: %s %s", key, said, exc.body[:300])
                self._refused[key] = said
            if self.retry is not None:
                self.retry(key, RETRY_SECONDS)

    def forget(self, key: Key) -> None:
        self._refused.pop(key, None)

    def _apply(
        self, md: ModelDeployment, desired: dict[str, Any], live: list[dict[str, Any]]
    ) -> str | None:
        """Apply the PodMonitor unless another's has its name (said once in the log)."""
        name: str = desired["metadata"]["name"]
        current = next((obj for obj in live if obj["metadata"]["name"] == name), None)
        if current is None:  # a user's own, named after the model, may be there
            current = self.kube.get(POD_MONITOR_API_VERSION, POD_MONITOR_KIND, md.namespace, name)
        taken = not_ours(current, md) if current is not None else None
        if taken is not None:
            key = Key(md.namespace, md.name)
            if self._refused.get(key) != taken:
                log.warning("PodMonitor %s/%s not applied: %s", md.namespace, name, taken)
                self._refused[key] = taken
            return None
        wanted = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}
        if current is None or not is_subset(wanted, current):
            self.store.upsert(POD_MONITOR_KIND, self.kube.apply(desired))
        return name
