"""The Services of a ModelDeployment: `<name>`, `<name>-stable` and `<name>-canary`."""

from __future__ import annotations

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
    version: str | None = None,
) -> dict[str, Any]:
    """Service `<name>` (track None: every serving pod, the split is the replica ratio; with a
    `revision`, that revision's pods alone: a canary evaluated before its first weight gets no
    user traffic), or `<name>-<track>` selecting the pods of `revision` only.

    The target port is the container port's name, so revisions listening on different
    ports can share Service `<name>`. Its version label is `version`, the version of the pods it
    selects when they are one revision's (the spec's otherwise): `<name>-stable` says the version
    it serves, and a new version's canary leaves it as it is.
    """
    if track is not None and revision is None:
        raise ValueError("a track Service needs its revision")
    labels = child_labels(md, md.model_name, version or md.spec.model.version, track=track)
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
