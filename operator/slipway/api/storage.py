"""Where files come from: the URI schemes and the fetch settings shared by a model and an
evaluation set (kept apart so that the spec and the evaluation step can both use them)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from slipway.api.types import ApiModel, Quantity

URI_SCHEMES = ("pvc", "s3", "gs", "hf", "http", "https", "oci")
URI_PATTERN = "^(" + "|".join(URI_SCHEMES) + ")://.+"
URI_MESSAGE = "uri must start with one of " + ", ".join(f"{s}://" for s in URI_SCHEMES)

# a pvc:// uri names a claim (a DNS subdomain), then a path that stays in it
PVC_URI_PATTERN = "^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/.*)?$"
PVC_URI_MESSAGE = (
    "a pvc:// uri names a claim (pvc://CLAIM/path/in/claim) and never leaves it with '..'"
)
PVC_URI_RULE: dict[str, Any] = {
    "rule": "!self.uri.startsWith('pvc://') || ("
    f"self.uri.matches('{PVC_URI_PATTERN}')"
    " && !self.uri.substring(6).split('/').exists(s, s == '..'))",
    "message": PVC_URI_MESSAGE,
    "fieldPath": ".uri",
    "reason": "FieldValueInvalid",
}


def pvc_uri_problem(uri: str) -> str | None:
    """What PVC_URI_RULE says of `uri`, or None when it holds."""
    if not uri.startswith("pvc://"):
        return None
    if re.fullmatch(PVC_URI_PATTERN, uri) is None or ".." in uri[len("pvc://") :].split("/"):
        return PVC_URI_MESSAGE
    return None


class ModelStorage(ApiModel):
    """How the model files are fetched (s3, gs, hf, http(s) URIs)."""

    secret_name: str | None = Field(
        default=None,
        description="Secret with the credentials for the model store, given to the fetcher as "
        "environment variables (AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS, HF_TOKEN, ...). "
        "Empty: the pod's own workload identity.",
    )
    size_limit: Quantity = Field(
        default="20Gi",
        description="Size limit of the volume the model is downloaded into.",
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[a-f0-9]{64}$",
        description="Expected sha256 of the downloaded model (a file, or the sorted file tree); "
        "a mismatch fails the pod with a clear message.",
    )
