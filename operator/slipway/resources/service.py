"""The Services of a ModelDeployment: `<name>`, `<name>-stable` and `<name>-canary`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slipway.api import ModelDeployment
from slipway.resources.deployment import PORT_NAME
from slipway.resources.metadata import child_labels, child_metadata, selector_labels
from slipway.resources.names import service_name


def desired_service(
    md: ModelDeployment,
    track: str | None,
    revision: str | None,
    port: int,
    serves: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Service `<name>` (track None: every serving pod, the split is the replica ratio; with a
    `revision`, that revision's pods alone: a canary evaluated before its first weight gets no
    user traffic), or `<name>-<track>` selecting the pods of `revision` only.

    The target port is the container port's name, so revisions listening on different
    ports can share Service `<name>`. Its model name and version labels are those of `serves`
    (the recorded `model` of the revision it serves, as that revision's Deployment has them),
    else the spec's.
    """
    if track is not None and revision is None:
        raise ValueError("a track Service needs its revision")
    if serves is None:
        name, version = md.model_name, md.spec.model.version
    else:
        name = str(serves.get("name") or md.name)
        version = str(serves.get("version") or md.spec.model.version)
    labels = child_labels(md, name, version, track=track)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(md, service_name(md.name, track), labels),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(md, revision),
            "ports": [
                {"name": PORT_NAME, "port": port, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }


def url_for(md: ModelDeployment, port: int) -> str:
    """The in-cluster URL of the model (status.url): Service `<name>`."""
    return f"http://{service_name(md.name)}.{md.namespace}.svc.cluster.local:{port}"
