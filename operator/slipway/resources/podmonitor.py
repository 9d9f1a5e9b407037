"""The PodMonitor of a ModelDeployment (prometheus-operator, monitoring.coreos.com/v1). Pure."""

from __future__ import annotations

from typing import Any

from slipway.api import ModelDeployment
from slipway.resources.metadata import child_labels, child_metadata, selector_labels
from slipway.resources.names import service_name
from slipway.resources.scraping import relabelings, track_relabelings

POD_MONITOR_API_VERSION = "monitoring.coreos.com/v1"
POD_MONITOR_KIND = "PodMonitor"


def desired_pod_monitor(
    md: ModelDeployment, stable: str | None, canary: str | None
) -> dict[str, Any] | None:
    """PodMonitor `<name>` scraping every serving pod of `md`, its series labelled with
    namespace, pod, container, modeldeployment, revision and the track of the `stable` and
    `canary` revisions; None when spec.monitoring.podMonitor is off."""
    wanted = md.spec.monitoring.pod_monitor
    if not wanted.enabled:
        return None
    labels = {**wanted.labels, **child_labels(md, md.model_name, md.spec.model.version)}
    endpoint: dict[str, Any] = {
        "relabelings": [
            _camel(rule) for rule in relabelings(plain=False) + track_relabelings(stable, canary)
        ]
    }
    if wanted.interval:
        endpoint["interval"] = wanted.interval
    return {
        "apiVersion": POD_MONITOR_API_VERSION,
        "kind": POD_MONITOR_KIND,
        "metadata": child_metadata(md, service_name(md.name), labels),
        "spec": {
            "selector": {"matchLabels": selector_labels(md)},
            "podMetricsEndpoints": [endpoint],
        },
    }


_CAMEL = {
    "source_labels": "sourceLabels",
    "target_label": "targetLabel",
    "regex": "regex",
    "replacement": "replacement",
    "action": "action",
}


def _camel(rule: dict[str, Any]) -> dict[str, Any]:
    """A relabel rule as prometheus-operator spells it."""
    return {_CAMEL[key]: value for key, value in rule.items()}
