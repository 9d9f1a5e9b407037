"""Which decisions notify, and what the messages say: the pure part of notifications.

Scenarios run the real rollout state machine (`decide`) through tests/unit/test_rollout.py's fake
shell, recording the notifications each decision makes from the ModelDeployment as it was before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from slipway.api import Measurement, ModelDeployment
from slipway.notifications import (
    NOTIFY_ANNOTATION,
    Moment,
    Notification,
    channels_of,
    notifications_for,
    payload,
    slack_payload,
    webhook_payload,
)
from slipway.rollout import Action, Decision
from tests.unit.test_rollout import (
    ANALYSIS,
    BAD,
    GOOD,
    NO_DATA,
    Rollout,
    canary_rollout,
    model_deployment,
)


def annotated(md: ModelDeployment, channels: str | None) -> ModelDeployment:
    body = {"metadata": md.metadata.wire(), "spec": md.spec.wire(), "status": md.status.wire()}
    if channels is not None:
        body["metadata"]["annotations"] = {NOTIFY_ANNOTATION: channels}
    return ModelDeployment.from_body(body)


@dataclass
class Notified(Rollout):
    """The fake shell, keeping every notification its decisions made."""

    sent: list[Notification] = field(default_factory=list)

    def reconcile(
        self, action: Action | None = None, measurements: Sequence[Measurement] | None = None
    ) -> Decision:
        before = self.md
        decision = super().reconcile(action, measurements)
        self.sent += notifications_for(before, decision, self.now)
        return decision

    def moments(self) -> list[Moment]:
        return [n.moment for n in self.sent]


def deployed(
    steps: list[dict[str, Any]],
    channels: str | None = "ml-team",
    metrics: Callable[[str], list[Measurement]] | None = None,
    **extra: Any,
) -> Notified:
    analysis = {"analysis": ANALYSIS} if metrics is not None else {}
    md = model_deployment(replicas=4, rollout=canary_rollout(steps, **analysis, **extra))
    rollout = Notified(md=annotated(md, channels), metrics=metrics)
    rollout.converge()
    return rollout


def test_a_promoted_canary_notifies_start_wait_and_promotion_once_each() -> None:
    rollout = deployed([{"setWeight": 25}, {"pause": {}}])
    assert rollout.sent == []  # the first revision is no rollout

    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.wait(600)  # nothing happens while it waits: nothing is said again
    rollout.reconcile(action=Action.PROMOTE)
    rollout.converge()

    assert rollout.moments() == [
        Moment.STARTED,
        Moment.WAITING_FOR_PROMOTION,
        Moment.PROMOTED,
    ]
    promoted = rollout.sent[-1]
    assert promoted.phase == "Ready"
    assert promoted.versions == {"stable": "1.0.0", "canary": "2.0.0"}
    assert promoted.revisions["canary"] == rollout.status.stable.revision
    assert promoted.channels == ("ml-team",)


def test_timed_steps_notify_start_and_promotion_but_no_wait() -> None:
    rollout = deployed([{"setWeight": 25}, {"pause": {"duration": "1m"}}, {"setWeight": 50}])
    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.wait(60)

    assert rollout.moments() == [Moment.STARTED, Moment.PROMOTED]


def test_a_first_step_that_waits_is_announced_with_the_start() -> None:
    rollout = deployed([{"pause": {}}, {"setWeight": 50}])
    rollout.change(version="2.0.0")
    rollout.converge()

    assert rollout.moments() == [Moment.STARTED, Moment.WAITING_FOR_PROMOTION]
    assert "waits for `kubectl slipway promote`" in rollout.sent[1].message


def test_each_pause_that_waits_for_promotion_is_announced() -> None:
    rollout = deployed([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}])
    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.reconcile(action=Action.PROMOTE)
    rollout.converge()

    assert rollout.moments() == [
        Moment.STARTED,
        Moment.WAITING_FOR_PROMOTION,
        Moment.WAITING_FOR_PROMOTION,
    ]
    assert rollout.sent[2].message != rollout.sent[1].message  # step 4 now, not step 2


def test_an_approval_step_is_announced_as_a_wait_for_people() -> None:
    rollout = deployed([{"setWeight": 25}, {"approval": {"requiredApprovals": 2}}])
    rollout.change(version="2.0.0")
    rollout.converge()

    assert rollout.moments() == [Moment.STARTED, Moment.WAITING_FOR_PROMOTION]
    assert "waits for 2 approvals" in rollout.sent[1].message


def test_a_failed_analysis_notifies_the_rollback_with_its_measurements() -> None:
    rollout = deployed([{"setWeight": 50}, {"pause": {"duration": "1m"}}], metrics=lambda r: BAD)
    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.wait(30)
    rollout.wait(30)
    rollout.wait(3600)

    assert rollout.moments() == [Moment.STARTED, Moment.ROLLED_BACK]
    rolled_back = rollout.sent[-1]
    assert rolled_back.phase == "RolledBack"
    assert rolled_back.reason == "RolledBack"
    assert "AnalysisFailed" in rolled_back.message
    [measurement] = rolled_back.measurements
    assert (measurement["metric"], measurement["value"], measurement["max"]) == (
        "error-rate",
        0.08,
        0.01,
    )
    assert measurement["verdict"] == "Failed"


def test_an_abort_and_a_retry_notify_abort_then_a_new_start() -> None:
    rollout = deployed([{"setWeight": 25}, {"pause": {"duration": "1h"}}])
    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.reconcile(action=Action.ABORT)
    rollout.converge()
    rollout.reconcile(action=Action.RETRY)
    rollout.converge()

    assert rollout.moments() == [Moment.STARTED, Moment.ABORTED, Moment.STARTED]
    assert rollout.sent[1].phase == "RolledBack"


def test_missing_data_notifies_one_inconclusive_pause_however_long_it_lasts() -> None:
    rollout = deployed(
        [{"setWeight": 50}, {"pause": {"duration": "1m"}}], metrics=lambda r: NO_DATA
    )
    rollout.change(version="2.0.0")
    rollout.converge()
    for _ in range(10):
        rollout.wait(30)

    assert rollout.moments() == [Moment.STARTED, Moment.PAUSED_INCONCLUSIVE]
    assert rollout.sent[1].phase == "Paused"
    assert rollout.sent[1].measurements[0]["verdict"] == "Inconclusive"


def test_a_held_failure_asks_for_a_decision() -> None:
    rollout = deployed(
        [{"setWeight": 50}, {"pause": {}}], metrics=lambda r: BAD, autoRollback=False
    )
    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.wait(30)
    rollout.wait(30)

    assert rollout.moments() == [Moment.STARTED, Moment.HELD]  # no step passes on bad evidence
    assert rollout.sent[-1].phase == "Degraded"


def test_an_approval_that_times_out_with_autorollback_off_asks_for_a_decision() -> None:
    """Every failure that holds the canary is announced, not only those of analysis and pods."""
    rollout = deployed(
        [{"setWeight": 25}, {"approval": {"requiredApprovals": 1, "timeout": "10m"}}],
        autoRollback=False,
    )
    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.wait(600)
    rollout.wait(30)  # held: nothing is said again

    assert rollout.moments() == [Moment.STARTED, Moment.WAITING_FOR_PROMOTION, Moment.HELD]
    held = rollout.sent[-1]
    assert (held.reason, held.phase) == ("ApprovalTimedOut", "Degraded")
    assert "waited 10m for 1 approval" in held.message


def test_a_good_analysis_reaches_promotion_with_the_measurements_it_passed() -> None:
    rollout = deployed([{"setWeight": 50}, {"pause": {"duration": "30s"}}], metrics=lambda r: GOOD)
    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.wait(30)
    rollout.wait(30)

    assert rollout.moments() == [Moment.STARTED, Moment.PROMOTED]


@pytest.mark.parametrize("channels", [None, "", " , "])
def test_a_modeldeployment_that_names_no_channel_notifies_nothing(channels: str | None) -> None:
    rollout = deployed([{"setWeight": 25}, {"pause": {}}], channels=channels)
    rollout.change(version="2.0.0")
    rollout.converge()
    rollout.reconcile(action=Action.PROMOTE_FULL)
    rollout.converge()

    assert rollout.sent == []


@pytest.mark.parametrize(
    ("annotation", "channels"),
    [
        ("ml-team", ("ml-team",)),
        ("ml-team, oncall", ("ml-team", "oncall")),
        ("oncall,ml-team,oncall", ("oncall", "ml-team")),
        (" ml-team ,, ", ("ml-team",)),
        ("", ()),
    ],
)
def test_the_annotation_names_channels_in_order_each_once(
    annotation: str, channels: tuple[str, ...]
) -> None:
    assert channels_of({NOTIFY_ANNOTATION: annotation}) == channels


def test_no_annotation_names_no_channel() -> None:
    assert channels_of({"other": "x"}) == ()


NOTIFICATION = Notification(
    moment=Moment.ROLLED_BACK,
    namespace="ml",
    name="fraud",
    phase="RolledBack",
    reason="RolledBack",
    message="AnalysisFailed: error-rate = 0.08 (max 0.01): Failed",
    revisions={"stable": "5d8f3a1c2b", "canary": "9ab1c0de77"},
    versions={"stable": "2.1.0", "canary": "2.2.0"},
    measurements=[{"metric": "error-rate", "value": 0.08, "max": 0.01, "verdict": "Failed"}],
    at="2024-05-01T12:00:00Z",
    channels=("ml-team",),
)


def test_the_webhook_payload_names_object_revisions_versions_phase_reason_measurements() -> None:
    assert webhook_payload(NOTIFICATION) == {
        "kind": "RolloutRolledBack",
        "modelDeployment": {"namespace": "ml", "name": "fraud"},
        "revision": "9ab1c0de77",
        "revisions": {"stable": "5d8f3a1c2b", "canary": "9ab1c0de77"},
        "versions": {"stable": "2.1.0", "canary": "2.2.0"},
        "phase": "RolledBack",
        "reason": "RolledBack",
        "message": "AnalysisFailed: error-rate = 0.08 (max 0.01): Failed",
        "measurements": [{"metric": "error-rate", "value": 0.08, "max": 0.01, "verdict": "Failed"}],
        "at": "2024-05-01T12:00:00Z",
    }


def test_the_slack_payload_is_an_incoming_webhook_message() -> None:
    message = slack_payload(NOTIFICATION)

    assert message["text"] == "ml/fraud: rolled back"
    [attachment] = message["attachments"]
    assert attachment["color"] == "#d00000"
    assert attachment["text"].startswith("RolledBack: AnalysisFailed")
    assert {f["title"]: f["value"] for f in attachment["fields"]} == {
        "Versions": "2.1.0 → 2.2.0",
        "Phase": "RolledBack",
        "error-rate": "0.08 (max 0.01): Failed",
    }
    assert attachment["ts"] == int(dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC).timestamp())


def test_each_channel_kind_gets_its_own_payload() -> None:
    assert payload("webhook", NOTIFICATION) == webhook_payload(NOTIFICATION)
    assert payload("slack", NOTIFICATION) == slack_payload(NOTIFICATION)
