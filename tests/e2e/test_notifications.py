"""Rollout notifications end to end: `slipway run --notify-channel …` against the local cluster,
with webhook receivers on loopback. The right messages arrive once each for a promotion and for a
rollback; receivers that are down or hang change nothing in the rollout; the URLs' tokens never
reach the operator's log, a status or an Event.

The session's operator is stopped while this module runs and the notifying one takes its place
(as tests/e2e/test_rbac.py does for the chart's identity): two operators would fight.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from slipway.api import ModelDeployment
from slipway.resources import revision_of
from tests.conftest import Cluster
from tests.e2e.conftest import Driver, InClusterOperator, Operator, free_port
from tests.e2e.prom import Prometheus
from tests.e2e.test_canary import V2, analysis, canary, canary_md, paused_at, start, status
from tests.receiver import Receiver, receiving

TOKEN = f"T0E2E/B0E2E/{uuid.uuid4().hex}"
NOTIFY = "serving.slipway.dev/notify"
V3 = {"model": {"version": "3.0.0", "uri": "s3://models/fraud/3.0.0"}}


@dataclass(frozen=True)
class Channels:
    """The receivers behind the notifying operator's channels."""

    ok: Receiver  # channels "hooks" (webhook) and "chat" (slack), on two paths
    hanging: Receiver  # channel "slow": answers nothing until the module ends

    def hooks(self, namespace: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.ok.messages(f"/hooks/{TOKEN}")
            if m["modelDeployment"]["namespace"] == namespace
        ]

    def kinds(self, namespace: str) -> list[str]:
        return [m["kind"] for m in self.hooks(namespace)]

    def chat(self, namespace: str) -> list[str]:
        return [
            m["text"] for m in self.ok.messages(f"/chat/{TOKEN}") if m["text"].startswith(namespace)
        ]


@pytest.fixture(scope="module")
def channels() -> Iterator[Channels]:
    gate = threading.Event()
    with receiving() as ok, receiving(Receiver(gate=gate)) as hanging:
        yield Channels(ok, hanging)
        gate.set()


@pytest.fixture(scope="module")
def notifying(
    cluster: Cluster,
    operator: Operator,
    channels: Channels,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    if isinstance(operator, InClusterOperator):
        pytest.skip("the receivers listen on this machine's loopback, out of the cluster's reach")
    env = {
        "SLIPWAY_NOTIFY_URL_HOOKS": channels.ok.url(f"/hooks/{TOKEN}"),
        "SLIPWAY_NOTIFY_URL_CHAT": channels.ok.url(f"/chat/{TOKEN}"),
        "SLIPWAY_NOTIFY_URL_SLOW": channels.hanging.url(f"/slow/{TOKEN}"),
        # nothing listens there: every attempt is refused
        "SLIPWAY_NOTIFY_URL_DOWN": f"http://127.0.0.1:{free_port()}/down/{TOKEN}",
    }
    args = [
        *("--notify-channel", "hooks=webhook", "--notify-channel", "chat=slack"),
        *("--notify-channel", "slow=webhook", "--notify-channel", "down=webhook"),
        *("--notify-timeout", "2", "--notify-retries", "1"),
    ]
    operator.stop()
    op = Operator(cluster, tmp_path_factory.mktemp("notifying"), extra_env=env, extra_args=args)
    try:
        op.start()
        yield op
    finally:
        op.stop()
        operator.start()


def notified(md: dict[str, Any], channels: str) -> dict[str, Any]:
    md["metadata"]["annotations"] = {NOTIFY: channels}
    return md


def never_leaked(k: Driver, op: Operator) -> None:
    """The URLs' token is in no log line of the operator, no status and no Event."""
    logs = "".join(p.read_text(errors="replace") for p in op.log_dir.glob("operator-*.log"))
    assert "notification channels: hooks (webhook), chat (slack)" in logs  # the log is there
    objects = k.cluster.kubectl("get", "md,events", "-n", k.ns, "-o", "json").stdout
    for secret in (TOKEN, TOKEN.rsplit("/", 1)[-1]):
        assert secret not in logs
        assert secret not in objects


def test_a_promoted_rollout_notifies_start_wait_and_promotion_once_each(
    k: Driver, notifying: Operator, channels: Channels
) -> None:
    steps = [{"setWeight": 25}, {"pause": {}}]
    old = start(k, notified(canary_md(steps=steps), "hooks, chat"))
    k.patch("md", "fraud", {"spec": V2})
    new = paused_at(k, 25)["revision"]
    k.plugin("promote", "fraud")
    k.wait("promotion", lambda: status(k)["stable"]["revision"] == new and not canary(k))
    # one more rollout: its start arrives after anything the first one could still have queued
    k.patch("md", "fraud", {"spec": V3})
    k.wait(
        "the next start on both channels",
        lambda: len(channels.hooks(k.ns)) >= 4 and len(channels.chat(k.ns)) >= 4,
    )

    assert channels.kinds(k.ns)[:4] == [
        "RolloutStarted",
        "RolloutWaitingForPromotion",
        "RolloutPromoted",
        "RolloutStarted",
    ]
    started, waiting, promoted = channels.hooks(k.ns)[:3]
    assert started["modelDeployment"] == {"namespace": k.ns, "name": "fraud"}
    assert started["revisions"] == {"stable": old, "canary": new}
    assert started["versions"] == {"stable": "1.0.0", "canary": "2.0.0"}
    assert waiting["phase"] == "Paused"
    assert "waits for `kubectl slipway promote`" in waiting["message"]
    assert (promoted["revision"], promoted["phase"], promoted["reason"]) == (
        new,
        "Ready",
        "Promoted",
    )
    assert channels.chat(k.ns)[:4] == [
        f"{k.ns}/fraud: rollout started",
        f"{k.ns}/fraud: waiting for promotion",
        f"{k.ns}/fraud: promoted",
        f"{k.ns}/fraud: rollout started",
    ]
    never_leaked(k, notifying)


def test_a_rolled_back_rollout_notifies_start_and_rollback_once_with_the_measurement(
    k: Driver,
    notifying: Operator,
    channels: Channels,
    prometheus: Prometheus,
) -> None:
    steps = [{"setWeight": 50}, {"pause": {"duration": "30s"}}]
    md = notified(canary_md(steps=steps, analysis=analysis(prometheus)), "hooks")
    start(k, md)
    # the canary's errors are there before it is: its first measurement already fails
    model = {**md["spec"]["model"], **V2["model"]}
    v2 = ModelDeployment.from_body({**md, "spec": {**md["spec"], "model": model}})
    revision = revision_of(v2.spec.serving())
    prometheus.exporter.set(k.ns, revision, rps=20, error_ratio=0.5)
    k.patch("md", "fraud", {"spec": V2})
    k.wait("RolledBack", lambda: status(k).get("phase") == "RolledBack")
    assert canary(k)["revision"] == revision
    # a retry starts it again: that start arrives after anything the rollback could have queued
    k.plugin("retry", "fraud")
    k.wait("the retry's start", lambda: channels.kinds(k.ns).count("RolloutStarted") == 2)

    # Prometheus may not have scraped the errors in time for the first measurement: then an
    # Inconclusive pause comes first, as it should
    kinds = channels.kinds(k.ns)
    assert kinds.count("RolloutPausedInconclusive") <= 1
    hooks = [m for m in channels.hooks(k.ns) if m["kind"] != "RolloutPausedInconclusive"]
    assert [m["kind"] for m in hooks][:3] == [
        "RolloutStarted",
        "RolloutRolledBack",
        "RolloutStarted",
    ]
    rolled_back = hooks[1]
    assert (rolled_back["revision"], rolled_back["phase"]) == (revision, "RolledBack")
    assert "AnalysisFailed" in rolled_back["message"]
    [measurement] = rolled_back["measurements"]
    assert (measurement["metric"], measurement["verdict"], measurement["max"]) == (
        "error-rate",
        "Failed",
        0.05,
    )
    assert measurement["value"] == pytest.approx(0.5, abs=0.1)
    never_leaked(k, notifying)


def test_receivers_that_are_down_or_hang_change_nothing_in_the_rollout(
    k: Driver, notifying: Operator, channels: Channels
) -> None:
    errors = notifying.metric("slipway_reconcile_total", result="error")
    failed = {
        c: notifying.metric("slipway_notifications_total", channel=c, result="failed")
        for c in ("down", "slow")
    }
    steps = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
    start(k, notified(canary_md(steps=steps), "down, slow, hooks"))

    k.patch("md", "fraud", {"spec": V2})
    new = paused_at(k, 25)["revision"]
    k.plugin("promote", "fraud")
    paused_at(k, 50)
    k.plugin("promote", "fraud")
    st = k.wait("promotion", lambda: (s := status(k))["stable"]["revision"] == new and s)

    assert st["phase"] == "Ready" and st.get("canary") is None
    assert notifying.metric("slipway_reconcile_total", result="error") == errors
    # behind the dead and the hanging receivers, the healthy one still hears everything, once
    k.wait("all four messages", lambda: len(channels.hooks(k.ns)) >= 4, timeout=120)
    assert channels.kinds(k.ns) == [
        "RolloutStarted",
        "RolloutWaitingForPromotion",
        "RolloutWaitingForPromotion",
        "RolloutPromoted",
    ]
    for channel in ("down", "slow"):
        assert (
            notifying.metric("slipway_notifications_total", channel=channel, result="failed")
            == failed[channel] + 4
        )
    never_leaked(k, notifying)


def test_a_modeldeployment_without_the_annotation_is_not_announced(
    k: Driver, notifying: Operator, channels: Channels
) -> None:
    start(k, canary_md(steps=[{"setWeight": 25}, {"pause": {}}]))
    k.patch("md", "fraud", {"spec": V2})
    paused_at(k, 25)
    # the same ModelDeployment, now naming a channel: its next moment is the first one heard
    k.patch("md", "fraud", {"metadata": {"annotations": {NOTIFY: "hooks"}}})
    k.plugin("promote", "fraud")
    k.wait("the promotion message", lambda: channels.hooks(k.ns))

    assert channels.kinds(k.ns) == ["RolloutPromoted"]
