"""What a registry's answer means for a ModelDeployment. Pure.

- `outcome`: from the latest answer (or error) and what status recorded, what serves: the version
  just resolved, or the one resolved last while the registry cannot answer (what serves is never
  touched by a registry that is down), or nothing yet.
- `resolved`: the ModelDeployment as the rollout core sees it: spec.model at that version and
  artifact location, so that the revision is computed from them (moving the alias makes a new
  revision, with no write to spec).
- `report`: the decision with status.registry, the ModelResolved condition (its one writer), the
  registry uri on the revision it made, an Event when the answer changes, and the next poll.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from slipway.api import Condition, ModelDeployment, ModelDeploymentStatus, RegistryResolution
from slipway.registry.mlflow import RegistryError, Resolved
from slipway.registry.resolver import Lookup
from slipway.rollout.model import Decision, Event

MODEL_RESOLVED = "ModelResolved"
# a poll already due asks again after this long (the lookup is on its way)
MIN_REQUEUE_SECONDS = 1.0


@dataclass(frozen=True)
class Outcome:
    """What serves, and what the ModelResolved condition says."""

    uri: str
    resolution: RegistryResolution | None  # None: nothing resolved yet
    status: str  # of the condition: True, False, or "" while the first answer is on its way
    reason: str
    message: str
    next_check: dt.datetime

    @property
    def pending(self) -> bool:
        return self.status == ""


def outcome(md: ModelDeployment, lookup: Lookup, stamp: str) -> Outcome:
    uri = md.spec.model.uri
    recorded = md.status.registry if md.status.registry and md.status.registry.uri == uri else None
    answer = lookup.answer
    if isinstance(answer, Resolved):
        same = recorded is not None and (recorded.version, recorded.artifact_uri) == (
            answer.version,
            answer.artifact_uri,
        )
        resolution = (
            recorded
            if same and recorded is not None
            else RegistryResolution(
                uri=uri,
                version=answer.version,
                artifact_uri=answer.artifact_uri,
                resolved_at=stamp,
            )
        )
        message = f"{uri} is version {answer.version}, at {answer.artifact_uri}"
        return Outcome(uri, resolution, "True", "Resolved", message, lookup.next_check)
    if isinstance(answer, RegistryError):
        if recorded is not None:
            kept = f"; version {recorded.version} (resolved {recorded.resolved_at}) keeps serving"
        else:
            kept = "; nothing is served until it resolves"
        return Outcome(
            uri, recorded, "False", answer.reason, answer.message + kept, lookup.next_check
        )
    return Outcome(uri, recorded, "", "", "", lookup.next_check)


def resolved(md: ModelDeployment, resolution: RegistryResolution) -> ModelDeployment:
    """`md` with spec.model at the resolved version and artifact location (what its pods fetch);
    the registry settings go, since they shape no pod."""
    model = md.spec.model.model_copy(
        update={"uri": resolution.artifact_uri, "version": resolution.version, "registry": None}
    )
    return md.model_copy(update={"spec": md.spec.model_copy(update={"model": model})})


def report(
    before: ModelDeploymentStatus,
    decision: Decision,
    found: Outcome | None,
    revision: str,
    now: dt.datetime,
    stamp: str,
) -> Decision:
    """`decision` with what the registry said recorded."""
    status = decision.status.model_copy(deep=True)
    old = next((c for c in before.conditions if c.type == MODEL_RESOLVED), None)
    status.conditions = [c for c in status.conditions if c.type != MODEL_RESOLVED]
    status.registry = found.resolution if found is not None else None
    if found is None:
        return dataclasses.replace(decision, status=status)
    for entry in (status.stable, status.canary, *status.history):
        if entry is not None and entry.revision == revision and entry.registry_uri is None:
            entry.registry_uri = found.uri
    events = list(decision.events)
    if found.pending:
        if old is not None:
            status.conditions.append(old)
    else:
        changed = old is None or old.status != found.status
        status.conditions.append(
            Condition(
                type=MODEL_RESOLVED,
                status=found.status,
                reason=found.reason,
                message=found.message,
                last_transition_time=stamp if changed or old is None else old.last_transition_time,
                observed_generation=status.observed_generation,
            )
        )
        if found.status == "False" and (changed or old is None or old.reason != found.reason):
            events.append(Event("Warning", found.reason, found.message))
    new, previous = found.resolution, before.registry
    if new is not None and (previous is None or previous.resolved_at != new.resolved_at):
        events.append(
            Event(
                "Normal",
                "RegistryResolved",
                f"{new.uri} is version {new.version} (at {new.artifact_uri})",
            )
        )
    wait = max((found.next_check - now).total_seconds(), MIN_REQUEUE_SECONDS)
    requeue = wait if decision.requeue_after is None else min(decision.requeue_after, wait)
    return dataclasses.replace(decision, status=status, events=events, requeue_after=requeue)
