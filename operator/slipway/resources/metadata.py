"""Labels, selectors and owner references that every child of a ModelDeployment carries.

The label keys are contract (DESIGN.md section 1): dashboards, analysis queries and users select
pods by them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slipway import GROUP, KIND, VERSION
from slipway.api import ModelDeployment
from slipway.resources.names import check_track, label_value

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
VERSION_LABEL = "app.kubernetes.io/version"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MODEL_DEPLOYMENT_LABEL = f"{GROUP}/modeldeployment"
REVISION_LABEL = f"{GROUP}/revision"
TRACK_LABEL = f"{GROUP}/track"
MANAGED_BY = "slipway"


def selector_labels(md: ModelDeployment, revision: str | None = None) -> dict[str, str]:
    """Labels that select the serving pods of `md`, or of one revision of it."""
    labels = {MODEL_DEPLOYMENT_LABEL: label_value(md.name)}
    if revision is not None:
        labels[REVISION_LABEL] = revision
    return labels


def pod_selector(md: ModelDeployment) -> str:
    """The label selector of every serving pod, as a string (status.selector, for scale)."""
    return ",".join(f"{key}={value}" for key, value in selector_labels(md).items())


def child_labels(
    md: ModelDeployment,
    model_name: str,
    version: str,
    revision: str | None = None,
    track: str | None = None,
) -> dict[str, str]:
    """The contract labels of a child; revision and track only for what belongs to one."""
    labels = {
        NAME_LABEL: label_value(model_name),
        INSTANCE_LABEL: label_value(md.name),
        VERSION_LABEL: label_value(version),
        MANAGED_BY_LABEL: MANAGED_BY,
        **selector_labels(md, revision),
    }
    if track is not None:
        labels[TRACK_LABEL] = check_track(track)
    return labels


def owner_reference(md: ModelDeployment) -> dict[str, Any]:
    """The reference that lets the garbage collector delete a child with its ModelDeployment."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": md.name,
        "uid": md.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(md: ModelDeployment, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """Object metadata of a child named `name`, owned by `md`, in its namespace."""
    return {
        "name": name,
        "namespace": md.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(md)],
    }


def _controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or ()
    return next((r for r in refs if r.get("controller")), None)


def controlled_by(obj: Mapping[str, Any], md: ModelDeployment) -> bool:
    """`obj`'s controller is `md` (this one, by uid): the only children Slipway deletes."""
    controller = _controller(obj)
    return (
        controller is not None
        and controller.get("kind") == KIND
        and controller.get("uid") == md.metadata.uid
    )


def not_ours(obj: Mapping[str, Any], md: ModelDeployment) -> str | None:
    """Why an object that exists under a child's name is not `md`'s to write (None: it is).

    Ours: its controller is `md` (this one, by uid: not an earlier ModelDeployment of the same
    name, nor another whose children's names are the same, `a-canary` and `a`'s canary), or it
    has no controller and Slipway's labels for `md` (a child orphaned by `kubectl delete
    --cascade=orphan`, adopted as Kubernetes' controllers adopt theirs). Anything else belongs
    to another owner or to a user: Slipway never takes it over.
    """
    if controlled_by(obj, md):
        return None
    controller = _controller(obj)
    if controller is not None:
        kind, name, uid = controller.get("kind"), controller.get("name"), controller.get("uid")
        return (
            f"it exists and is controlled by {kind} {name!r} (uid {uid}), not by this "
            "ModelDeployment: Slipway does not take over another owner's object"
        )
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(
        MODEL_DEPLOYMENT_LABEL
    ) == label_value(md.name):
        return None
    return (
        "it exists and is not Slipway's (no controller, no Slipway labels for this "
        "ModelDeployment): Slipway leaves it as it is; delete or rename it, or rename the "
        "ModelDeployment"
    )
