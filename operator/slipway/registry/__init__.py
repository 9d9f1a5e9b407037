"""A model registry as the source of versions: models:/NAME@ALIAS and models:/NAME/VERSION,
resolved through MLflow's REST API (README: Model registry)."""

from slipway.registry.mlflow import RegistryError, Resolved, auth_headers, resolve
from slipway.registry.reference import RegistryRef, fetchable, parse_registry_uri
from slipway.registry.report import MODEL_RESOLVED, Outcome, outcome, report, resolved
from slipway.registry.resolver import Lookup, RegistryResolver

__all__ = [
    "MODEL_RESOLVED",
    "Lookup",
    "Outcome",
    "RegistryError",
    "RegistryRef",
    "RegistryResolver",
    "Resolved",
    "auth_headers",
    "fetchable",
    "outcome",
    "parse_registry_uri",
    "report",
    "resolve",
    "resolved",
]
