"""The one reconcile: read the state, decide with the pure core, apply the difference, report.

Every trigger (a change of the ModelDeployment or of a child, a requeue-after, the operator's start)
runs `Reconciler.reconcile(key)`. It writes only what differs from what it observed, so a reconcile
that finds nothing to change makes no write.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from slipway import DEFAULT_OPERATOR_IMAGE, GROUP, metrics, notifier
from slipway.analysis.runner import AnalysisRunner
from slipway.api import (
    Condition,
    Measurement,
    ModelDeployment,
    ModelDeploymentStatus,
    Phase,
    RevisionPins,
    ServingSpec,
)
from slipway.controller import Key, Store
from slipway.governance import consumed_keys, governance_request, record, stamps_of
from slipway.kube import ApiError, Kube, is_subset
from slipway.monitoring import PodMonitors
from slipway.registry import Outcome, RegistryResolver, outcome, resolved
from slipway.registry import report as registry_report
from slipway.resources import (
    HTTPRouteNotWired,
    desired_deployment,
    desired_hpa,
    desired_service,
    httproute_weights_patch,
    model_source,
    pins_for,
    pins_of_deployment,
    pod_selector,
    revision_of,
    url_for,
)
from slipway.resources.metadata import REVISION_LABEL
from slipway.resources.pins import pin_revisions
from slipway.rollout import Action, Decision, Observed, ObservedRevision, analysis_due, decide

log = logging.getLogger(__name__)

ACTION_ANNOTATION = f"{GROUP}/action"
# a missing claim may be created any moment; its creation is no event we watch
UNSERVABLE_RECHECK_SECONDS = 30.0
# restarts of a serving container that count as a crash loop even between back-offs
CRASH_RESTARTS = 3
# pod waiting reasons that mean the revision cannot start, whatever the deadline says
_FAILING_WAITING_REASONS = {
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "RunContainerError",
}
# reasons that fail a canary at once: it crash-loops, or can never start (a missing Secret
# for the model's credentials, an image name that cannot be parsed)
_CRASHING = {
    "CrashLoopBackOff",
    "RunContainerError",
    "CreateContainerConfigError",
    "InvalidImageName",
}


class StaleRead(Exception):
    """The object changed under a reconcile; its decision is dropped and it runs again."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Reconciler:
    """The imperative shell around `slipway.rollout.decide`."""

    kube: Kube
    store: Store
    operator_image: str = DEFAULT_OPERATOR_IMAGE
    clock: Callable[[], dt.datetime] = utcnow
    # measurements run there, never on a reconcile worker (a Prometheus may never answer)
    analysis: AnalysisRunner = field(default_factory=AnalysisRunner)
    pod_monitors: PodMonitors | None = None  # None: the operator does not manage PodMonitors
    # models:/ uris are resolved there, never on a reconcile worker (a registry may never answer)
    registry: RegistryResolver = field(default_factory=RegistryResolver)

    # -- the reconcile ------------------------------------------------------------------------

    def reconcile(self, key: Key) -> float | None:
        """Converge one ModelDeployment; return seconds until it needs to run again, if ever."""
        started = time.monotonic()
        try:
            requeue = self._reconcile(key)
        except StaleRead:
            metrics.observe_reconcile("requeue", time.monotonic() - started)
            metrics.record_reconcile_error("conflict")
            return 0.1
        except ApiError as exc:
            metrics.observe_reconcile("error", time.monotonic() - started)
            metrics.record_reconcile_error("conflict" if exc.conflict else "api_error")
            raise
        except Exception:
            metrics.observe_reconcile("error", time.monotonic() - started)
            metrics.record_reconcile_error("unexpected")
            raise
        metrics.observe_reconcile(
            "requeue" if requeue is not None else "ok", time.monotonic() - started
        )
        return requeue

    def _reconcile(self, key: Key) -> float | None:
        body = self.store.get("ModelDeployment", key.namespace, key.name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            metrics.forget(key.namespace, key.name)
            self.analysis.forget(key)
            self.registry.forget(key)
            return None
        now = self.clock()
        try:
            md = ModelDeployment.from_body(body)
        except ValidationError as exc:
            self._report_invalid(body, exc, now)
            return None

        stamps = stamps_of(body["metadata"].get("annotations") or {})
        action, body = self._take_action(body)
        found = self._resolve(key, md, now)
        if found is not None and found.resolution is None:
            if found.pending:
                return None  # the first answer wakes this reconcile
            self._report_condition(body, found.reason, found.message, now)
            return UNSERVABLE_RECHECK_SECONDS
        if found is not None and found.resolution is not None:
            md = resolved(md, found.resolution)
        revision = revision_of(md.spec.serving())
        observed = self._observe(key)
        md, pins = self._pin(md, key, revision)

        problem = self._unservable(md)
        if problem is not None:
            # keep whatever serves now; say why the new spec cannot be served, look again later
            self._report_condition(body, "ModelUnavailable", problem, now)
            return UNSERVABLE_RECHECK_SECONDS

        measurements = self._measurements(key, md, revision, now)
        decision = decide(md, revision, observed, measurements, action, now, pins)
        pods = self.store.children("Pod", key)
        asked = governance_request(md, revision, action, stamps, now, pods, observed)
        decision = record(md.status, decision, asked)
        decision = registry_report(md.status, decision, found, revision, now, rfc3339(now))
        route_rules, routing_problem = self._route_weights(md, decision)
        status = decision.status.model_copy(
            update={
                "url": url_for(md, md.spec.runtime.port),
                "selector": pod_selector(md),
                "ready": f"{decision.status.ready_replicas}/{decision.status.replicas}",
            }
        )
        if routing_problem is not None:
            status.conditions = set_condition(
                status.conditions,
                "Degraded",
                "True",
                "TrafficRoutingUnavailable",
                routing_problem,
                md.metadata.generation,
                now,
            )
        # status first: it is the record a restarted operator resumes from, and its precondition
        # stops a decision made on a stale read before it touches any child
        self._write_status(body, status)
        self._apply_children(md, decision)
        if self.pod_monitors is not None:
            self.pod_monitors.reconcile(md, decision.revisions)
        if route_rules is not None:
            route, rules = route_rules
            # the resourceVersion makes it a compare-and-swap: a concurrent edit is retried
            self.kube.merge_patch(
                route,
                {
                    "metadata": {"resourceVersion": route["metadata"]["resourceVersion"]},
                    "spec": {"rules": rules},
                },
            )
        for event in decision.events:
            self.kube.emit_event(body, event.type, event.reason, event.message, now)
        notifier.submit(md, decision, now)
        self._export_metrics(md, status, decision, measurements)
        return decision.requeue_after

    # -- reading ------------------------------------------------------------------------------

    def _take_action(self, body: dict[str, Any]) -> tuple[Action | None, dict[str, Any]]:
        """Consume the action annotation (with an undo's and their stamps). Removed first: a crash
        may lose it, never repeat it.

        Returns the action and the object as it is after the removal.
        """
        meta = body["metadata"]
        annotations = meta.get("annotations") or {}
        keys = consumed_keys(annotations)
        if not keys:
            return None, body
        after = self.kube.remove_annotations(
            meta["namespace"], meta["name"], keys, meta["resourceVersion"]
        )
        if after is None:
            return None, body  # the object moved on; the next event brings the action again
        self.store.upsert("ModelDeployment", after)
        value = annotations.get(ACTION_ANNOTATION)
        if value is None:
            return None, after
        try:
            return Action(value), after
        except ValueError:
            self.kube.emit_event(
                body,
                "Warning",
                "UnknownAction",
                f"annotation {ACTION_ANNOTATION}={value!r} is not one of "
                + ", ".join(a.value for a in Action),
                self.clock(),
            )
            return None, after

    def _resolve(self, key: Key, md: ModelDeployment, now: dt.datetime) -> Outcome | None:
        """What the model registry answered for a models:/ uri (None: not a registry's)."""
        lookup = self.registry.lookup(key, md, now)
        return None if lookup is None else outcome(md, lookup, rfc3339(now))

    def _observe(self, key: Key) -> Observed:
        pods_by_revision: dict[str, list[dict[str, Any]]] = {}
        for pod in self.store.children("Pod", key):
            revision = (pod["metadata"].get("labels") or {}).get(REVISION_LABEL)
            if revision:
                pods_by_revision.setdefault(revision, []).append(pod)
        revisions: dict[str, ObservedRevision] = {}
        for deployment in self.store.children("Deployment", key):
            revision = (deployment["metadata"].get("labels") or {}).get(REVISION_LABEL)
            if not revision:
                continue
            crash_looping, reason = pods_failing(pods_by_revision.get(revision, []))
            status = deployment.get("status") or {}
            revisions[revision] = ObservedRevision(
                revision=revision,
                replicas=int((deployment.get("spec") or {}).get("replicas") or 0),
                ready_replicas=ready_pods(pods_by_revision.get(revision, []), status),
                crash_looping=crash_looping,
                failing_reason=reason,
            )
        return Observed(revisions=revisions)

    def _pin(
        self, md: ModelDeployment, key: Key, revision: str
    ) -> tuple[ModelDeployment, RevisionPins]:
        """`md` with every recorded revision pinned, and the pins of the spec's revision.

        Revisions recorded before pins existed keep what their Deployments run (an operator
        upgrade rolls no pods); the spec's revision, if new, gets this operator's choices.
        """
        live = {
            labels[REVISION_LABEL]: d
            for d in self.store.children("Deployment", key)
            if REVISION_LABEL in (labels := d["metadata"].get("labels") or {})
        }
        status = pin_revisions(md.status, md.name, live, self.operator_image)
        recorded = {
            e.revision: e.pinned for e in (status.stable, status.canary, *status.history) if e
        }
        pins = recorded.get(revision)
        if pins is None and revision in live:
            pins = pins_of_deployment(live[revision])
        if pins is None:
            pins = pins_for(md.spec.serving(), md.name, self.operator_image)
        return md.model_copy(update={"status": status}), pins

    def _unservable(self, md: ModelDeployment) -> str | None:
        """Why the spec, though valid, cannot be served (checked before any pod is created)."""
        source = model_source(md.spec.model.uri)
        claim = source.claim
        if claim and self.kube.get("v1", "PersistentVolumeClaim", md.namespace, claim) is None:
            return (
                f"spec.model.uri: PersistentVolumeClaim {claim!r} does not exist in "
                f"namespace {md.namespace!r}; create it or fix the uri"
            )
        return None

    def _measurements(
        self, key: Key, md: ModelDeployment, revision: str, now: dt.datetime
    ) -> list[Measurement] | None:
        """A finished round of measurements, if one is ready; starts the next one when due."""
        stable = md.status.stable.revision if md.status.stable else ""
        due = analysis_due(md, revision, now)
        return self.analysis.collect(key, md, revision, stable, due, now)

    # -- writing ------------------------------------------------------------------------------

    def _apply_children(self, md: ModelDeployment, decision: Decision) -> None:
        """Apply the decided Deployments, Services and HPA; delete ours that are not decided."""
        key = Key(md.namespace, md.name)
        live_deployments = {
            d["metadata"]["name"]: d for d in self.store.children("Deployment", key)
        }
        wanted: set[str] = set()
        canary_revision: str | None = None
        stable_revision: str | None = None
        for desired in decision.revisions:
            serving = ServingSpec.model_validate(desired.serving)
            manifest = desired_deployment(
                md, serving, desired.revision, desired.track, desired.replicas, desired.pinned
            )
            wanted.add(manifest["metadata"]["name"])
            self._apply_if_changed(manifest, live_deployments.get(manifest["metadata"]["name"]))
            if desired.track == "canary":
                canary_revision = desired.revision
            elif desired.track == "stable":
                stable_revision = desired.revision
        for name in sorted(set(live_deployments) - wanted):
            self.kube.delete("apps/v1", "Deployment", md.namespace, name)

        port = md.spec.runtime.port
        live_services = {s["metadata"]["name"]: s for s in self.store.children("Service", key)}
        services = [desired_service(md, None, None, port)]
        if stable_revision is not None:
            services.append(desired_service(md, "stable", stable_revision, port))
        if canary_revision is not None:
            services.append(desired_service(md, "canary", canary_revision, port))
        for manifest in services:
            self._apply_if_changed(manifest, live_services.get(manifest["metadata"]["name"]))
        stale = set(live_services) - {s["metadata"]["name"] for s in services}
        for name in sorted(stale):
            self.kube.delete("v1", "Service", md.namespace, name)

        hpa = desired_hpa(md)
        live_hpa = self.store.children("HorizontalPodAutoscaler", key)
        if hpa is not None:
            self._apply_if_changed(hpa, live_hpa[0] if live_hpa else None)
        for obj in live_hpa:
            name = obj["metadata"]["name"]
            if hpa is None or name != hpa["metadata"]["name"]:
                self.kube.delete("autoscaling/v2", "HorizontalPodAutoscaler", md.namespace, name)

    def _apply_if_changed(self, manifest: dict[str, Any], live: Mapping[str, Any] | None) -> None:
        extra = _foreign_selector_keys(manifest, live)
        if live is not None and not extra and is_subset(_comparable(manifest), live):
            return
        # write-through: the next reconcile sees what we applied before its watch event arrives
        self.store.upsert(manifest["kind"], self.kube.apply(manifest))
        if extra:
            # keys another manager added to a selector we own: apply keeps them, so drop them
            meta = manifest["metadata"]
            self.kube.patch(
                manifest["apiVersion"],
                manifest["kind"],
                meta["namespace"],
                meta["name"],
                {"spec": {"selector": dict.fromkeys(extra)}},
            )

    def _route_weights(
        self, md: ModelDeployment, decision: Decision
    ) -> tuple[tuple[dict[str, Any], list[Any]] | None, str | None]:
        """The HTTPRoute and its new rules when its weights must change; or why it cannot be."""
        routing = md.spec.rollout.traffic_routing
        if routing is None or routing.gateway_api is None:
            return None, None
        name = routing.gateway_api.http_route
        route = self.kube.get("gateway.networking.k8s.io/v1", "HTTPRoute", md.namespace, name)
        field = "spec.rollout.trafficRouting.gatewayAPI.httpRoute"
        if route is None:
            return None, f"{field}: HTTPRoute {name!r} does not exist in namespace {md.namespace!r}"
        try:
            rules = httproute_weights_patch(
                route, md, decision.stable_weight, decision.canary_weight
            )
        except HTTPRouteNotWired as exc:
            return None, f"{field}: {exc}"
        return (None if rules is None else (route, rules)), None

    def _write_status(self, body: Mapping[str, Any], status: ModelDeploymentStatus) -> None:
        new = status.wire()
        old = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
        if old == new:
            return
        patch = merge_patch(old, new)
        meta = body["metadata"]
        try:
            after = self.kube.patch_status(
                meta["namespace"], meta["name"], patch, meta["resourceVersion"]
            )
        except ApiError as exc:
            if exc.conflict:
                raise StaleRead(f"{meta['namespace']}/{meta['name']} changed meanwhile") from exc
            raise
        self.store.upsert("ModelDeployment", after)

    # -- reporting problems -------------------------------------------------------------------

    def _report_invalid(
        self, body: Mapping[str, Any], exc: ValidationError, now: dt.datetime
    ) -> None:
        """A spec the schema let through but Slipway cannot read: say which field; touch nothing."""
        errors = "; ".join(
            "spec." + ".".join(str(p) for p in err["loc"][1:]) + ": " + err["msg"]
            for err in exc.errors()
            if err["loc"] and err["loc"][0] == "spec"
        ) or str(exc)
        metrics.record_reconcile_error("invalid_spec")
        self._report_condition(body, "InvalidSpec", errors, now)

    def _report_condition(
        self, body: Mapping[str, Any], reason: str, message: str, now: dt.datetime
    ) -> None:
        raw = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
        status = ModelDeploymentStatus.model_validate(raw)
        generation = int(body["metadata"].get("generation") or 0)
        serving = status.stable is not None and status.stable.ready_replicas > 0
        phase = Phase.DEGRADED if serving else Phase.FAILED
        conditions = set_condition(
            status.conditions, "Degraded", "True", reason, message, generation, now
        )
        if not serving:
            conditions = set_condition(
                conditions, "Ready", "False", reason, message, generation, now
            )
        updated = status.model_copy(
            update={"phase": phase, "observed_generation": generation, "conditions": conditions}
        )
        if updated.wire() != status.wire():
            self._write_status(body, updated)
            self.kube.emit_event(body, "Warning", reason, message, now)

    def _export_metrics(
        self,
        md: ModelDeployment,
        status: ModelDeploymentStatus,
        decision: Decision,
        measurements: Sequence[Measurement] | None,
    ) -> None:
        metrics.track_phase(md.namespace, md.name, status.phase.value)
        metrics.set_canary_weight(md.namespace, md.name, decision.canary_weight)
        if status.canary is None:
            metrics.clear_measurements(md.namespace, md.name)
        for m in measurements or ():
            metrics.record_measurement(md.namespace, md.name, m.metric, m.value, m.verdict.value)
        for event in decision.events:
            outcome = _ROLLOUT_OUTCOMES.get(event.reason)
            if outcome is not None:
                started = md.status.canary.started_at if md.status.canary else None
                seconds = (self.clock() - parse_time(started)).total_seconds() if started else 0.0
                metrics.record_rollout(outcome, seconds)


_ROLLOUT_OUTCOMES: dict[str, metrics.RolloutOutcome] = {
    "Promoted": "promoted",
    "RolledBack": "rolled_back",
    "Aborted": "aborted",
}


def _comparable(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a manifest that are worth comparing with the live object."""
    return {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: changed keys, nulls for gone.

    Nested objects are diffed too: a merge patch merges them, so a key dropped deep inside
    (canary.failureReason after a retry) must be deleted explicitly.
    """
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before or key not in old:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def _foreign_selector_keys(
    manifest: Mapping[str, Any], live: Mapping[str, Any] | None
) -> list[str]:
    """Keys in a live Service's selector that the manifest does not have (a selector is exact)."""
    if live is None or manifest.get("kind") != "Service":
        return []
    wanted = manifest["spec"].get("selector") or {}
    return sorted(set((live.get("spec") or {}).get("selector") or {}) - set(wanted))


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: dt.datetime,
) -> list[Condition]:
    """Conditions with `type_` set; its transition time moves only when its status changes."""
    result: list[Condition] = []
    found = False
    for c in conditions:
        if c.type != type_:
            result.append(c)
            continue
        found = True
        changed = c.status != status
        result.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=rfc3339(now) if changed else c.last_transition_time,
                observed_generation=generation,
            )
        )
    if not found:
        result.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=rfc3339(now),
                observed_generation=generation,
            )
        )
    return result


def ready_pods(pods: Sequence[Mapping[str, Any]], deployment_status: Mapping[str, Any]) -> int:
    """Ready pods of a revision: counted from the pods when we see them, else the Deployment's."""
    if not pods:
        return int(deployment_status.get("readyReplicas") or 0)
    count = 0
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        for cond in (pod.get("status") or {}).get("conditions") or ():
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                count += 1
    return count


def pods_failing(pods: Sequence[Mapping[str, Any]]) -> tuple[bool, str | None]:
    """Whether a revision's pods crash-loop, and a sentence naming a pod that fails and why.

    A crash loop, a missing Secret or a bad image name fail the canary at once; an image that
    cannot be pulled (often passing) is named, and the progress deadline covers it.
    """
    named: str | None = None
    for pod in pods:
        status = pod.get("status") or {}
        name = pod["metadata"]["name"]
        containers = list(status.get("initContainerStatuses") or ()) + list(
            status.get("containerStatuses") or ()
        )
        for cs in containers:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            restarts = int(cs.get("restartCount") or 0)
            crashing = reason in _CRASHING or (restarts >= CRASH_RESTARTS and not cs.get("ready"))
            if not crashing and reason not in _FAILING_WAITING_REASONS:
                continue
            text = f"pod {name}, container {cs.get('name')}: {reason or 'restarting'}"
            text += f" (restarts {restarts})"
            if waiting.get("message"):
                text += f": {waiting['message']}"
            # what the container said as it last exited (slipway fetch: why the fetch failed)
            said = ((cs.get("lastState") or {}).get("terminated") or {}).get("message")
            if said:
                text += f"; it last said: {said.strip()[:300]}"
            if crashing:
                return True, text
            named = named or text
    return False, named


__all__ = ["ACTION_ANNOTATION", "Reconciler"]
