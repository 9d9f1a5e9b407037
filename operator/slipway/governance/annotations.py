"""The annotations of governance: what a user asks for, and the stamps saying who asked.

A user (or `kubectl slipway`) writes `action` or `undo-to`; the chart's MutatingAdmissionPolicy
writes the stamps (`*-by`, `applied-with`) from the request itself and overwrites any value a user
sets by hand, and its ValidatingAdmissionPolicy asks the authorizer for the verb of each action
(charts/slipway/templates/governance.yaml). The operator reads the stamps with what it consumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from slipway import GROUP
from slipway.rollout.model import Action

ACTION = f"{GROUP}/action"
ACTION_BY = f"{GROUP}/action-by"
UNDO_TO = f"{GROUP}/undo-to"
UNDO_BY = f"{GROUP}/undo-by"
APPLIED_BY = f"{GROUP}/applied-by"
APPLIED_WITH = f"{GROUP}/applied-with"
# the stamps the admission policy writes: nobody else can
STAMPS = (ACTION_BY, UNDO_BY, APPLIED_BY, APPLIED_WITH)
# what the operator removes once it has acted on it
CONSUMED = (ACTION, ACTION_BY, UNDO_TO, UNDO_BY)

UNDO_VERB = "undo"
# the RBAC verb on modeldeployments each action needs
ACTION_VERBS: dict[Action, str] = {
    Action.PROMOTE: "promote",
    Action.PROMOTE_FULL: "promote",
    Action.ABORT: "abort",
    Action.RETRY: "retry",
    Action.PAUSE: "pause",
    Action.RESUME: "resume",
}
VERBS = (*dict.fromkeys(ACTION_VERBS.values()), UNDO_VERB)

# field managers and ServiceAccount namespaces of the GitOps controllers people run
GITOPS_MANAGERS = {
    "argocd-controller": "Argo CD",
    "argocd-application-controller": "Argo CD",
    "kustomize-controller": "Flux",
    "helm-controller": "Flux",
    "fleetagent": "Fleet",
}
GITOPS_NAMESPACES = {"argocd": "Argo CD", "flux-system": "Flux", "cattle-fleet-system": "Fleet"}


@dataclass(frozen=True)
class Stamps:
    """Who asked for what, as the admission policy stamped it (empty: no stamp)."""

    action_by: str = ""
    undo_to: str = ""  # the revision `kubectl slipway undo` went back to
    undo_by: str = ""
    applied_by: str = ""  # who last changed the serving spec
    applied_with: str = ""  # with which field manager


def stamps_of(annotations: Mapping[str, str]) -> Stamps:
    return Stamps(
        action_by=annotations.get(ACTION_BY, ""),
        undo_to=annotations.get(UNDO_TO, ""),
        undo_by=annotations.get(UNDO_BY, ""),
        applied_by=annotations.get(APPLIED_BY, ""),
        applied_with=annotations.get(APPLIED_WITH, ""),
    )


def consumed_keys(annotations: Mapping[str, str]) -> list[str]:
    """The annotations of `CONSUMED` that are set: removed together once read."""
    return [key for key in CONSUMED if key in annotations]


def gitops_tool(user: str, manager: str) -> str | None:
    """The GitOps tool behind a write, by its field manager or its ServiceAccount's namespace."""
    if manager in GITOPS_MANAGERS:
        return GITOPS_MANAGERS[manager]
    prefix = "system:serviceaccount:"
    if user.startswith(prefix):
        namespace = user[len(prefix) :].split(":", 1)[0]
        return GITOPS_NAMESPACES.get(namespace)
    return None


def describe_actor(user: str | None, manager: str | None = None) -> str:
    """A person, or a GitOps controller said as such: 'alice', 'Argo CD (system:service…)'."""
    if not user:
        return "unknown (no admission stamp)"
    tool = gitops_tool(user, manager or "")
    return f"{tool} sync ({user})" if tool else user
