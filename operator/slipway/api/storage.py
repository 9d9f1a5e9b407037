"""Where files come from: the URI schemes and the fetch settings shared by a model and an
evaluation set (kept apart so that the spec and the evaluation step can both use them)."""

from __future__ import annotations

from pydantic import Field

from slipway.api.types import ApiModel, Quantity

URI_SCHEMES = ("pvc", "s3", "gs", "hf", "http", "https", "oci")


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
