"""Slipway: a Kubernetes operator that serves ML models."""

__version__ = "0.1.0"

GROUP = "serving.slipway.dev"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
FIELD_MANAGER = "slipway"
# the actions the plugin writes and the operator consumes (promote, abort, ...)
ACTION_ANNOTATION = f"{GROUP}/action"
# the image of Slipway itself, run by the model-fetching init containers
DEFAULT_OPERATOR_IMAGE = f"ghcr.io/slipway-dev/slipway:{__version__}"
