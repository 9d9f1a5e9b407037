"""The field reference of ModelDeployment (docs/api.md), from the same schema as the CRD."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from slipway.crd import openapi_schema

HEADER = (
    "<!-- Generated from the pydantic models in operator/slipway/api/ by `make crds`. "
    "Do not edit. -->\n\n# ModelDeployment v1alpha1: field reference\n\n"
    "Every field of `spec` and `status`, with its type, default and meaning. The same schema "
    "is the CRD: the API server enforces the types, enums, bounds and the cross-field rules "
    "listed at the end.\n"
)


def _type_of(node: Mapping[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    if node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
        return "object (Kubernetes)"
    kind = str(node.get("type", "object"))
    if kind == "array":
        return f"[]{_type_of(node.get('items') or {})}"
    if kind == "object" and "additionalProperties" in node:
        return f"map[string]{_type_of(node['additionalProperties'])}"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    return kind


def _rows(node: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, str, str, str]]:
    required = set(node.get("required") or ())
    for name, child in (node.get("properties") or {}).items():
        path = f"{prefix}.{name}"
        default = json.dumps(child["default"]) if "default" in child else ""
        text = str(child.get("description", "")).replace("|", "\\|").replace("\n", " ")
        if name in required:
            text = f"**Required.** {text}"
        yield path, _type_of(child), default, text
        inner = child.get("items") if child.get("type") == "array" else child
        if inner and inner.get("properties"):
            yield from _rows(inner, f"{path}[]" if child.get("type") == "array" else path)


def _rules(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
    for rule in node.get("x-kubernetes-validations") or ():
        yield path, str(rule.get("message", rule["rule"]))
    for name, child in (node.get("properties") or {}).items():
        inner = child.get("items") if child.get("type") == "array" else child
        if inner:
            yield from _rules(inner, f"{path}.{name}")


def api_reference() -> str:
    """docs/api.md: a table of every spec and status field, then the cross-field rules."""
    schema = openapi_schema()
    out = [HEADER]
    for top in ("spec", "status"):
        out.append(f"\n## {top}\n\n| field | type | default | description |\n|---|---|---|---|")
        out.extend(
            f"| `{path}` | {kind} | {f'`{default}`' if default else ''} | {text} |"
            for path, kind, default, text in _rows(schema["properties"][top], top)
        )
    out.append("\n## Cross-field rules (CEL, enforced by the API server)\n")
    out.extend(f"- `{path}`: {message}" for path, message in _rules(schema, "self"))
    return "\n".join(out) + "\n"
