"""The weights of a Gateway API HTTPRoute: the only part of the route Slipway owns.

The user owns the HTTPRoute (hostnames, matches, filters, other backends); Slipway only sets
the weights of its backendRefs to Services `<name>-stable` and `<name>-canary`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from slipway.api import ModelDeployment
from slipway.resources.names import CANARY, STABLE, service_name


class HTTPRouteNotWired(ValueError):
    """The HTTPRoute has no backendRef to Service `<name>-stable`, so no split is possible."""


def httproute_weights_patch(
    route: Mapping[str, Any],
    md: ModelDeployment,
    stable_weight: int,
    canary_weight: int,
    canary_port: int | None = None,
    stable_port: int | None = None,
) -> list[dict[str, Any]] | None:
    """The route's `spec.rules` with the stable and canary weights set; None if they are set.

    Every rule with a backendRef to `<name>-stable` gets the weights; one without a canary
    backendRef gets one (port `canary_port`, the port of Service `<name>-canary`; default
    spec.runtime.port). The two backendRefs' ports follow their Services' (`stable_port`,
    `canary_port`, when given): a revision that listens on another port moves its Service, and
    a route left on the old port would send its share nowhere. Everything else is copied as it
    is, since a merge patch replaces the whole `rules` list: send it with the route's
    resourceVersion, so that an edit made since the route was read fails the patch (409)
    instead of being undone.
    Raises HTTPRouteNotWired when no rule has a backendRef to `<name>-stable`.
    """
    namespace = route.get("metadata", {}).get("namespace", md.namespace)
    stable, canary = service_name(md.name, STABLE), service_name(md.name, CANARY)
    rules = copy.deepcopy(route.get("spec", {}).get("rules") or [])
    wired = False
    for rule in rules:
        refs = rule.get("backendRefs") or []
        if not any(_refers_to(ref, stable, namespace) for ref in refs):
            continue
        wired = True
        if not any(_refers_to(ref, canary, namespace) for ref in refs):
            refs.append({"name": canary, "port": canary_port or md.spec.runtime.port})
        for ref in refs:
            if _refers_to(ref, stable, namespace):
                ref["weight"] = stable_weight
                if stable_port is not None:
                    ref["port"] = stable_port
            elif _refers_to(ref, canary, namespace):
                ref["weight"] = canary_weight
                if canary_port is not None:
                    ref["port"] = canary_port
        rule["backendRefs"] = refs
    if not wired:
        name = route.get("metadata", {}).get("name", "")
        raise HTTPRouteNotWired(
            f"HTTPRoute {name!r} has no backendRef to Service {stable!r}: add "
            f"{{name: {stable}, port: {md.spec.runtime.port}}} to the backendRefs of the rule "
            "that serves the model"
        )
    return None if rules == route["spec"]["rules"] else rules


def _refers_to(ref: dict[str, Any], service: str, route_namespace: str) -> bool:
    """True when `ref` names Service `service` in the route's namespace."""
    return (
        ref.get("name") == service
        and ref.get("group", "") == ""
        and ref.get("kind", "Service") == "Service"
        and ref.get("namespace", route_namespace) == route_namespace
    )
