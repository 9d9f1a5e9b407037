"""Names of the children of a ModelDeployment, and label values that Kubernetes accepts.

Service names are DNS labels (at most 63 characters) and label values are at most 63 characters,
but a ModelDeployment's name may be up to 253. A name that does not fit is cut and given a short
hash of the whole name, so it stays unique, stable and recognisable: a 70-character name `n`
gives Service `n[:48]-<8 hex>-stable`. Names that fit are used as they are.
"""

from __future__ import annotations

import hashlib
import re

STABLE = "stable"
CANARY = "canary"
TRACKS = (STABLE, CANARY)

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63

_HASH_LENGTH = 8
_NOT_IN_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]+")
_NOT_ALPHANUMERIC_AT_ENDS = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")


def fitted(name: str, suffix: str = "", limit: int = DNS_LABEL_MAX) -> str:
    """`name + suffix`, or if longer than `limit`: a cut of `name`, a hash of it, `suffix`."""
    whole = f"{name}{suffix}"
    if len(whole) <= limit:
        return whole
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_LENGTH]
    head = name[: limit - len(suffix) - _HASH_LENGTH - 1].rstrip("-.")
    return f"{head}-{digest}{suffix}"


def label_value(text: str) -> str:
    """`text` as a valid label value: invalid characters become `-`, at most 63 characters."""
    cleaned = _NOT_ALPHANUMERIC_AT_ENDS.sub("", _NOT_IN_LABEL_VALUE.sub("-", text))
    return fitted(cleaned, limit=LABEL_VALUE_MAX)


def check_track(track: str) -> str:
    """`track`, once it is known to be stable or canary."""
    if track not in TRACKS:
        raise ValueError(f"track must be one of {', '.join(TRACKS)}, got {track!r}")
    return track


def deployment_name(name: str, revision: str) -> str:
    """The Deployment of one revision: `<name>-<revision>`."""
    return fitted(name, f"-{revision}", DNS_SUBDOMAIN_MAX)


def service_name(name: str, track: str | None = None) -> str:
    """`<name>` (every serving pod), `<name>-stable` or `<name>-canary` (contract names)."""
    suffix = "" if track is None else f"-{check_track(track)}"
    return fitted(name, suffix, DNS_LABEL_MAX)
