"""The Deployment of one revision: `<name>-<revision>`, serving one ServingSpec."""

from __future__ import annotations

from typing import Any

from slipway.api import ModelDeployment, ResourceRequirements, ServingSpec
from slipway.resources.metadata import child_labels, child_metadata, selector_labels
from slipway.resources.names import deployment_name
from slipway.resources.presets import probes_for, runtime_for
from slipway.resources.scraping import expose_metrics
from slipway.resources.storage import storage_wiring

SERVER_CONTAINER = "server"
PORT_NAME = "http"
# in-flight requests (an LLM generation can run for tens of seconds) finish before the kill
TERMINATION_GRACE_PERIOD_SECONDS = 60


def desired_deployment(
    md: ModelDeployment,
    serving: ServingSpec,
    revision: str,
    track: str | None,
    replicas: int,
    operator_image: str,
) -> dict[str, Any]:
    """The Deployment that serves `serving` as `revision` of `md`, with `replicas` pods.

    Pods are shaped by `serving` alone (a stable revision is rebuilt from its stored serving
    spec while md.spec moves on); names and owner come from `md`. `track` (stable, canary, or
    None for a retired revision kept for undo) labels the Deployment object only: the pod
    template never carries it, so promotion relabels the Deployment without restarting pods.
    """
    model_name = serving.model.name or md.name
    pod_labels = child_labels(md, model_name, serving.model.version, revision)
    object_labels = child_labels(md, model_name, serving.model.version, revision, track)
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(md, deployment_name(md.name, revision), object_labels),
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
                "spec": pod_spec(md, serving, operator_image),
            },
        },
    }
    expose_metrics(manifest["spec"]["template"], serving, SERVER_CONTAINER)
    return manifest


def pod_spec(md: ModelDeployment, serving: ServingSpec, operator_image: str) -> dict[str, Any]:
    """The pod of a revision: the server, the model storage and spec.template's extras."""
    runtime = runtime_for(serving, serving.model.name or md.name)
    storage = storage_wiring(serving.model, operator_image)
    server: dict[str, Any] = {"name": SERVER_CONTAINER, "image": runtime.image}
    if runtime.command:
        server["command"] = runtime.command
    if runtime.args:
        server["args"] = runtime.args
    if runtime.env:
        server["env"] = runtime.env
    server["ports"] = [{"name": PORT_NAME, "containerPort": runtime.port, "protocol": "TCP"}]
    if resources := container_resources(serving.resources):
        server["resources"] = resources
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
    spec["terminationGracePeriodSeconds"] = TERMINATION_GRACE_PERIOD_SECONDS
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


def container_resources(resources: ResourceRequirements) -> dict[str, dict[str, str]]:
    """requests and limits as the API server returns them (quantities as strings)."""
    return {
        kind: {name: str(quantity) for name, quantity in quantities.items()}
        for kind, quantities in (("requests", resources.requests), ("limits", resources.limits))
        if quantities
    }
