"""What a revision's pods are pinned to: the images and the generation of pod defaults.

Slipway chooses some of what is in a serving pod itself: the preset's server image, its own image
for the model-fetching init container, and defaults (probes, graceful shutdown, security
context) that get better from one release to the next. A revision records these choices when it
is created (`status.*.pinned`), and its Deployment is always rebuilt from them, so that an
operator upgrade never changes the pods of a revision that exists; only new revisions get the
new choices.

POD_SHAPE is the generation of pod defaults this operator builds new revisions with. A release that
changes what Slipway puts in a serving pod by default bumps it and keeps building the older
generations exactly as they were (resources/deployment.py). A new preset image needs no new shape:
what depends on it (the server runs as the preset's user only with the preset's image) is decided
from the pinned one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slipway import GROUP
from slipway.api import (
    HistoryEntry,
    ModelDeploymentStatus,
    RevisionPins,
    RevisionStatus,
    ServingSpec,
)
from slipway.resources.presets import PRESETS, runtime_for
from slipway.resources.storage import STORAGE_INITIALIZER, model_source

# 1: the pods of Slipway 0.1.0 (before pinning). 2 (0.2.0): preStop shutdown delay, fast probes,
# hardened security context, the runtime's metrics port and where to scrape it
# (resources/scraping.py). Bumped once per release that changes the pods, not per change.
POD_SHAPE = 2
LEGACY_POD_SHAPE = 1
# on the Deployment object (not its pods): the pod shape its template was built with
POD_SHAPE_ANNOTATION = f"{GROUP}/pod-shape"
SERVER_CONTAINER = "server"


def pins_for(serving: ServingSpec, model_name: str, operator_image: str) -> RevisionPins:
    """What this operator chooses for a new revision serving `serving`."""
    source = model_source(serving.model.uri)
    preset = PRESETS.get(serving.model.format)
    return RevisionPins(
        server_image=runtime_for(serving, model_name).image,
        preset_image=preset.image if preset else None,
        fetcher_image=operator_image if source.fetched else "",
        pod_shape=POD_SHAPE,
    )


def pins_of_deployment(deployment: Mapping[str, Any]) -> RevisionPins | None:
    """The pins a live Deployment was built with, read back from its pod template.

    For revisions recorded before pins existed: their pods stay exactly as they are. None when
    the Deployment has no server container (not one of ours).
    """
    meta = deployment.get("metadata") or {}
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    server = next(
        (c for c in pod.get("containers") or () if c.get("name") == SERVER_CONTAINER), None
    )
    if server is None or not server.get("image"):
        return None
    fetcher = next(
        (c for c in pod.get("initContainers") or () if c.get("name") == STORAGE_INITIALIZER), None
    )
    shape = (meta.get("annotations") or {}).get(POD_SHAPE_ANNOTATION, "")
    return RevisionPins(
        server_image=server["image"],
        fetcher_image=(fetcher or {}).get("image", ""),
        pod_shape=int(shape) if shape.isdigit() and int(shape) >= 1 else LEGACY_POD_SHAPE,
    )


def pin_revisions(
    status: ModelDeploymentStatus,
    model_name: str,
    live: Mapping[str, Mapping[str, Any]],
    operator_image: str,
) -> ModelDeploymentStatus:
    """`status` with every recorded revision pinned (stable, canary, history).

    A revision keeps the pins it has. One recorded before pins existed is pinned to what its live
    Deployment (`live`, by revision) runs, so that its pods stay as they are; without a Deployment
    nothing runs that could change, and it gets this operator's choices.
    """

    def pinned(revision: str, template: Mapping[str, Any] | None) -> RevisionPins | None:
        deployment = live.get(revision)
        found = pins_of_deployment(deployment) if deployment is not None else None
        if found is not None or template is None:
            return found
        return pins_for(ServingSpec.model_validate(template), model_name, operator_image)

    updated = status.model_copy(deep=True)
    entries: list[RevisionStatus | HistoryEntry] = [
        e for e in (updated.stable, updated.canary) if e is not None
    ]
    entries += updated.history
    for entry in entries:
        if entry.pinned is None:
            entry.pinned = pinned(entry.revision, entry.template)
    return updated
