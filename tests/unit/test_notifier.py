"""The notification sender against a real HTTP receiver on loopback: payloads, retries, timeouts,
a full queue, and URLs (which hold tokens) kept out of every log line and error."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from slipway import metrics
from slipway.api import ModelDeployment
from slipway.notifier import (
    Channel,
    ConfigError,
    Notifier,
    channels_from,
    redact,
    url_variable,
)
from slipway.rollout import Decision
from tests.conftest import wait_until
from tests.receiver import Receiver, receiving
from tests.unit.test_notifications import deployed
from tests.unit.test_rollout import T0

TOKEN = "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"


def started(channels: str) -> tuple[ModelDeployment, Decision]:
    """A ModelDeployment naming `channels` and the decision that starts its canary."""
    rollout = deployed([{"setWeight": 25}, {"pause": {}}], channels=channels)
    rollout.change(version="2.0.0")
    before = rollout.md
    decision = rollout.reconcile()
    assert [e.reason for e in decision.events] == ["CanaryStarted"]
    return before, decision


def count(channel: str, result: str) -> float:
    labels = {"channel": channel, "result": result}
    return metrics.REGISTRY.get_sample_value("slipway_notifications_total", labels) or 0.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def notifier(*channels: Channel, retries: int = 3, timeout: float = 5.0) -> Notifier:
    channels_by_name = {c.name: c for c in channels}
    sender = Notifier(channels_by_name, backoff=0.01, retries=retries, timeout=timeout)
    sender.start()
    return sender


def test_each_named_channel_gets_its_own_payload_as_json(receiver: Receiver) -> None:
    sender = notifier(
        Channel("hooks", "webhook", receiver.url(f"/hooks/{TOKEN}")),
        Channel("chat", "slack", receiver.url("/chat")),
    )
    md, decision = started("hooks, chat")

    sender.submit(md, decision, T0)
    sender.stop()

    [hook] = receiver.messages(f"/hooks/{TOKEN}")
    assert hook["kind"] == "RolloutStarted"
    assert hook["modelDeployment"] == {"namespace": "ml", "name": "fraud"}
    assert hook["versions"] == {"stable": "1.0.0", "canary": "2.0.0"}
    [chat] = receiver.messages("/chat")
    assert chat["text"] == "ml/fraud: rollout started"
    assert {r.content_type for r in receiver.received} == {"application/json"}


def test_a_receiver_that_fails_for_a_while_is_retried_until_it_takes_the_message() -> None:
    with receiving(Receiver(statuses=[500, 503, 200])) as r:
        sender = notifier(Channel("flaky", "webhook", r.url()), retries=3)
        sent = count("flaky", "sent")
        md, decision = started("flaky")

        sender.submit(md, decision, T0)
        sender.stop()

    assert r.attempts == 3
    assert len(r.messages()) == 1
    assert count("flaky", "sent") == sent + 1


def test_a_receiver_that_keeps_failing_is_given_up_after_the_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with receiving(Receiver(statuses=[500])) as r:
        sender = notifier(Channel("down", "webhook", r.url(f"/{TOKEN}")), retries=2)
        failed = count("down", "failed")
        md, decision = started("down")

        with caplog.at_level(logging.WARNING, logger="slipway.notifier"):
            sender.submit(md, decision, T0)
            sender.stop()

    assert r.attempts == 3  # the first try and two retries
    assert count("down", "failed") == failed + 1
    assert "channel down failed after 3 attempt(s): HTTP 500" in caplog.text
    assert TOKEN not in caplog.text


def test_a_receiver_that_refuses_the_message_is_not_asked_again() -> None:
    with receiving(Receiver(statuses=[400, 200])) as r:
        sender = notifier(Channel("strict", "webhook", r.url()), retries=3)
        md, decision = started("strict")

        sender.submit(md, decision, T0)
        sender.stop()

    assert r.attempts == 1


def test_a_receiver_slower_than_the_timeout_fails_the_message_without_holding_up_submit() -> None:
    gate = threading.Event()
    with receiving(Receiver(gate=gate)) as r:
        sender = notifier(Channel("slow", "webhook", r.url()), retries=0, timeout=0.3)
        failed = count("slow", "failed")
        md, decision = started("slow")

        # the receiver hangs until the gate opens: submit returning at all shows it never waits
        for _ in range(3):
            sender.submit(md, decision, T0)
        wait_until("three timeouts", lambda: count("slow", "failed") == failed + 3, timeout=30)
        gate.set()
        sender.stop()


def test_a_full_queue_drops_messages_and_counts_them(caplog: pytest.LogCaptureFixture) -> None:
    sender = Notifier(
        {
            name: Channel(name, "webhook", f"http://127.0.0.1:9/{TOKEN}")
            for name in ("one", "two", "three")
        },
        queue_size=1,
    )  # not started: nothing leaves the queue
    dropped = count("two", "dropped") + count("three", "dropped")
    md, decision = started("one, two, three")

    with caplog.at_level(logging.WARNING, logger="slipway.notifier"):
        sender.submit(md, decision, T0)

    assert count("two", "dropped") + count("three", "dropped") == dropped + 2
    assert "dropped: queue full (1)" in caplog.text
    assert TOKEN not in caplog.text


def test_a_channel_that_is_not_configured_is_skipped_and_said_once(
    caplog: pytest.LogCaptureFixture, receiver: Receiver
) -> None:
    sender = notifier(Channel("ml-team", "webhook", receiver.url()))
    md, decision = started("ml-team, nobody")

    with caplog.at_level(logging.WARNING, logger="slipway.notifier"):
        sender.submit(md, decision, T0)
        sender.submit(md, decision, T0)
        sender.stop()

    assert len(receiver.messages()) == 2
    assert caplog.text.count("'nobody', which is not configured (configured: ml-team)") == 1


def test_an_error_that_quotes_the_url_is_logged_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fault a real receiver cannot be made to produce: an exception whose text holds the URL
    (some HTTP stacks put it there). Injected through `post`."""
    url = f"https://hooks.example.com/services/{TOKEN}?token=s3cr3t-value"

    def post(target: str, body: bytes, timeout: float) -> int:
        raise ValueError(f"cannot reach {target}")

    sender = Notifier({"chat": Channel("chat", "slack", url)}, retries=1, backoff=0.01, post=post)
    sender.start()
    md, decision = started("chat")

    with caplog.at_level(logging.DEBUG):
        sender.submit(md, decision, T0)
        sender.stop()

    assert "ValueError: cannot reach <url>" in caplog.text
    for secret in (TOKEN, "s3cr3t-value", "XXXXXXXXXXXXXXXXXXXXXXXX"):
        assert secret not in caplog.text
    assert TOKEN not in repr(sender.channels)


@pytest.mark.parametrize(
    ("text", "url", "expected"),
    [
        ("error at https://h/a/b/secret123", "https://h/a/b/secret123", "error at <url>"),
        (
            "no such path /services/T0/verysecret",
            "https://h/services/T0/verysecret",
            "no such path /<redacted>",
        ),
        ("timed out", "https://h/x", "timed out"),
    ],
)
def test_redact_removes_the_url_and_the_tokens_in_its_path(
    text: str, url: str, expected: str
) -> None:
    assert redact(text, url) == expected


def test_channels_come_from_flags_and_their_urls_from_the_environment() -> None:
    env = {
        url_variable("ml-team"): "https://hooks.slack.com/services/" + TOKEN,
        url_variable("audit"): "http://audit.ml.svc:8080/hook",
    }

    channels = channels_from(["ml-team=slack", "audit=webhook"], env)

    assert {n: (c.kind, c.url) for n, c in channels.items()} == {
        "ml-team": ("slack", env["SLIPWAY_NOTIFY_URL_ML_TEAM"]),
        "audit": ("webhook", env["SLIPWAY_NOTIFY_URL_AUDIT"]),
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ml-team", "want NAME=KIND"),
        ("ml-team=email", "KIND one of webhook, slack"),
        ("ML_Team=slack", "NAME lowercase letters"),
        ("ml-team=slack", "set SLIPWAY_NOTIFY_URL_ML_TEAM to its http(s) URL"),
    ],
)
def test_a_channel_that_cannot_be_used_is_refused_saying_why(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        channels_from([spec], {url_variable("other"): "https://x/" + TOKEN})


def test_a_url_that_is_not_http_is_refused_without_being_repeated() -> None:
    with pytest.raises(ConfigError) as refused:
        channels_from(["chat=slack"], {url_variable("chat"): "hooks.slack.com/" + TOKEN})

    assert TOKEN not in str(refused.value)
