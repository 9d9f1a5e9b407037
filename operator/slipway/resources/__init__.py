"""Pure builders of the children of a ModelDeployment: spec + revision in, manifests (dicts) out.

No I/O, no clock, no client: the reconcile decides what should exist and applies these with
server-side apply.
"""

from slipway.resources.deployment import desired_deployment
from slipway.resources.hpa import desired_hpa
from slipway.resources.httproute import HTTPRouteNotWired, httproute_weights_patch
from slipway.resources.metadata import (
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MODEL_DEPLOYMENT_LABEL,
    NAME_LABEL,
    REVISION_LABEL,
    TRACK_LABEL,
    VERSION_LABEL,
    child_labels,
    controlled_by,
    not_ours,
    owner_reference,
    pod_selector,
    selector_labels,
)
from slipway.resources.names import CANARY, STABLE, deployment_name, service_name
from slipway.resources.pins import POD_SHAPE, pins_for, pins_of_deployment
from slipway.resources.presets import PRESETS, RuntimePreset, probes_for, runtime_for
from slipway.resources.revision import revision_of
from slipway.resources.service import desired_service, url_for
from slipway.resources.storage import MODEL_DIR, ModelSource, model_source, storage_wiring

__all__ = [
    "CANARY",
    "INSTANCE_LABEL",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "MODEL_DEPLOYMENT_LABEL",
    "MODEL_DIR",
    "NAME_LABEL",
    "POD_SHAPE",
    "PRESETS",
    "REVISION_LABEL",
    "STABLE",
    "TRACK_LABEL",
    "VERSION_LABEL",
    "HTTPRouteNotWired",
    "ModelSource",
    "RuntimePreset",
    "child_labels",
    "controlled_by",
    "deployment_name",
    "desired_deployment",
    "desired_hpa",
    "desired_service",
    "httproute_weights_patch",
    "model_source",
    "not_ours",
    "owner_reference",
    "pins_for",
    "pins_of_deployment",
    "pod_selector",
    "probes_for",
    "revision_of",
    "runtime_for",
    "selector_labels",
    "service_name",
    "storage_wiring",
    "url_for",
]
