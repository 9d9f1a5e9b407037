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

_COUNT_OR_PERCENT = r"^[0-9]+%?$"


def _count_or_percent(value: int | str) -> int | str:
    negative = isinstance(value, int) and value < 0
    if negative or (isinstance(value, str) and not re.fullmatch(_COUNT_OR_PERCENT, value)):
        raise ValueError("must be a number of pods, 0 or more, or a percentage such as 25%")
    return value


# An absolute count or a percentage ("25%"), as in a Deployment's maxSurge; never negative (the
# minimum applies to a number, the pattern to a string).
IntOrPercent = Annotated[
    int | str,
    BeforeValidator(_int_or_string),
    AfterValidator(_count_or_percent),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": 0,
            "pattern": _COUNT_OR_PERCENT,
        }
    ),
]

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DURATION_MAX_LENGTH = 64
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# The longest wait a spec may ask for (a duration, or a field in seconds): longer is a typo, and
# the moment it ends must fit in a date.
MAX_WAIT = "8760h"
MAX_WAIT_SECONDS = 365 * 24 * 3600
_MAX_WAIT_MESSAGE = f"must be at most {MAX_WAIT} (a year)"

# A Duration whose parts have at most 5 digits of hours, 7 of minutes, 9 of seconds or 11 of
# milliseconds (leading zeros aside) is within Go's time.Duration (292 years) at any length up to
# DURATION_MAX_LENGTH, and every wait of up to a year can be written so. CEL's duration() fails the
# whole rule on an overflow, with an evaluation error instead of the rule's message.
DURATION_IN_CEL_RANGE = (
    "^(0*[0-9]{1,5}([.][0-9]+)?h|0*[0-9]{1,7}([.][0-9]+)?m|0*[0-9]{1,9}([.][0-9]+)?s"
    "|0*[0-9]{1,11}([.][0-9]+)?ms)+$"
)


def cel_duration_in_range(expr: str) -> str:
    """CEL that holds when the Duration `expr` can be given to duration() without overflow."""
    return f"{expr}.matches('{DURATION_IN_CEL_RANGE}')"


def duration_seconds(text: str) -> float:
    """Seconds in a Go-style duration such as "1h30m" (validated by the schema already)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 2m or 1h30m")
    return sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))


def _at_most_a_year(text: str) -> str:
    if duration_seconds(text) > MAX_WAIT_SECONDS:
        raise ValueError(_MAX_WAIT_MESSAGE)
    return text


# A Go-style duration: "30s", "2m", "1h30m", "250ms"; at most a year.
Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        max_length=DURATION_MAX_LENGTH,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"{cel_duration_in_range('self')} "
                    f"&& duration(self) <= duration('{MAX_WAIT}')",
                    "message": _MAX_WAIT_MESSAGE,
                }
            ]
        },
    ),
    AfterValidator(_at_most_a_year),
]


# An embedded Kubernetes object (a toleration, an affinity, a security context): the API server
# validates it when the pod is created; the CRD keeps it whole.
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
