"""What `slipway fetch` tells the operator: the digest of the model it placed, as the init
container's termination message (the kubelet copies the file at /dev/termination-log into the
pod's status, `initContainerStatuses[].state.terminated.message`, at most 4096 bytes).

Pure, and free of third-party imports: the operator parses what the fetcher writes.
"""

from __future__ import annotations

import json
import re

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def fetch_report(sha256: str, uri: str) -> str:
    """The termination message of a fetch that placed a model with this digest."""
    return json.dumps({"modelDigest": f"sha256:{sha256}", "uri": uri[:2048]}, sort_keys=True)


def digest_in_report(message: str | None) -> str | None:
    """sha256:HEX from a fetch's termination message; None for anything else (an older fetcher,
    a failure's one-line message, a truncated message)."""
    if not message:
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    digest = data.get("modelDigest") if isinstance(data, dict) else None
    return digest if isinstance(digest, str) and DIGEST.match(digest) else None
