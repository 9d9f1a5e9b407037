"""MLflow's model registry, through its REST API (no mlflow dependency: three GETs).

- models:/NAME@ALIAS: `GET /api/2.0/mlflow/registered-models/alias?name=NAME&alias=ALIAS`
- models:/NAME/VERSION: `GET /api/2.0/mlflow/model-versions/get?name=NAME&version=VERSION`
- then `GET /api/2.0/mlflow/model-versions/get-download-uri?name=NAME&version=V`: where the
  version's files are.

The tracking URI is untrusted input, like a Prometheus address: every request is bounded in time
and size, redirects are not followed, and what comes back is described in Slipway's words (MLflow's
own error message goes to the operator's log only).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slipway.registry.reference import RegistryRef, fetchable

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
MAX_ANSWER_BYTES = 1024 * 1024
# an error code as said in a condition: letters, digits and underscores, this many at most
_ERROR_CODE = re.compile(r"[^A-Za-z0-9_]")
MAX_ERROR_CODE = 64
TOKEN = "MLFLOW_TRACKING_TOKEN"
USERNAME = "MLFLOW_TRACKING_USERNAME"
PASSWORD = "MLFLOW_TRACKING_PASSWORD"


@dataclass(frozen=True)
class Resolved:
    """A version of a registered model and where its files are."""

    version: str
    artifact_uri: str


class RegistryError(Exception):
    """The registry could not resolve a reference; `reason` is a condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def auth_headers(credentials: Mapping[str, str]) -> dict[str, str]:
    """The Authorization header MLflow's clients send for these credentials (a bearer token, or
    basic auth); none without them."""
    if credentials.get(TOKEN):
        return {"Authorization": f"Bearer {credentials[TOKEN]}"}
    if credentials.get(USERNAME):
        pair = f"{credentials[USERNAME]}:{credentials.get(PASSWORD, '')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {}


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # an answer that redirects is an answer we do not follow


_OPENER = urllib.request.build_opener(_NoRedirects)


def resolve(
    ref: RegistryRef,
    tracking_uri: str,
    credentials: Mapping[str, str],
    timeout: float = TIMEOUT_SECONDS,
) -> Resolved:
    """The version `ref` names now, and its artifact location; RegistryError saying why not."""
    headers = auth_headers(credentials)
    if ref.alias is not None:
        found = _get(
            tracking_uri,
            "registered-models/alias",
            {"name": ref.name, "alias": ref.alias},
            headers,
            timeout,
            missing=(
                "AliasNotFound",
                f"{ref.uri}: the registry has no alias {ref.alias!r} of a model {ref.name!r}",
            ),
        )
    else:
        found = _get(
            tracking_uri,
            "model-versions/get",
            {"name": ref.name, "version": ref.version or ""},
            headers,
            timeout,
            missing=(
                "VersionNotFound",
                f"{ref.uri}: the registry has no version {ref.version} of a model {ref.name!r}",
            ),
        )
    version = str((found.get("model_version") or {}).get("version") or "")
    if not version:
        raise RegistryError("RegistryUnreadable", f"{ref.uri}: the answer names no version")
    where = _get(
        tracking_uri,
        "model-versions/get-download-uri",
        {"name": ref.name, "version": version},
        headers,
        timeout,
        missing=("VersionNotFound", f"{ref.uri}: version {version} has no artifacts"),
    )
    artifact_uri = str(where.get("artifact_uri") or "")
    if not fetchable(artifact_uri):
        raise RegistryError(
            "UnsupportedArtifactLocation",
            f"{ref.uri} is version {version}, whose files are at {artifact_uri[:200]!r}: "
            "slipway fetch reads s3://, gs://, http(s):// and hf:// locations; register the "
            "version from such a location (or run the tracking server with "
            "--no-serve-artifacts and an s3:// or gs:// artifact root)",
        )
    return Resolved(version=version, artifact_uri=artifact_uri)


def _get(
    base: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    timeout: float,
    missing: tuple[str, str],
) -> dict[str, Any]:
    url = f"{base.rstrip('/')}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    where = f"MLflow at {base}"
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body = response.read(MAX_ANSWER_BYTES + 1)
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read(MAX_ANSWER_BYTES + 1), error.code
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise RegistryError("RegistryUnavailable", f"{where} did not answer: {reason}") from None
    if len(body) > MAX_ANSWER_BYTES:
        raise RegistryError("RegistryUnreadable", f"{where}: the answer is over 1 MiB")
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise RegistryError(
            "RegistryUnreadable", f"{where} answered HTTP {status} with something other than JSON"
        )
    if 200 <= status <= 299:
        return data
    # MLflow's codes are words such as RESOURCE_DOES_NOT_EXIST: anything else a server sends
    # (it ends up in a condition and an Event) is cut to that
    code = _ERROR_CODE.sub("", str(data.get("error_code") or ""))[:MAX_ERROR_CODE]
    said = str(data.get("message") or "")
    log.info("%s: GET %s: HTTP %s %s: %s", where, path, status, code, said)
    # MLflow says "not found" with a 404, or (an alias of a model that exists) with a 400
    if status == 404 or code == "RESOURCE_DOES_NOT_EXIST" or "not found" in said.lower():
        raise RegistryError(*missing)
    if status in (401, 403):
        raise RegistryError(
            "RegistryRefused",
            f"{where} refused the request (HTTP {status}): check registry.mlflow.secretName",
        )
    if 500 <= status <= 599:
        raise RegistryError("RegistryUnavailable", f"{where} failed (HTTP {status} {code})".strip())
    raise RegistryError("RegistryUnreadable", f"{where} answered HTTP {status} {code}".strip())
