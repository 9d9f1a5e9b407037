"""The Deployment of one revision: `<name>-<revision>`, serving one ServingSpec.

Its pods are built from the revision's serving spec and its pins (resources/pins.py): the images
and the generation of pod defaults chosen when the revision was created. Every generation is
built here exactly as it first was, so that an operator upgrade never rolls a revision's pods.
"""

from __future__ import annotations

from typing import Any

from slipway.api import ModelDeployment, ResourceRequirements, RevisionPins, ServingSpec
from slipway.resources.metadata import child_labels, child_metadata, selector_labels
from slipway.resources.names import deployment_name
from slipway.resources.pins import POD_SHAPE, POD_SHAPE_ANNOTATION, SERVER_CONTAINER
from slipway.resources.presets import ServerRuntime, probes_for, runtime_for
from slipway.resources.scraping import expose_metrics
from slipway.resources.storage import storage_wiring

PORT_NAME = "http"
# pod shape 1: in-flight requests (an LLM generation can run for tens of seconds) finish before
# the kill
LEGACY_TERMINATION_GRACE_PERIOD_SECONDS = 60


def desired_deployment(
    md: ModelDeployment,
    serving: ServingSpec,
    revision: str,
    track: str | None,
    replicas: int,
    pins: RevisionPins,
) -> dict[str, Any]:
    """The Deployment that serves `serving` as `revision` of `md`, with `replicas` pods.

    Pods are shaped by `serving` alone (a stable revision is rebuilt from its stored serving
    spec while md.spec moves on); names and owner come from `md`. `track` (stable, canary, or
    None for a retired revision kept for undo) labels the Deployment object only: the pod
    template never carries it, so promotion relabels the Deployment without restarting pods.
    `pins` are the revision's images and pod-default generation.
    """
    model_name = serving.model.name or md.name
    pod_labels = child_labels(md, model_name, serving.model.version, revision)
    object_labels = child_labels(md, model_name, serving.model.version, revision, track)
    metadata = child_metadata(md, deployment_name(md.name, revision), object_labels)
    metadata["annotations"] = {POD_SHAPE_ANNOTATION: str(_shape(pins))}
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            # one revision is one Deployment: older ReplicaSets have nothing to roll back to
            "revisionHistoryLimit": 0,
            "progressDeadlineSeconds": md.spec.rollout.progress_deadline_seconds,
            # a hand edit that is put back rolls without losing a Ready pod
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            # immutable: only labels that never change for this Deployment
            "selector": {"matchLabels": selector_labels(md, revision)},
            "template": {
                "metadata": {
                    # user labels first, so that they can never break the selector
                    "labels": {**serving.template.labels, **pod_labels},
                    "annotations": {
                        **serving.template.annotations,
                        "kubectl.kubernetes.io/default-container": SERVER_CONTAINER,
                    },
                },
                "spec": pod_spec(md, serving, pins),
            },
        },
    }
    if _shape(pins) >= 2:
        expose_metrics(manifest["spec"]["template"], serving, SERVER_CONTAINER)
    return manifest


def pod_spec(md: ModelDeployment, serving: ServingSpec, pins: RevisionPins) -> dict[str, Any]:
    """The pod of a revision: the server, the model storage and spec.template's extras."""
    shape = _shape(pins)
    runtime = runtime_for(serving, serving.model.name or md.name, pins)
    storage = storage_wiring(serving.model, pins.fetcher_image, pins.model_sha256)
    server: dict[str, Any] = {"name": SERVER_CONTAINER, "image": pins.server_image}
    if runtime.command:
        server["command"] = runtime.command
    if runtime.args:
        server["args"] = runtime.args
    if runtime.env:
        server["env"] = runtime.env
    server["ports"] = [{"name": PORT_NAME, "containerPort": runtime.port, "protocol": "TCP"}]
    if resources := container_resources(serving.resources):
        server["resources"] = resources
    if shape >= 2:
        server.update(
            probes_for(
                runtime.protocol,
                runtime.port,
                startup_period=runtime.startup_period_seconds,
                readiness_period=2,
            )
        )
        if runtime.shutdown_delay_seconds > 0:
            # the endpoint goes from every Service before the server hears SIGTERM
            server["lifecycle"] = {
                "preStop": {"sleep": {"seconds": runtime.shutdown_delay_seconds}}
            }
        server["securityContext"] = {
            **server_security_context(runtime),
            **(serving.template.container_security_context or {}),
        }
    else:
        server.update(probes_for(runtime.protocol, runtime.port))
    server["volumeMounts"] = [storage.server_mount]

    template = serving.template
    spec: dict[str, Any] = {}
    if storage.init_containers:
        spec["initContainers"] = storage.init_containers
    spec["containers"] = [server]
    spec["volumes"] = storage.volumes
    # Service links inject <SVC>_PORT variables: a Service named mlserver or vllm would feed
    # MLSERVER_PORT / VLLM_PORT to the server, which reads them as its own settings.
    spec["enableServiceLinks"] = False
    if shape >= 2:
        spec["terminationGracePeriodSeconds"] = (
            template.termination_grace_period_seconds
            or runtime.shutdown_delay_seconds + runtime.drain_seconds
        )
        spec["securityContext"] = {
            **pod_security_context(runtime),
            **(template.security_context or {}),
        }
    else:
        spec["terminationGracePeriodSeconds"] = LEGACY_TERMINATION_GRACE_PERIOD_SECONDS
    if template.service_account_name:
        spec["serviceAccountName"] = template.service_account_name
    if template.node_selector:
        spec["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        spec["tolerations"] = [dict(toleration) for toleration in template.tolerations]
    if template.affinity:
        spec["affinity"] = dict(template.affinity)
    if template.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": ref.name} for ref in template.image_pull_secrets]
    if template.priority_class_name:
        spec["priorityClassName"] = template.priority_class_name
    return spec


def pod_security_context(runtime: ServerRuntime) -> dict[str, Any]:
    """Pod Security `restricted` at the pod level, non-root when the image's uid is known."""
    context: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if runtime.run_as_user is not None:
        context["runAsNonRoot"] = True
        context["runAsUser"] = runtime.run_as_user
    return context


def server_security_context(runtime: ServerRuntime) -> dict[str, Any]:
    """Pod Security `restricted` for the server container; a port below 1024 keeps the one
    capability binding it needs."""
    capabilities: dict[str, Any] = {"drop": ["ALL"]}
    if runtime.port < 1024:
        capabilities["add"] = ["NET_BIND_SERVICE"]
    return {"allowPrivilegeEscalation": False, "capabilities": capabilities}


def _shape(pins: RevisionPins) -> int:
    """The pod shape to build: the pinned one, or the newest this operator knows (a pin from a
    newer operator, after a downgrade)."""
    return min(pins.pod_shape, POD_SHAPE)


def container_resources(resources: ResourceRequirements) -> dict[str, dict[str, str]]:
    """requests and limits as the API server returns them (quantities as strings)."""
    return {
        kind: {name: str(quantity) for name, quantity in quantities.items()}
        for kind, quantities in (("requests", resources.requests), ("limits", resources.limits))
        if quantities
    }
