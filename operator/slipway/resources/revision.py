"""The revision: a short hash of everything that shapes a serving pod."""

from __future__ import annotations

import hashlib
import json

from slipway.api import ServingSpec

REVISION_LENGTH = 10


def revision_of(serving: ServingSpec) -> str:
    """10 lowercase hex characters of the sha256 of `serving` as canonical JSON.

    Canonical: camelCase keys, sorted, no whitespace, unset optionals and default values left
    out, so a field added to the API later (with a default) does not roll every model on upgrade.
    replicas, autoscaling and rollout are not in a ServingSpec, so they never change it.
    """
    fields = serving.model_dump(
        by_alias=True, exclude_none=True, exclude_defaults=True, mode="json"
    )
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]
