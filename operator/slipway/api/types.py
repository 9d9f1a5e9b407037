"""Shared field types and the base model of the API.

Every model of the API is written in snake_case in Python and camelCase on the wire (the
Kubernetes convention), and rejects unknown fields, so that a typo is an error, not a silent no-op.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Base of every API model: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it (camelCase, no unset optionals)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _int_or_string(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected an integer or a string, got a boolean")
    return value


_QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

# A Kubernetes quantity ("500m", "2Gi", 1): int-or-string on the wire.
Quantity = Annotated[
    int | str,
    BeforeValidator(_int_or_string),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": _QUANTITY_PATTERN,
        }
    ),
]

# An absolute count or a percentage ("25%"), as in a Deployment's maxSurge.
IntOrPercent = Annotated[
    int | str,
    BeforeValidator(_int_or_string),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": r"^[0-9]+%?$",
        }
    ),
]

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# A Go-style duration: "30s", "2m", "1h30m", "250ms".
Duration = Annotated[str, Field(pattern=DURATION_PATTERN)]


def duration_seconds(text: str) -> float:
    """Seconds in a Go-style duration such as "1h30m" (validated by the schema already)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 2m or 1h30m")
    return sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))


# An embedded Kubernetes object (a toleration, an affinity, an EnvVar): the API server validates
# it when the pod is created; the CRD keeps it whole.
KubeObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


def _named(item: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(item.get("name"), str) or not item["name"]:
        raise ValueError("needs a name (a non-empty string)")
    return item


# An embedded Kubernetes object that its list knows by name (an EnvVar): the CRD says so, because a
# map key must be in every item.
NamedKubeObject = Annotated[
    dict[str, Any],
    AfterValidator(_named),
    WithJsonSchema(
        {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "required": ["name"],
            "properties": {
                "name": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Name of the item, unique in its list.",
                }
            },
        }
    ),
]

Item = TypeVar("Item")


def _names_unique(items: list[Any]) -> list[Any]:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        name = item["name"] if isinstance(item, dict) else item.name
        if name in seen:
            raise ValueError(
                f'duplicate name "{name}" in entries {seen[name]} and {index}: each name once'
            )
        seen[name] = index
    return items


# A list that a pod template keys by its items' names (env, imagePullSecrets): server-side apply
# fails for good on two items of one name, so the API server refuses them first.
KeyedByName = Annotated[
    list[Item],
    AfterValidator(_names_unique),
    Field(
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
    ),
]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
