"""How Prometheus finds a serving pod's own metrics, and the labels it gives their series. Pure.

Every model server publishes Prometheus metrics (MLServer on its metrics port 8082, Triton on
8002, vLLM on its serving port, a custom image where spec.runtime.metrics says). A serving pod
says where, in what a scrape config can read:
- the container port named `metrics` (when the metrics are not on the serving port itself);
- the annotations `serving.slipway.dev/metrics-port` (the port number) and
  `serving.slipway.dev/metrics-path`.
The relabelling below (the same in the PodMonitor and in the plain scrape config of the README)
keeps exactly that port of Slipway's pods and gives every series the labels the built-in checks
select by: namespace, pod, container, modeldeployment, revision (and, from the PodMonitor, track).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slipway import GROUP
from slipway.api import ServingSpec
from slipway.resources.metadata import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MODEL_DEPLOYMENT_LABEL,
    REVISION_LABEL,
)
from slipway.resources.presets import PRESETS

METRICS_PORT_NAME = "metrics"
METRICS_PORT_ANNOTATION = f"{GROUP}/metrics-port"
METRICS_PATH_ANNOTATION = f"{GROUP}/metrics-path"
SERVING_PORT = None  # the metrics are served on the serving port itself

# Where each preset's server publishes its metrics: (port, path); SERVING_PORT: the serving port.
PRESET_METRICS: dict[str, tuple[int | None, str]] = {
    "MLServer": (8082, "/metrics"),  # MLSERVER_METRICS_PORT, MLSERVER_METRICS_ENDPOINT defaults
    "Triton": (8002, "/metrics"),  # tritonserver --metrics-port default
    "vLLM": (SERVING_PORT, "/metrics"),  # the OpenAI server's own /metrics
}

# the labels of every scraped series, as the built-in checks select them
SERIES_LABELS = ("namespace", "pod", "container", "modeldeployment", "revision", "track")


@dataclass(frozen=True)
class MetricsEndpoint:
    """Where one revision's pods serve their metrics."""

    port: int
    path: str


def metrics_endpoint(serving: ServingSpec) -> MetricsEndpoint | None:
    """The metrics endpoint of a revision: spec.runtime.metrics over the preset; None when a
    server without a preset names no port."""
    preset = PRESETS.get(serving.model.format)
    port, path = PRESET_METRICS.get(preset.server, (None, "/metrics")) if preset else (None, "")
    named = serving.runtime.metrics
    if named is not None:
        port = named.port if named.port is not None else port
        path = named.path
    if preset is None and (named is None or named.port is None):
        return None
    return MetricsEndpoint(port=serving.runtime.port if port is None else port, path=path)


def expose_metrics(template: dict[str, Any], serving: ServingSpec, container: str) -> None:
    """Add to a pod template what a scrape needs: the `metrics` container port on `container`
    (unless the metrics share the serving port) and the port and path annotations.

    The one place the serving pod template changes for scraping (a new pod shape).
    """
    endpoint = metrics_endpoint(serving)
    if endpoint is None:
        return
    annotations = template.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[METRICS_PORT_ANNOTATION] = str(endpoint.port)
    annotations[METRICS_PATH_ANNOTATION] = endpoint.path
    for spec in template["spec"]["containers"]:
        if spec["name"] != container:
            continue
        ports = spec.setdefault("ports", [])
        if all(p.get("containerPort") != endpoint.port for p in ports):
            ports.append(
                {"name": METRICS_PORT_NAME, "containerPort": endpoint.port, "protocol": "TCP"}
            )


def _meta(label: str, kind: str = "label") -> str:
    """The kubernetes_sd meta label of a pod label or annotation."""
    cleaned = "".join(c if c.isalnum() else "_" for c in label)
    return f"__meta_kubernetes_pod_{kind}_{cleaned}"


def relabelings(*, plain: bool) -> list[dict[str, Any]]:
    """The relabelling of serving pods' targets, in Prometheus's own form (snake_case keys).

    `plain`: for a scrape config of one's own (namespace, pod and container are added, and only
    running pods kept, as prometheus-operator does for a PodMonitor by itself).
    """
    rules: list[dict[str, Any]] = [
        {
            "source_labels": [_meta(MANAGED_BY_LABEL)],
            "regex": MANAGED_BY,
            "action": "keep",
        },
        # every container port is a target; keep the one the pod names as its metrics port
        {
            "source_labels": ["__meta_kubernetes_pod_container_port_number"],
            "target_label": _meta(METRICS_PORT_ANNOTATION, "annotation"),
            "action": "keepequal",
        },
        {
            "source_labels": [_meta(METRICS_PATH_ANNOTATION, "annotation")],
            "regex": "(.+)",
            "target_label": "__metrics_path__",
        },
    ]
    if plain:
        rules[:0] = [
            {
                "source_labels": ["__meta_kubernetes_pod_phase"],
                "regex": "Pending|Succeeded|Failed",
                "action": "drop",
            }
        ]
        rules += [
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {
                "source_labels": ["__meta_kubernetes_pod_container_name"],
                "target_label": "container",
            },
        ]
    rules += [
        {"source_labels": [_meta(MODEL_DEPLOYMENT_LABEL)], "target_label": "modeldeployment"},
        {"source_labels": [_meta(REVISION_LABEL)], "target_label": "revision"},
    ]
    return rules


def track_relabelings(stable: str | None, canary: str | None) -> list[dict[str, Any]]:
    """Rules that label the series of the stable and canary revisions with their track (the pod
    template never carries the track, so that promotion restarts no pod)."""
    return [
        {
            "source_labels": [_meta(REVISION_LABEL)],
            "regex": revision,
            "target_label": "track",
            "replacement": track,
        }
        for track, revision in (("stable", stable), ("canary", canary))
        if revision
    ]


def scrape_config(job_name: str = "slipway-models") -> dict[str, Any]:
    """A plain Prometheus scrape config for every serving pod (what a PodMonitor amounts to,
    without the track label), as the README documents it."""
    return {
        "job_name": job_name,
        "kubernetes_sd_configs": [{"role": "pod"}],
        "relabel_configs": relabelings(plain=True),
    }
