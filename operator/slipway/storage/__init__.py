"""Model storage: `slipway fetch`, which downloads a model for the serving pod's init container.

Needs the `storage` extra (obstore, fsspec, huggingface_hub) at run time; the operator does not.
"""

from slipway.storage.command import add_fetch_arguments, fetch_main, run_fetch
from slipway.storage.errors import ExitCode, FetchError
from slipway.storage.fetch import FetchOptions, FetchResult, fetch_model
from slipway.storage.uri import (
    FETCHED_SCHEMES,
    MOUNTED_SCHEMES,
    HttpUri,
    HubUri,
    ModelUri,
    ObjectStoreUri,
    needs_fetch,
    parse_model_uri,
)

__all__ = [
    "FETCHED_SCHEMES",
    "MOUNTED_SCHEMES",
    "ExitCode",
    "FetchError",
    "FetchOptions",
    "FetchResult",
    "HttpUri",
    "HubUri",
    "ModelUri",
    "ObjectStoreUri",
    "add_fetch_arguments",
    "fetch_main",
    "fetch_model",
    "needs_fetch",
    "parse_model_uri",
    "run_fetch",
]
