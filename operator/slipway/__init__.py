"""Slipway: a Kubernetes operator that serves ML models."""

__version__ = "0.1.0"

GROUP = "serving.slipway.dev"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
FIELD_MANAGER = "slipway"
