"""Who did what: the records `slipway.governance.record` adds to each decision of the rollout core,
driven through the same fake cluster as the core's own scenarios (tests/unit/test_rollout.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from slipway.api import EndReason, Measurement, Promotion
from slipway.governance import (
    ACTION,
    ACTION_BY,
    APPLIED_BY,
    APPLIED_WITH,
    UNDO_BY,
    UNDO_TO,
    Stamps,
    consumed_keys,
    describe_actor,
    gitops_tool,
    governance_request,
    record,
    stamps_of,
)
from slipway.governance.digests import RevisionDigests
from slipway.rollout import Action, Decision, Observed
from tests.unit.test_rollout import Rollout, canary_rollout, model_deployment

ALICE = Stamps(applied_by="alice", applied_with="kubectl-client-side-apply")
ARGO = "system:serviceaccount:argocd:argocd-application-controller"


@dataclass
class Governed(Rollout):
    """The fake shell, recording as reconcile.py does: stamps as the admission policy left them."""

    stamps: Stamps = field(default_factory=lambda: ALICE)
    # what the pods report, by revision (tests/unit/test_governance_digests.py)
    reports: dict[str, RevisionDigests] = field(default_factory=dict)

    def reconcile(
        self, action: Action | None = None, measurements: Sequence[Measurement] | None = None
    ) -> Decision:
        before = self.md.status
        decision = super().reconcile(action, measurements)
        request = governance_request(self.md, self.revision, action, self.stamps, self.now)
        idle = frozenset(
            rev
            for rev in {h.revision for h in self.md.status.history}
            if self.cluster.replicas(rev) == 0 and rev not in self.reports
        )
        request = dataclasses.replace(request, digests=self.reports, idle=idle)
        recorded = record(before, decision, request)
        self.md = self.md.model_copy(update={"status": recorded.status})
        self.decisions[-1] = recorded
        # the operator removes what it consumed: an action's and an undo's stamps go with them
        self.stamps = Stamps(
            applied_by=self.stamps.applied_by, applied_with=self.stamps.applied_with
        )
        return recorded

    def observe(self) -> Observed:
        """What the shell gathers, with who asked for this reconcile's action (the stamp)."""
        return dataclasses.replace(super().observe(), actor=self.stamps.action_by or None)

    def act(self, action: Action, by: str) -> Decision:
        self.stamps = Stamps(
            action_by=by, applied_by=self.stamps.applied_by, applied_with=self.stamps.applied_with
        )
        return self.reconcile(action)

    def apply(self, version: str, by: str, manager: str = "kubectl-client-side-apply") -> None:
        self.stamps = Stamps(applied_by=by, applied_with=manager)
        self.change(version=version)

    def messages(self, reason: str) -> list[str]:
        return [e.message for d in self.decisions for e in d.events if e.reason == reason]


WAIT_FOR_PROMOTION = canary_rollout([{"setWeight": 25}, {"pause": {}}])
TIMED = canary_rollout([{"setWeight": 25}, {"pause": {"duration": "1m"}}])


def deployed(rollout: dict[str, object] | None = None) -> Governed:
    governed = Governed(md=model_deployment(rollout=rollout))
    governed.converge()
    return governed


def test_the_first_revision_is_promoted_by_who_applied_it() -> None:
    governed = deployed()

    [entry] = governed.status.history
    assert (entry.promotion, entry.promoted_by) == (Promotion.INITIAL, "alice")
    assert (entry.applied_by, entry.applied_with) == ("alice", "kubectl-client-side-apply")
    assert governed.status.stable.applied_by == "alice"
    assert governed.messages("Deployed")[0].endswith("; applied by alice")


def test_a_manual_promotion_names_the_approver_and_ends_the_old_stable() -> None:
    governed = deployed(WAIT_FOR_PROMOTION)
    first = governed.revision
    governed.apply("1.1.0", by="bob")
    governed.converge()
    assert governed.status.canary.applied_by == "bob"

    governed.act(Action.PROMOTE, by="paula")
    governed.converge()

    new, old = governed.status.history
    assert (new.promotion, new.promoted_by, new.applied_by) == (Promotion.PROMOTE, "paula", "bob")
    assert (old.revision, old.end_reason, old.ended_by) == (first, EndReason.PROMOTED_OVER, "paula")
    assert old.ended_at == new.promoted_at
    assert (old.promotion, old.promoted_by) == (Promotion.INITIAL, "alice")
    assert governed.messages("Promoted")[-1].endswith("; promoted by paula (Promote)")
    assert any(m.endswith("(asked by paula)") for m in governed.messages("Promote"))


def test_the_canary_keeps_every_action_and_who_asked() -> None:
    governed = deployed(WAIT_FOR_PROMOTION)
    governed.apply("1.1.0", by="bob")
    governed.converge()

    governed.act(Action.PAUSE, by="carol")
    governed.act(Action.RESUME, by="dave")
    governed.act(Action.ABORT, by="erin")

    actions = [(a.action, a.by, a.step) for a in governed.status.canary.actions]
    assert actions == [("pause", "carol", 1), ("resume", "dave", 1), ("abort", "erin", 1)]
    assert any(m.endswith("(asked by erin)") for m in governed.messages("Aborted"))


def test_steps_that_pass_by_themselves_are_promoted_by_slipway() -> None:
    governed = deployed(TIMED)
    governed.apply("1.1.0", by="bob")
    governed.converge()
    governed.wait(60)

    new, old = governed.status.history
    assert (new.promotion, new.promoted_by, new.applied_by) == (Promotion.STEPS, "slipway", "bob")
    assert (old.end_reason, old.ended_by) == (EndReason.PROMOTED_OVER, "slipway")


def test_a_promote_before_the_last_step_does_not_make_the_promotion_manual() -> None:
    steps = [{"setWeight": 25}, {"pause": {"duration": "1m"}}]
    governed = deployed(canary_rollout([*steps, {"setWeight": 50}, {"pause": {"duration": "1m"}}]))
    governed.apply("1.1.0", by="bob")
    governed.converge()
    governed.act(Action.PROMOTE, by="paula")  # skips the first pause only
    governed.converge()
    governed.wait(60)

    assert governed.status.history[0].promotion is Promotion.STEPS


def test_resume_at_a_pause_that_waits_for_promotion_promotes() -> None:
    governed = deployed(WAIT_FOR_PROMOTION)
    governed.apply("1.1.0", by="bob")
    governed.converge()

    governed.act(Action.RESUME, by="dave")
    governed.converge()

    assert (governed.status.history[0].promotion, governed.status.history[0].promoted_by) == (
        Promotion.PROMOTE,
        "dave",
    )


def test_a_rolling_update_is_promoted_by_slipway() -> None:
    governed = deployed()
    governed.apply("1.1.0", by="bob")
    governed.converge()

    assert (governed.status.history[0].promotion, governed.status.history[0].promoted_by) == (
        Promotion.ROLLING,
        "slipway",
    )


def test_an_undo_names_who_undid_and_ends_the_undone_stable() -> None:
    governed = deployed()
    first = governed.revision
    governed.apply("1.1.0", by="bob")
    governed.converge()
    second = governed.revision

    # `kubectl slipway undo`: the old serving spec and undo-to, stamped by the policy
    governed.change(version="1.0.0")
    governed.stamps = Stamps(undo_to=first, undo_by="olga", applied_by="olga")
    governed.converge()

    new, undone = governed.status.history
    assert (new.revision, new.promotion, new.promoted_by) == (first, Promotion.UNDO, "olga")
    assert (new.applied_by, new.end_reason) == ("alice", None)  # applied first by alice
    assert (undone.revision, undone.end_reason, undone.ended_by) == (
        second,
        EndReason.UNDONE,
        "olga",
    )
    assert governed.messages("Undo")[-1].endswith("(asked by olga)")


def test_a_spec_set_back_by_a_gitops_sync_is_a_rollback_by_its_controller() -> None:
    governed = deployed()
    governed.apply("1.1.0", by=ARGO, manager="argocd-controller")
    governed.converge()
    governed.apply("1.0.0", by=ARGO, manager="argocd-controller")
    governed.converge()

    new, old = governed.status.history
    assert (new.promotion, new.promoted_by) == (Promotion.REVERT, ARGO)
    assert (old.end_reason, old.ended_by) == (EndReason.ROLLED_BACK, ARGO)
    assert (old.applied_by, old.applied_with) == (ARGO, "argocd-controller")


def test_a_canary_started_by_a_gitops_sync_says_so() -> None:
    governed = deployed(WAIT_FOR_PROMOTION)
    governed.apply("1.1.0", by=ARGO, manager="argocd-controller")
    governed.converge()

    assert governed.messages("CanaryStarted")[-1].endswith(f"; applied by Argo CD sync ({ARGO})")


def test_an_undo_stamp_for_another_revision_records_nothing() -> None:
    governed = deployed(WAIT_FOR_PROMOTION)
    governed.stamps = Stamps(undo_to="0123456789", undo_by="mallory", applied_by="bob")
    governed.change(version="1.1.0")
    governed.converge()

    assert governed.status.canary.actions == []
    assert governed.messages("Undo") == []


def test_records_survive_every_reconcile_and_a_promotion() -> None:
    governed = deployed(WAIT_FOR_PROMOTION)
    governed.apply("1.1.0", by="bob")
    governed.converge()
    governed.stamps = Stamps()  # the annotations are gone: what was recorded stays recorded
    governed.act(Action.PROMOTE, by="paula")
    governed.converge()
    governed.wait(120)

    assert [h.applied_by for h in governed.status.history] == ["bob", "alice"]
    assert governed.status.stable.applied_by == "bob"


@pytest.mark.parametrize("action", list(Action))
def test_every_action_says_who_asked_in_an_event(action: Action) -> None:
    governed = deployed(WAIT_FOR_PROMOTION)
    governed.apply("1.1.0", by="bob")
    governed.converge()
    if action is Action.RETRY:
        governed.act(Action.ABORT, by="erin")
    if action is Action.RESUME:
        governed.act(Action.PAUSE, by="carol")

    decision = governed.act(action, by="zoe")

    assert any(e.message.endswith("(asked by zoe)") for e in decision.events), decision.events


# -- the annotations -------------------------------------------------------------------------------


def test_stamps_are_read_from_the_annotations_the_policy_writes() -> None:
    annotations = {
        ACTION: "promote",
        ACTION_BY: "paula",
        UNDO_TO: "abc",
        UNDO_BY: "olga",
        APPLIED_BY: "bob",
        APPLIED_WITH: "kubectl",
    }
    assert stamps_of(annotations) == Stamps("paula", "abc", "olga", "bob", "kubectl")
    assert stamps_of({}) == Stamps()


@pytest.mark.parametrize(
    ("annotations", "consumed"),
    [
        ({}, []),
        ({APPLIED_BY: "bob"}, []),
        ({ACTION: "abort", ACTION_BY: "erin", APPLIED_BY: "bob"}, [ACTION, ACTION_BY]),
        ({ACTION: "abort"}, [ACTION]),
        ({UNDO_TO: "abc", UNDO_BY: "olga"}, [UNDO_TO, UNDO_BY]),
    ],
)
def test_the_operator_consumes_actions_and_undos_with_their_stamps(
    annotations: dict[str, str], consumed: list[str]
) -> None:
    assert consumed_keys(annotations) == consumed


@pytest.mark.parametrize(
    ("user", "manager", "tool"),
    [
        (ARGO, "argocd-controller", "Argo CD"),
        ("system:serviceaccount:argocd:argocd-server", "", "Argo CD"),
        ("system:serviceaccount:flux-system:kustomize-controller", "kustomize-controller", "Flux"),
        ("ci-bot", "helm-controller", "Flux"),
        ("alice", "kubectl-client-side-apply", None),
        ("system:serviceaccount:ml:deployer", "kubectl", None),
    ],
)
def test_gitops_controllers_are_known_by_field_manager_or_namespace(
    user: str, manager: str, tool: str | None
) -> None:
    assert gitops_tool(user, manager) == tool


@pytest.mark.parametrize(
    ("user", "manager", "said"),
    [
        ("alice", None, "alice"),
        (ARGO, "argocd-controller", f"Argo CD sync ({ARGO})"),
        (None, None, "unknown (no admission stamp)"),
        ("", "kubectl", "unknown (no admission stamp)"),
    ],
)
def test_an_actor_is_said_as_a_person_or_a_gitops_sync(
    user: str | None, manager: str | None, said: str
) -> None:
    assert describe_actor(user, manager) == said


def test_an_approval_step_records_every_approver_and_who_completed_it() -> None:
    two = {"approval": {"requiredApprovals": 2}}
    governed = deployed(canary_rollout([{"setWeight": 25}, two]))
    governed.apply("1.1.0", by="bob")
    governed.converge()

    first = governed.act(Action.PROMOTE, by="paula")
    assert any(
        e.message.endswith("(asked by paula)") for e in first.events if e.reason == "Approved"
    )
    governed.act(Action.PROMOTE, by="olga")
    governed.converge()

    new, _ = governed.status.history
    assert (new.promotion, new.promoted_by, new.approved_by) == (
        Promotion.PROMOTE,
        "olga",
        ["paula", "olga"],
    )
