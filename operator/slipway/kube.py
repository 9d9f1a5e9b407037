"""The thin Kubernetes I/O adapter: server-side apply, delete, status and metadata patches, Events.

Everything that writes to the API server goes through `Kube`, so every write is counted
(`slipway_api_writes_total`); the reconcile skips the ones that would change nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.utils.quantity import parse_quantity

from slipway import FIELD_MANAGER, GROUP, PLURAL, VERSION, metrics
from slipway.rollout.times import rfc3339

log = logging.getLogger(__name__)

# apiVersion/kind → (URL prefix, plural) for the kinds Slipway writes.
_KINDS: dict[tuple[str, str], tuple[str, str]] = {
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments"),
    ("v1", "Service"): ("/api/v1", "services"),
    ("v1", "PersistentVolumeClaim"): ("/api/v1", "persistentvolumeclaims"),
    ("v1", "Pod"): ("/api/v1", "pods"),
    ("v1", "Secret"): ("/api/v1", "secrets"),
    ("batch/v1", "Job"): ("/apis/batch/v1", "jobs"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): (
        "/apis/autoscaling/v2",
        "horizontalpodautoscalers",
    ),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): (
        "/apis/gateway.networking.k8s.io/v1",
        "httproutes",
    ),
    ("monitoring.coreos.com/v1", "PodMonitor"): ("/apis/monitoring.coreos.com/v1", "podmonitors"),
    (f"{GROUP}/{VERSION}", "ModelDeployment"): (f"/apis/{GROUP}/{VERSION}", PLURAL),
}


class ApiError(Exception):
    """An API request failed; `status` is the HTTP status (0 when unknown)."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"{status} {reason}: {body[:500]}")
        self.status = status
        self.reason = reason
        self.body = body

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def object_path(api_version: str, kind: str, namespace: str, name: str = "") -> str:
    """The REST path of a namespaced object (or of its collection when name is empty)."""
    prefix, plural = _KINDS[(api_version, kind)]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def is_subset(desired: Any, live: Any) -> bool:
    """True when every field of `desired` has the same value in `live` (server defaults aside).

    Lists are compared item by item and must have the same length; scalars that the server
    normalises (1 → "1") compare by their text, quantities by their value, since the server
    stores them canonical (0.5 → "500m", "1.5Gi" → "1536Mi", "2000m" → "2").
    """
    return _subset(desired, live, "", "")


def _subset(desired: Any, live: Any, key: str, parent: str) -> bool:
    """is_subset of the value at `key` of a mapping that is itself at `parent` (list items: at
    their list's key)."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        return all(k in live and _subset(v, live[k], k, key) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(_subset(d, v, key, parent) for d, v in zip(desired, live, strict=True))
    if desired == live:
        return True
    if isinstance(desired, bool) or isinstance(live, bool):
        return False
    if isinstance(desired, int | float | str) and isinstance(live, int | float | str):
        if _is_quantity(key, parent):
            return _same_quantity(desired, live)
        return str(desired) == str(live)
    return False


def _is_quantity(key: str, parent: str) -> bool:
    """Whether the field `key` of a mapping at `parent` is a resource.Quantity: resources'
    requests and limits (containers, claims), an emptyDir's sizeLimit, an HPA target's value."""
    return (
        parent in ("requests", "limits")
        or key == "sizeLimit"
        or (parent == "target" and key in ("averageValue", "value"))
    )


def _same_quantity(desired: int | float | str, live: int | float | str) -> bool:
    try:
        same = parse_quantity(desired) == parse_quantity(live)  # type: ignore[no-untyped-call]
        return bool(same)
    except ValueError:  # not a quantity after all: its text
        return str(desired) == str(live)


def send(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
    accept: str = "application/json",
    timeout: float | tuple[float, float] = 30.0,
) -> Any:
    """One request through the official client; the raw (unread) response.

    The client's ApiException becomes ApiError; connection errors pass through as urllib3
    raises them. The caller checks the status of what comes back (see `read_ok`)."""
    method_, url, headers, payload, post = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params={"Content-Type": content_type, "Accept": accept},
        body=body,
        auth_settings=["BearerToken"],
    )
    try:
        return api.call_api(
            method_,
            url,
            header_params=headers,
            body=payload,
            post_params=post,
            _request_timeout=timeout,
        )
    except client.ApiException as exc:
        raise ApiError(exc.status or 0, str(exc.reason), str(exc.body or "")) from exc


def read_ok(response: Any) -> str:
    """The body of a response as text; ApiError unless its status is 2xx."""
    data = response.read()
    text = data.decode() if isinstance(data, bytes) else str(data or "")
    if not 200 <= response.status <= 299:
        raise ApiError(response.status, str(response.reason), text)
    return text


class Kube:
    """Server-side apply and friends on top of the official client's ApiClient."""

    def __init__(self, api_client: client.ApiClient, timeout: float = 30.0) -> None:
        self.api = api_client
        self.timeout = timeout

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One request; the JSON answer, or ApiError with the server's message."""
        response = send(
            self.api,
            method,
            path,
            body=body,
            query=query,
            content_type=content_type,
            timeout=self.timeout,
        )
        return json.loads(text) if (text := read_ok(response)) else {}

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            result: dict[str, Any] = self._call(
                "GET", object_path(api_version, kind, namespace, name)
            )
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        return result

    def served(self, api_version: str, plural: str) -> bool:
        """Whether the API server serves `plural` in `api_version` (discovery; a CRD may be
        installed or removed at any time)."""
        try:
            found = self._call("GET", f"/apis/{api_version}")
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return any(r.get("name") == plural for r in found.get("resources") or ())

    def list_all(
        self, api_version: str, kind: str, namespace: str, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        """Every object of a kind in a namespace ("" for all namespaces), page by page."""
        prefix, plural = _KINDS[(api_version, kind)]
        path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = [("limit", "500")]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            page = self._call("GET", path, query=query)
            for item in page.get("items", []):
                # list items come without apiVersion and kind
                items.append({"apiVersion": api_version, "kind": kind, **item})
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply with field manager `slipway`, taking over conflicting fields."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        metrics.record_write("apply")
        replicas = (obj.get("spec") or {}).get("replicas")
        log.debug(
            "apply %s %s/%s%s",
            obj["kind"],
            meta["namespace"],
            meta["name"],
            "" if replicas is None else f" (replicas {replicas})",
        )
        result: dict[str, Any] = self._call(
            "PATCH",
            path,
            body=dict(obj),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
        return result

    def delete(
        self, api_version: str, kind: str, namespace: str, name: str, uid: str | None = None
    ) -> None:
        """Delete; an object already gone is not an error. With `uid`, only that object: one
        made since under the same name (another owner's) is left alone."""
        metrics.record_write("delete")
        log.debug("delete %s %s/%s", kind, namespace, name)
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._call("DELETE", object_path(api_version, kind, namespace, name), body=body)
        except ApiError as exc:
            if not exc.not_found and not (uid and exc.status == 409):
                raise

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        body: Any,
        content_type: str = "application/merge-patch+json",
    ) -> dict[str, Any]:
        """A merge patch (or a JSON patch: a list of operations, with its content type)."""
        metrics.record_write("patch")
        log.debug("patch %s %s/%s: %s", kind, namespace, name, body)
        result: dict[str, Any] = self._call(
            "PATCH",
            object_path(api_version, kind, namespace, name),
            body=body,
            content_type=content_type,
        )
        return result

    def merge_patch(self, obj: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge patch of an object Slipway does not own (only the fields in `patch`)."""
        meta = obj["metadata"]
        return self.patch(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"], patch)

    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Merge-patch the ModelDeployment's status, if it is still at resource_version.

        The precondition turns a decision made on a stale read into a 409 Conflict, instead of
        an older status written over a newer one.
        """
        metrics.record_write("status")
        log.debug("status %s/%s: %s", namespace, name, status)
        path = object_path(f"{GROUP}/{VERSION}", "ModelDeployment", namespace, name) + "/status"
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        result: dict[str, Any] = self._call(
            "PATCH", path, body=body, content_type="application/merge-patch+json"
        )
        return result

    def remove_annotation(
        self, namespace: str, name: str, key: str, resource_version: str
    ) -> dict[str, Any] | None:
        """Remove an annotation if the object is still at resource_version: the object after,
        or None when the object moved on (or the annotation is gone already)."""
        return self.remove_annotations(namespace, name, [key], resource_version)

    def remove_annotations(
        self, namespace: str, name: str, keys: list[str], resource_version: str
    ) -> dict[str, Any] | None:
        """Remove annotations in one write if the object is still at resource_version: the object
        after, or None when the object moved on (or one of them is gone already)."""
        path = object_path(f"{GROUP}/{VERSION}", "ModelDeployment", namespace, name)
        metrics.record_write("metadata")
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}
        ]
        for key in keys:
            pointer = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
            ops.append({"op": "remove", "path": pointer})
        try:
            result: dict[str, Any] = self._call(
                "PATCH", path, body=ops, content_type="application/json-patch+json"
            )
        except ApiError as exc:
            # 422: the test op failed (the object moved on) or an annotation is already gone
            if exc.status in (409, 422):
                return None
            raise
        return result

    def emit_event(
        self, owner: Mapping[str, Any], type_: str, reason: str, message: str, now: dt.datetime
    ) -> None:
        """A core/v1 Event about the owner, posted now (best effort: a lost Event loses no
        state). The operator posts its Events off the reconcile's path (`slipway.events`)."""
        self.post_event(event_body(owner, type_, reason, message, now))

    def post_event(self, event: Mapping[str, Any]) -> None:
        """POST an Event built by `event_body`; a refusal is logged, never raised."""
        meta = event["metadata"]
        name = event["involvedObject"]["name"]
        metrics.record_write("event")
        log.debug("event %s %s: %s", name, event["reason"], event["message"])
        try:
            self._call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)
        except ApiError as exc:
            log.warning("could not record event %s on %s: %s", event["reason"], name, exc)


def event_body(
    owner: Mapping[str, Any], type_: str, reason: str, message: str, now: dt.datetime
) -> dict[str, Any]:
    """A core/v1 Event about `owner` at `now`: its times are those of the decision, whenever
    it is posted."""
    meta = owner["metadata"]
    stamp = rfc3339(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{meta['name']}.",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": owner.get("apiVersion", f"{GROUP}/{VERSION}"),
            "kind": owner.get("kind", "ModelDeployment"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "slipway"},
        "reportingComponent": "slipway",
        "reportingInstance": "slipway",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
