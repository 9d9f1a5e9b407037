"""models:/ uris: a version of a model in a registry, by alias or by number. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from slipway.api.spec import REGISTRY_URI

# what `slipway fetch` can download a version's artifacts from
FETCHABLE_SCHEMES = ("s3", "gs", "http", "https", "hf")


@dataclass(frozen=True)
class RegistryRef:
    """models:/NAME@ALIAS (follows the alias) or models:/NAME/VERSION."""

    uri: str
    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return self.uri


def parse_registry_uri(uri: str) -> RegistryRef:
    """Parse spec.model.uri; a ValueError names the field and what would be right."""
    if not re.match(REGISTRY_URI, uri):
        raise ValueError(
            f"spec.model.uri {uri!r} must be models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return RegistryRef(uri=uri, name=name, alias=alias)
    name, version = rest.rsplit("/", 1)
    return RegistryRef(uri=uri, name=name, version=version)


def fetchable(artifact_uri: str) -> bool:
    """Whether `slipway fetch` can download from this artifact location."""
    return artifact_uri.partition("://")[0].lower() in FETCHABLE_SCHEMES
