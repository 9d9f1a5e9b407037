"""The one reconcile: gather the facts, decide with the pure core, record, apply, report.

Every trigger (a change of the ModelDeployment or of a child, a requeue-after, the operator's start)
runs `Reconciler.reconcile(key)`. It reads everything the core needs into `Observed` first (so no
decision hides here), writes the status the core returned, records the decision (Events, the
rollout metrics, a log line per decision) before it touches any child, then applies the children.
It writes only what differs from what it observed, so a reconcile that finds nothing to change
makes no write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from slipway import ACTION_ANNOTATION, DEFAULT_OPERATOR_IMAGE, metrics, notifier
from slipway.analysis.evaluation import (
    ResultUnreadable,
    failed_to_run,
    judge_evaluation,
    result_of_pod,
)
from slipway.analysis.runner import AnalysisRunner
from slipway.api import (
    EvaluationResult,
    Measurement,
    ModelDeployment,
    ModelDeploymentStatus,
    RevisionPins,
    ServingSpec,
)
from slipway.controller import Key, Store
from slipway.governance import Stamps, consumed_keys, governance_request, record, stamps_of
from slipway.kube import ApiError, Kube, is_subset
from slipway.monitoring import PodMonitors
from slipway.registry import Outcome, RegistryResolver, outcome, resolved
from slipway.registry import report as registry_report
from slipway.resources import (
    HTTPRouteNotWired,
    controlled_by,
    deployment_name,
    desired_deployment,
    desired_hpa,
    desired_service,
    httproute_weights_patch,
    model_source,
    not_ours,
    pins_for,
    pins_of_deployment,
    pod_selector,
    revision_of,
    url_for,
)
from slipway.resources.evaluation import (
    EVALUATION_LABEL,
    desired_evaluation_job,
    evaluation_job_name,
    service_url,
)
from slipway.resources.metadata import REVISION_LABEL
from slipway.resources.names import service_name
from slipway.resources.pins import pin_revisions
from slipway.resources.presets import runtime_for
from slipway.rollout import (
    Action,
    Claim,
    Decision,
    DesiredEvaluation,
    DesiredRevision,
    EvaluationOutcome,
    Event,
    Observed,
    ObservedRevision,
    PodFailure,
    Refusal,
    Route,
    analysis_due,
    decide,
    heading_for,
    unreadable_spec_status,
)
from slipway.rollout.facts import steps_of
from slipway.rollout.steps import evaluate_at
from slipway.rollout.times import parse_time, rfc3339
from slipway.storage.errors import FetchError
from slipway.storage.uri import needs_fetch, parse_model_uri

# (owner, type, reason, message, when): records an Event about a ModelDeployment
EmitEvent = Callable[[Mapping[str, Any], str, str, str, dt.datetime], None]

log = logging.getLogger(__name__)

ROUTE_API = "gateway.networking.k8s.io/v1"
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
# answers of the API server that refuse a write for good (validation, admission, quota, webhook),
# as opposed to conflicts and outages, which are retried
_REFUSALS = {400, 403, 404, 422}
# children whose names are the ModelDeployment's (and a suffix): another object may have one
_NAMED_AFTER_THE_MODEL = frozenset({"Service", "HorizontalPodAutoscaler"})
_ROLLOUT_OUTCOMES: dict[str, metrics.RolloutOutcome] = {
    "Promoted": "promoted",
    "RolledBack": "rolled_back",
    "Aborted": "aborted",
}


class StaleRead(Exception):
    """The object changed under a reconcile; its decision is dropped and it runs again."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Taken:
    """An action taken off the object whose decision is not known to be written yet."""

    action: Action | None
    stamps: Stamps
    # status.lastAction of each decision on it whose write was sent: one found on the object
    # says that write landed, whatever its answer was
    written: set[str] = field(default_factory=set)


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
    # where Events go: posted in line by default; the operator queues them (slipway.events)
    emit_event: EmitEvent | None = None
    # writes the API server refused at the last attempt, by ModelDeployment: facts for the core
    _refusals: dict[Key, dict[tuple[str, str], Refusal]] = field(default_factory=dict)
    # an action taken from its annotation whose decision is not written yet (the status write lost
    # a race with another write, e.g. the next person's promote): decided again, never lost
    _taken: dict[Key, Taken] = field(default_factory=dict)

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
            self._refusals.pop(key, None)
            self._taken.pop(key, None)
            return None
        now = self.clock()
        try:
            md = ModelDeployment.from_body(body)
        except ValidationError as exc:
            self._report_unreadable(body, exc, now)
            return None

        stamps = stamps_of(body["metadata"].get("annotations") or {})
        held = self._taken.get(key)
        if held is not None and (body.get("status") or {}).get("lastAction") in held.written:
            # its decision was written after all (the write's answer was lost: a timeout), so
            # it is not decided a second time (a promote that skips two steps)
            del self._taken[key]
            held = None
        if held is not None:
            # one action per decision: a newer one waits in its annotation for the next
            action = held.action
            stamps = dataclasses.replace(
                held.stamps, applied_by=stamps.applied_by, applied_with=stamps.applied_with
            )
        else:
            action, after = self._take_action(body)
            if after is not body:  # taken from the object: this reconcile owns it now
                held = self._taken[key] = Taken(action, stamps)
            body = after
        found = self._resolve(key, md, now)
        if waits_for_registry(found):
            return None  # the registry's first answer wakes this reconcile
        if found is not None and found.resolution is not None:
            md = resolved(md, found.resolution)
        revision = revision_of(md.spec.serving())
        md, pins = self._pin(md, key, revision)
        route, route_body = self._route(md)
        actor = (stamps.action_by or None) if action is not None else None
        observed = self._observe(key, md, revision, pins, route, now, unresolved(found), actor)
        target = heading_for(md.status, revision, observed)
        measurements = self._measurements(key, md, target, now)
        # a round in flight (perhaps started just now) wakes this reconcile when it ends
        observed = dataclasses.replace(observed, measuring_until=self.analysis.ends_by(key, now))
        decision = decide(md, revision, observed, measurements, action, now, pins)
        pods = self.store.children("Pod", key)
        asked = governance_request(md, revision, action, stamps, now, pods, observed)
        decision = record(md.status, decision, asked)
        decision = registry_report(md.status, decision, found, revision, now, rfc3339(now))
        status = decision.status.model_copy(
            update={
                "url": url_for(md, decision.port),
                "selector": pod_selector(md),
                "ready": f"{decision.status.ready_replicas}/{decision.status.replicas}",
            }
        )
        # status first: it is the record a restarted operator resumes from, and its precondition
        # stops a decision made on a stale read before it touches any child; a new object's
        # first status may wait for its pods (the core says how long), and what it records too
        # (an action taken is recorded at once: it waits in _taken until its status is written)
        reported = decision.report_after is None or action is not None
        if held is not None and status.last_action is not None:
            held.written.add(status.last_action)  # whatever the write's answer says
        wrote = reported and self._write_status(body, status)
        if reported:
            self._taken.pop(key, None)  # the decision on it is written
            # then what the decision must leave behind, before any child write can fail
            self._record(md, body, decision, measurements, now)
        refused_before = set(self._refusals.get(key, {}))
        self._apply_children(key, md, decision)
        if self.pod_monitors is not None:
            self.pod_monitors.reconcile(md, decision.revisions)
        self._set_route_weights(key, md, decision, route_body)
        if set(self._refusals.get(key, {})) != refused_before:
            return 0.05  # what the API server refuses (or lets through again) is said at once
        if wrote:
            return 0.0  # decide once more on the status just written (its watch event is ours)
        waits = [w for w in (decision.requeue_after, decision.report_after) if w is not None]
        return min(waits) if waits else None

    def _emit(
        self, owner: Mapping[str, Any], type_: str, reason: str, message: str, now: dt.datetime
    ) -> None:
        (self.emit_event or self.kube.emit_event)(owner, type_, reason, message, now)

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
            log.warning("%s/%s: UnknownAction: %r", meta["namespace"], meta["name"], value)
            self._emit(
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

    def _observe(
        self,
        key: Key,
        md: ModelDeployment,
        revision: str,
        pins: RevisionPins,
        route: Route | None,
        now: dt.datetime,
        unresolved: tuple[str, str] | None = None,
        actor: str | None = None,
    ) -> Observed:
        """Every fact the core decides on: the Deployments and their pods, what the spec cannot
        be built from, the claim and the route it names, the writes refused last time, what
        Service <name> selects, the result of a finished evaluation, why the registry could not
        resolve the spec's models:/ uri, who asked for this reconcile's action."""
        pods_by_revision: dict[str, list[dict[str, Any]]] = {}
        for pod in self.store.children("Pod", key):
            label = (pod["metadata"].get("labels") or {}).get(REVISION_LABEL)
            if label:
                pods_by_revision.setdefault(label, []).append(pod)
        revisions: dict[str, ObservedRevision] = {}
        for deployment in self.store.children("Deployment", key):
            label = (deployment["metadata"].get("labels") or {}).get(REVISION_LABEL)
            if not label:
                continue
            failures = pod_failures(pods_by_revision.get(label, []))
            status = deployment.get("status") or {}
            revisions[label] = ObservedRevision(
                revision=label,
                replicas=int((deployment.get("spec") or {}).get("replicas") or 0),
                ready_replicas=ready_pods(pods_by_revision.get(label, []), status),
                failures=failures,
                refused=pods_refused(status),
                created_at=_created_at(deployment),
            )
        return Observed(
            revisions=revisions,
            # a models:/ uri nothing resolved yet cannot be built: the registry says why
            spec_errors=() if unresolved else unbuildable(md, revision, pins),
            claim=None if unresolved else self._claim(md),
            route=route,
            refusals=tuple(self._refusals.get(key, {}).values()),
            service_revision=self._service_revision(key, md),
            evaluation=self._evaluation(key, md, now),
            unresolved=unresolved,
            actor=actor,
        )

    def _service_revision(self, key: Key, md: ModelDeployment) -> str | None:
        """The revision Service <name> selects alone, as last applied (None: every pod)."""
        name = service_name(md.name)
        for service in self.store.children("Service", key):
            if service["metadata"]["name"] == name:
                selector = (service.get("spec") or {}).get("selector") or {}
                return selector.get(REVISION_LABEL)
        return None

    def _evaluation(
        self, key: Key, md: ModelDeployment, now: dt.datetime
    ) -> EvaluationOutcome | None:
        """The canary's running evaluation, once its Job has finished: its gates judged on what
        the Job's pod reported (read once: the decision records the verdict)."""
        canary = md.status.canary
        run = canary.evaluation if canary is not None else None
        if canary is None or run is None or run.started_at is None or run.verdict is not None:
            return None
        evaluate = evaluate_at(steps_of(md, md.status, canary), run.step)
        name = evaluation_job_name(md, canary.revision, run.step, run.attempt)
        job = next(
            (j for j in self.store.children("Job", key) if j["metadata"]["name"] == name), None
        )
        if evaluate is None or job is None:
            return None
        ended, failure = job_ended(job)
        if not ended:
            return None
        pods = self.kube.list_all("v1", "Pod", md.namespace, f"{EVALUATION_LABEL}={name}")
        result, problem = evaluation_result(pods)
        if result is not None:
            measured = judge_evaluation(evaluate, result, canary.revision, now)
        else:
            why = f"its Job failed: {failure}" if failure else problem
            measured = failed_to_run(evaluate, why, canary.revision, now)
        return EvaluationOutcome(canary.revision, run.step, run.attempt, tuple(measured))

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
            try:
                pins = pins_for(md.spec.serving(), md.name, self.operator_image)
            except ValueError:
                # the spec cannot be built (`unbuildable` says why): nothing is pinned to it
                pins = RevisionPins(server_image="")
        return md.model_copy(update={"status": status}), pins

    def _claim(self, md: ModelDeployment) -> Claim | None:
        try:
            name = model_source(md.spec.model.uri).claim
        except ValueError:
            return None  # unbuildable() names the field
        if not name:
            return None
        found = self.kube.get("v1", "PersistentVolumeClaim", md.namespace, name)
        return Claim(name=name, exists=found is not None)

    def _route(self, md: ModelDeployment) -> tuple[Route | None, dict[str, Any] | None]:
        """The HTTPRoute of spec.rollout.trafficRouting as a fact, and as read (when wired)."""
        routing = md.spec.rollout.traffic_routing
        if routing is None or routing.gateway_api is None:
            return None, None
        name = routing.gateway_api.http_route
        found = self.kube.get(ROUTE_API, "HTTPRoute", md.namespace, name)
        if found is None:
            return Route(name=name, exists=False), None
        try:
            httproute_weights_patch(found, md, 100, 0)
        except HTTPRouteNotWired as exc:
            return Route(name=name, exists=True, unwired=str(exc)), None
        return Route(name=name, exists=True), found

    def _measurements(
        self, key: Key, md: ModelDeployment, revision: str, now: dt.datetime
    ) -> list[Measurement] | None:
        """A finished round of measurements, if one is ready; starts the next one when due."""
        stable = md.status.stable.revision if md.status.stable else ""
        due = analysis_due(md, revision, now)
        return self.analysis.collect(key, md, revision, stable, due, now)

    # -- recording ----------------------------------------------------------------------------

    def _record(
        self,
        md: ModelDeployment,
        body: Mapping[str, Any],
        decision: Decision,
        measurements: Sequence[Measurement] | None,
        now: dt.datetime,
    ) -> None:
        """Events, metrics and a log line for every decision, once its status is written."""
        status = decision.status
        metrics.track_phase(md.namespace, md.name, status.phase.value)
        metrics.set_canary_weight(md.namespace, md.name, decision.canary_weight)
        if status.canary is None:
            metrics.clear_measurements(md.namespace, md.name)
        for m in [*(measurements or ()), *decision.evaluated]:
            metrics.record_measurement(md.namespace, md.name, m.metric, m.value, m.verdict.value)
        for event in decision.events:
            log_decision(md, event)
            self._emit(body, event.type, event.reason, event.message, now)
            outcome = _ROLLOUT_OUTCOMES.get(event.reason)
            if outcome is not None:
                started = md.status.canary.started_at if md.status.canary else None
                seconds = (now - parse_time(started)).total_seconds() if started else 0.0
                metrics.record_rollout(outcome, seconds)
        notifier.submit(md, decision, now)

    # -- writing ------------------------------------------------------------------------------

    def _apply_children(self, key: Key, md: ModelDeployment, decision: Decision) -> None:
        """Apply the decided Deployments, Services and HPA; delete ours that are not decided.

        A write the API server refuses is remembered (a fact of the next decision) and the others
        go on; what was refused before and is not written now is forgotten."""
        self._refusals[key] = {}
        live_deployments = {
            d["metadata"]["name"]: d for d in self.store.children("Deployment", key)
        }
        wanted: set[str] = set()
        stable_port = canary_port = decision.port
        for desired in decision.revisions:
            try:
                serving = ServingSpec.model_validate(desired.serving)
                manifest = desired_deployment(
                    md, serving, desired.revision, desired.track, desired.replicas, desired.pinned
                )
            except ValueError as exc:  # a pydantic ValidationError is one too
                # a revision recorded by another version that this one cannot rebuild: keep its
                # Deployment as it runs, and say so
                name = deployment_name(md.name, desired.revision)
                wanted.add(name)
                message = f"cannot be rebuilt from its recorded serving spec: {exc}"
                refusal = Refusal("Deployment", name, message, desired.revision)
                self._refusals[key][("Deployment", name)] = refusal
            else:
                wanted.add(manifest["metadata"]["name"])
                live = live_deployments.get(manifest["metadata"]["name"])
                self._apply_if_changed(key, md, manifest, live, desired.revision)
            # its Services stay on its pods either way (desired_services)
            if desired.track == "canary":
                canary_port = desired.port
            elif desired.track == "stable":
                stable_port = desired.port
        for name in sorted(set(live_deployments) - wanted):
            self._delete_if_ours(md, "apps/v1", "Deployment", live_deployments[name])

        live_services = {s["metadata"]["name"]: s for s in self.store.children("Service", key)}
        services = desired_services(
            md, decision.revisions, decision.service_revision, decision.port
        )
        for manifest in services:
            live = live_services.get(manifest["metadata"]["name"])
            self._apply_if_changed(key, md, manifest, live)
        stale = set(live_services) - {s["metadata"]["name"] for s in services}
        for name in sorted(stale):
            self._delete_if_ours(md, "v1", "Service", live_services[name])

        self._apply_evaluation(key, md, decision.evaluation, stable_port, canary_port)

        hpa = desired_hpa(md)
        live_hpa = self.store.children("HorizontalPodAutoscaler", key)
        if hpa is not None:
            self._apply_if_changed(key, md, hpa, live_hpa[0] if live_hpa else None)
        for obj in live_hpa:
            if hpa is None or obj["metadata"]["name"] != hpa["metadata"]["name"]:
                self._delete_if_ours(md, "autoscaling/v2", "HorizontalPodAutoscaler", obj)

    def _apply_evaluation(
        self,
        key: Key,
        md: ModelDeployment,
        wanted: DesiredEvaluation | None,
        stable_port: int,
        canary_port: int,
    ) -> None:
        """Create the decided evaluation Job if it is missing (a Job is never changed: its pod
        template is immutable); delete every other one."""
        live = {j["metadata"]["name"]: j for j in self.store.children("Job", key)}
        name = None
        if wanted is not None:
            name = evaluation_job_name(md, wanted.revision, wanted.step, wanted.attempt)
        if wanted is not None and wanted.evaluate is not None and name not in live:
            canary = md.status.canary
            serving = (
                ServingSpec.model_validate(canary.template)
                if canary is not None and canary.template
                else md.spec.serving()
            )
            manifest = desired_evaluation_job(
                md,
                wanted.step,
                wanted.attempt,
                wanted.evaluate,
                wanted.revision,
                self.operator_image,
                self._service_address(key, md, "canary", canary_port),
                self._service_address(key, md, "stable", stable_port),
                runtime_for(serving, md.model_name).protocol,
            )
            self._apply_if_changed(key, md, manifest, None, wanted.revision)
        for stale in sorted(set(live) - {name}):
            self._delete_if_ours(md, "batch/v1", "Job", live[stale])

    def _service_address(self, key: Key, md: ModelDeployment, track: str, port: int) -> str:
        """Service `<name>-<track>` by its cluster IP (fixed for the Service's life): the
        evaluation then needs no cluster DNS. Its DNS name while the Service is not seen yet."""
        name = service_name(md.name, track)
        for service in self.store.children("Service", key):
            ip = (service.get("spec") or {}).get("clusterIP")
            if service["metadata"]["name"] == name and ip and ip != "None":
                return f"http://{ip}:{port}"
        return service_url(md, track, port)

    def _apply_if_changed(
        self,
        key: Key,
        md: ModelDeployment,
        manifest: dict[str, Any],
        live: Mapping[str, Any] | None,
        revision: str = "",
    ) -> None:
        extra = _foreign_selector_keys(manifest, live)
        ref = (manifest["kind"], manifest["metadata"]["name"])
        if live is not None and not extra and is_subset(_comparable(manifest), live):
            self._refusals.get(key, {}).pop(ref, None)
            return
        meta = manifest["metadata"]
        if live is None and manifest["kind"] in _NAMED_AFTER_THE_MODEL:
            # not among ours: a user's own, or another ModelDeployment's (`a-canary` and `a`'s
            # canary), may have the name; Deployments and Jobs have a revision's hash in theirs
            live = self.kube.get(manifest["apiVersion"], ref[0], md.namespace, meta["name"])
        taken = not_ours(live, md) if live is not None else None
        if taken is not None:
            refusal = Refusal(*ref, message=taken, revision=revision, reason="NameTaken")
            self._refusals.setdefault(key, {})[ref] = refusal
            return
        try:
            # write-through: the next reconcile sees what we applied before its watch event
            self.store.upsert(manifest["kind"], self.kube.apply(manifest))
            if extra:
                # keys another manager added to a selector we own: apply keeps them, drop them
                self.kube.patch(
                    manifest["apiVersion"],
                    manifest["kind"],
                    meta["namespace"],
                    meta["name"],
                    {"spec": {"selector": dict.fromkeys(extra)}},
                )
        except ApiError as exc:
            if exc.status not in _REFUSALS:
                raise
            refusal = Refusal(*ref, message=server_message(exc), revision=revision)
            self._refusals.setdefault(key, {})[ref] = refusal
            return
        self._refusals.get(key, {}).pop(ref, None)

    def _delete_if_ours(
        self, md: ModelDeployment, api_version: str, kind: str, obj: Mapping[str, Any]
    ) -> None:
        """Delete a child that is no longer decided, if `md` is its controller (that object, by
        its uid): what is only labelled as ours (a copy, an orphan) is left alone."""
        if controlled_by(obj, md):
            meta = obj["metadata"]
            self.kube.delete(api_version, kind, md.namespace, meta["name"], meta.get("uid"))

    def _set_route_weights(
        self, key: Key, md: ModelDeployment, decision: Decision, found: dict[str, Any] | None
    ) -> None:
        """The decided weights on the HTTPRoute's backendRefs (as observed), when they differ."""
        if found is None:
            return  # none, or not wired: the core said so
        # the ports of Services <name>-stable and <name>-canary (_apply_children)
        stable = next((d for d in decision.revisions if d.track == "stable"), None)
        canary = next((d for d in decision.revisions if d.track == "canary"), None)
        stable_port = stable.port if stable is not None else decision.port
        rules = httproute_weights_patch(
            found,
            md,
            decision.stable_weight,
            decision.canary_weight,
            canary.port if canary is not None else stable_port,
            stable_port,
        )
        if rules is None:
            return
        patch = {
            "metadata": {"resourceVersion": found["metadata"]["resourceVersion"]},
            "spec": {"rules": rules},
        }
        ref = ("HTTPRoute", found["metadata"]["name"])
        try:
            # the resourceVersion makes it a compare-and-swap: a concurrent edit is retried
            self.kube.merge_patch(found, patch)
        except ApiError as exc:
            if exc.conflict:
                raise StaleRead(f"HTTPRoute {ref[1]} changed meanwhile") from exc
            if exc.status not in _REFUSALS:
                raise
            refusal = Refusal(*ref, message=server_message(exc))
            self._refusals.setdefault(key, {})[ref] = refusal
            return
        self._refusals.get(key, {}).pop(ref, None)

    def _write_status(self, body: Mapping[str, Any], status: ModelDeploymentStatus) -> bool:
        """Patch the status if it differs from `body`'s; whether it did."""
        new = status.wire()
        old = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
        if old == new:
            return False
        patch = merge_patch(old, new)
        meta = body["metadata"]
        try:
            after = self.kube.patch_status(
                meta["namespace"], meta["name"], patch, meta["resourceVersion"]
            )
        except ApiError as exc:
            if exc.conflict:
                raise StaleRead(f"{meta['namespace']}/{meta['name']} changed meanwhile") from exc
            if exc.not_found:
                # deleted since the watch brought it (its namespace torn down, say): the next run
                # finds it gone once the watch says so, and forgets it
                raise StaleRead(f"{meta['namespace']}/{meta['name']} deleted meanwhile") from exc
            raise
        self.store.upsert("ModelDeployment", after)
        return True

    # -- a spec Slipway cannot read -----------------------------------------------------------

    def _report_unreadable(
        self, body: Mapping[str, Any], exc: ValidationError, now: dt.datetime
    ) -> None:
        """A spec the schema let through but Slipway cannot read: say which field; touch nothing."""
        message = unreadable_message(exc)
        metrics.record_reconcile_error("invalid_spec")
        raw = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
        status = ModelDeploymentStatus.model_validate(raw)
        generation = int(body["metadata"].get("generation") or 0)
        updated = unreadable_spec_status(status, message, generation, rfc3339(now))
        if updated.wire() != status.wire():
            self._write_status(body, updated)
            self._emit(body, "Warning", "InvalidSpec", message, now)


def desired_services(
    md: ModelDeployment,
    revisions: Sequence[DesiredRevision],
    service_revision: str | None,
    port: int,
) -> list[dict[str, Any]]:
    """Services `<name>`, `<name>-stable` and `<name>-canary` as the decided revisions have them.

    Each listens where the pods it selects do (`<name>` and `<name>-stable` on the stable
    revision's port until a promotion moves them) and carries the model name and version of the
    revision it selects (`<name>`, on every serving pod, the stable's): a new version's canary
    leaves `<name>` and `<name>-stable` as they are. `<name>-canary` exists during a canary, and
    with a route between canaries too, on the stable's pods: the route keeps its backendRef to it
    (at weight 0), so a gateway still sending it what the route has just taken away (a promotion,
    a rollback) reaches pods that serve."""
    tracked = {d.track: d for d in revisions if d.track is not None}
    models = {
        d.revision: model for d in revisions if isinstance(model := d.serving.get("model"), Mapping)
    }
    stable, canary = tracked.get("stable"), tracked.get("canary")
    main = service_revision or (stable.revision if stable is not None else None)
    services = [desired_service(md, None, service_revision, port, models.get(main or ""))]
    if stable is not None:
        services.append(
            desired_service(md, "stable", stable.revision, stable.port, models.get(stable.revision))
        )
    if canary is None and stable is not None and md.spec.rollout.traffic_routing is not None:
        canary = stable
    if canary is not None:
        services.append(
            desired_service(md, "canary", canary.revision, canary.port, models.get(canary.revision))
        )
    return services


def unreadable_message(exc: ValidationError) -> str:
    """What is wrong with a spec Slipway cannot read, each problem after the field it is in."""
    return "; ".join(
        ".".join(str(p) for p in err["loc"]) + ": " + err["msg"] for err in exc.errors()
    ) or str(exc)


def waits_for_registry(found: Outcome | None) -> bool:
    """Whether a reconcile must wait for the registry's first answer: only while nothing was
    ever resolved for the spec's models:/ uri. One resolved before (recorded in status: an
    operator restarted, a standby taking over) is decided on meanwhile, so that a registry slow
    to answer never holds a rollback, an action or a timer."""
    return found is not None and found.pending and found.resolution is None


def unresolved(found: Outcome | None) -> tuple[str, str] | None:
    """(reason, message) when the spec's models:/ uri has no resolution to serve."""
    if found is None or found.resolution is not None:
        return None
    return found.reason, f"spec.model.uri: {found.message}"


def unbuildable(md: ModelDeployment, revision: str, pins: RevisionPins) -> tuple[str, ...]:
    """Why the spec's revision cannot be built, each naming the field: what the builders (and the
    fetcher's URI parser) refuse. Empty when it can be."""
    serving = md.spec.serving()
    errors: list[str] = []
    try:
        desired_deployment(md, serving, revision, None, 1, pins)
    except ValueError as exc:
        errors.append(str(exc))
    uri = serving.model.uri
    if needs_fetch(uri):
        try:
            parse_model_uri(uri)
        except FetchError as exc:
            errors.append(f"spec.model.uri: {exc}")
    return tuple(errors)


def job_ended(job: Mapping[str, Any]) -> tuple[bool, str | None]:
    """Whether a Job has ended, and when it failed, why (its Failed condition)."""
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return True, None
        if cond.get("type") == "Failed":
            reason = cond.get("reason") or "Failed"
            return True, f"{reason}: {cond.get('message') or 'no message'}"
    return False, None


def evaluation_result(
    pods: Sequence[Mapping[str, Any]],
) -> tuple[EvaluationResult | None, str]:
    """The result an evaluation Job's pod reported, or why there is none."""
    problem = "its pod is gone"
    for pod in sorted(
        pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True
    ):
        try:
            return result_of_pod(pod), ""
        except ResultUnreadable as exc:
            problem = str(exc)
    return None, problem


def pods_refused(deployment_status: Mapping[str, Any]) -> str | None:
    """The server's message when a Deployment's ReplicaSet cannot create pods (FailedCreate:
    Pod Security, ResourceQuota, LimitRange, an admission webhook), as its conditions carry it."""
    for cond in deployment_status.get("conditions") or ():
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return str(cond.get("message") or cond.get("reason") or "ReplicaFailure")
    return None


def server_message(exc: ApiError) -> str:
    """What the API server said, from its Status object when it sent one."""
    try:
        message = json.loads(exc.body).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or f"{exc.status} {exc.reason}")


def log_decision(md: ModelDeployment, event: Event) -> None:
    """One decision, as a log line: structured (the fields kopf's JSON log shows) and readable."""
    level = logging.INFO if event.type == "Normal" else logging.WARNING
    where = f"{md.namespace}/{md.name}"
    fields: dict[str, Any] = {
        "k8s_ref": {
            "apiVersion": md.api_version,
            "kind": md.kind,
            "namespace": md.namespace,
            "name": md.name,
            "uid": md.metadata.uid,
        },
        "reason": event.reason,
        "revision": event.revision,
    }
    if event.step is not None:
        fields["step"] = event.step
    log.log(level, "%s: %s: %s", where, event.reason, event.message, extra=fields)


def _created_at(obj: Mapping[str, Any]) -> dt.datetime | None:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    return parse_time(stamp) if stamp else None


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
    failures = pod_failures(pods)
    crash = next((f for f in failures if f.crashing), None)
    if crash is not None:
        return True, crash.text
    return False, failures[0].text if failures else None


def pod_failures(pods: Sequence[Mapping[str, Any]]) -> tuple[PodFailure, ...]:
    """The first failing container of each pod that fails, with when the pod was created (the
    core judges a canary attempt on its own pods only). A pod on its way out is not judged."""
    found: list[PodFailure] = []
    for pod in pods:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        containers = list(status.get("initContainerStatuses") or ()) + list(
            status.get("containerStatuses") or ()
        )
        failures = [f for cs in containers if (f := _container_failure(meta["name"], cs))]
        if failures:
            crash = next((f for f in failures if f[0]), failures[0])
            found.append(PodFailure(meta["name"], crash[0], crash[1], _created_at(pod)))
    return tuple(found)


def _container_failure(pod: str, cs: Mapping[str, Any]) -> tuple[bool, str] | None:
    """(whether it crash-loops or cannot start, the sentence), or None when it does not fail."""
    waiting = (cs.get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    restarts = int(cs.get("restartCount") or 0)
    crashing = reason in _CRASHING or (restarts >= CRASH_RESTARTS and not cs.get("ready"))
    if not crashing and reason not in _FAILING_WAITING_REASONS:
        return None
    text = f"pod {pod}, container {cs.get('name')}: {reason or 'restarting'}"
    text += f" (restarts {restarts})"
    if waiting.get("message"):
        text += f": {waiting['message']}"
    # what the container said as it last exited (slipway fetch: why the fetch failed)
    said = ((cs.get("lastState") or {}).get("terminated") or {}).get("message")
    if said:
        text += f"; it last said: {said.strip()[:300]}"
    return crashing, text


__all__ = ["ACTION_ANNOTATION", "Reconciler"]
