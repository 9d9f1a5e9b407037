"""The approval step: a canary waits for `requiredApprovals` distinct people to promote it, each
known by the stamp of the admission policy (Observed.actor); a timeout counted like a pause's
duration fails it. Driven through the same fake cluster as the core's other scenarios."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from slipway.api import CanaryReason, CanaryState, Phase
from slipway.rollout import Action, Decision, Observed
from tests.unit.test_rollout import Rollout, canary_rollout, model_deployment

R, S = CanaryReason, CanaryState


@dataclass
class Approvals(Rollout):
    """The fake shell, with who asked for the action of each reconcile."""

    actor: str | None = None

    def observe(self) -> Observed:
        return dataclasses.replace(super().observe(), actor=self.actor)

    def ask(self, action: Action, by: str | None) -> Decision:
        self.actor = by
        try:
            return self.reconcile(action)
        finally:
            self.actor = None

    def said(self, decision: Decision) -> list[tuple[str, str]]:
        return [(e.reason, e.message) for e in decision.events]


def gated(*steps: dict[str, Any]) -> Approvals:
    """1.0.0 stable, then 1.1.0 as a canary of `steps`, converged to where it waits."""
    rollout = Approvals(md=model_deployment(rollout=canary_rollout(list(steps))))
    rollout.converge()
    rollout.change(version="1.1.0")
    rollout.converge()
    return rollout


TWO = {"approval": {"requiredApprovals": 2}}


def test_a_canary_waits_at_an_approval_step_and_says_for_whom() -> None:
    rollout = gated({"setWeight": 25}, TWO, {"setWeight": 50})

    canary = rollout.status.canary
    assert (canary.step, canary.weight, canary.state, canary.reason) == (
        1,
        25,
        S.PAUSED,
        R.WAITING_FOR_APPROVAL,
    )
    assert "waits for 2 approvals" in canary.message and "0 so far" in canary.message
    assert rollout.status.phase is Phase.PAUSED


def test_two_distinct_people_approve_and_the_canary_goes_on() -> None:
    rollout = gated({"setWeight": 25}, TWO, {"setWeight": 50})

    first = rollout.ask(Action.PROMOTE, "paula")
    assert [a.by for a in rollout.status.canary.approvals] == ["paula"]
    assert rollout.status.canary.state is S.PAUSED
    assert ("Approved", f"approval 1 of 2 for step 2/3 (approval by 2) of canary "
            f"{rollout.revision} (paula)") in rollout.said(first)  # fmt: skip
    assert "1 so far (paula)" in rollout.status.canary.message

    again = rollout.ask(Action.PROMOTE, "paula")
    assert ("ActionIgnored", "promote ignored: paula has approved step 2/3 (approval by 2) "
            "already") in rollout.said(again)  # fmt: skip
    assert rollout.status.canary.step == 1

    rollout.ask(Action.PROMOTE, "olga")
    canary = rollout.status.canary
    assert (canary.step, canary.state, canary.approvals) == (2, S.PROGRESSING, [])
    rollout.converge()
    assert rollout.status.stable.version == "1.1.0"


def test_an_approval_that_does_not_say_who_gives_it_cannot_count_twice() -> None:
    rollout = gated(TWO)

    decision = rollout.ask(Action.PROMOTE, None)

    assert rollout.status.canary.approvals == []
    [message] = [m for r, m in rollout.said(decision) if r == "ActionIgnored"]
    assert "needs 2 distinct people, and this promote does not say who asked" in message


def test_one_approval_needs_no_name() -> None:
    rollout = gated({"approval": {}})

    rollout.ask(Action.PROMOTE, None)
    rollout.converge()

    assert rollout.status.stable.version == "1.1.0"


def test_resume_does_not_approve() -> None:
    rollout = gated(TWO)

    decision = rollout.ask(Action.RESUME, "dave")

    assert rollout.status.canary.reason is R.WAITING_FOR_APPROVAL
    assert any(
        r == "ActionIgnored" and "resume does not approve" in m for r, m in rollout.said(decision)
    )


def test_nobody_promotes_past_an_approval_step() -> None:
    rollout = gated({"setWeight": 10}, {"pause": {}}, TWO, {"setWeight": 50}, {"pause": {}})
    assert rollout.status.canary.step == 1

    rollout.ask(Action.PROMOTE_FULL, "paula")  # the full promotion stops at the gate

    canary = rollout.status.canary
    assert (canary.step, canary.reason) == (2, R.WAITING_FOR_APPROVAL)
    assert canary.approvals == []  # arriving is not approving

    rollout.ask(Action.PROMOTE_FULL, "paula")
    rollout.ask(Action.PROMOTE_FULL, "olga")  # the second approval ends the gate, then all steps
    rollout.converge()
    assert rollout.status.stable.version == "1.1.0"


def test_an_approval_step_that_times_out_fails_the_canary() -> None:
    rollout = gated({"setWeight": 25}, {"approval": {"requiredApprovals": 2, "timeout": "10m"}})
    rollout.ask(Action.PROMOTE, "paula")
    assert rollout.last.requeue_after is not None and rollout.last.requeue_after <= 600

    rollout.wait(600)

    canary = rollout.status.canary
    assert (canary.state, canary.reason) == (S.ROLLED_BACK, R.APPROVAL_TIMED_OUT)
    assert canary.message == ("the approval step waited 10m for 2 approvals and got 1 (paula)")
    assert rollout.status.stable.version == "1.0.0"


def test_a_retried_canary_needs_its_approvals_again() -> None:
    rollout = gated({"setWeight": 25}, TWO)
    rollout.ask(Action.PROMOTE, "paula")
    rollout.ask(Action.ABORT, "erin")
    rollout.converge()

    rollout.ask(Action.RETRY, "erin")
    rollout.converge()

    canary = rollout.status.canary
    assert (canary.step, canary.reason, canary.approvals) == (1, R.WAITING_FOR_APPROVAL, [])


def test_a_timer_is_asked_for_only_while_the_timeout_runs() -> None:
    rollout = gated({"approval": {}})
    assert rollout.last.requeue_after is None  # no timeout: people, not a timer, end it
    rollout.now += dt.timedelta(days=30)
    rollout.converge()
    assert rollout.status.canary.reason is R.WAITING_FOR_APPROVAL
