"""Sends the notifications of `slipway.notifications` from a bounded background queue.

The reconcile hands a decision over with `submit()`, which only renders the payloads and puts
them on a bounded queue: it never waits for a receiver and never raises. One background thread
POSTs each message with a timeout and a bounded number of retries; when the queue is full, a
message is dropped and counted (`slipway_notifications_total{result="dropped"}`). A channel's URL
often holds a token, so it is never logged, never put in status or in an Event, and kept out of
every error message.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from slipway import metrics
from slipway.api import ModelDeployment
from slipway.notifications import CHANNEL_KINDS, ChannelKind, notifications_for, payload
from slipway.rollout import Decision

log = logging.getLogger(__name__)

URL_ENV_PREFIX = "SLIPWAY_NOTIFY_URL_"
CHANNEL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Channel:
    """Where notifications go: a name users put in the annotation, a payload kind, a URL."""

    name: str
    kind: ChannelKind
    url: str = field(repr=False)  # may hold a token: never printed


class ConfigError(ValueError):
    """A notification channel that cannot be used, said without its URL."""


def url_variable(name: str) -> str:
    """The environment variable that holds channel `name`'s URL: SLIPWAY_NOTIFY_URL_ML_TEAM."""
    return URL_ENV_PREFIX + name.upper().replace("-", "_")


def channels_from(specs: Sequence[str], environ: Mapping[str, str]) -> dict[str, Channel]:
    """Channels from `--notify-channel NAME=KIND` flags, their URLs from the environment.

    The chart sets each URL variable from a Secret; flags never hold a URL (a process's arguments
    are visible to every user of the node).
    """
    channels: dict[str, Channel] = {}
    for spec in specs:
        name, sep, kind = spec.partition("=")
        if not sep or not CHANNEL_NAME.match(name) or kind not in CHANNEL_KINDS:
            raise ConfigError(
                f"--notify-channel {spec!r}: want NAME=KIND, NAME lowercase letters, digits and "
                f"'-', KIND one of {', '.join(CHANNEL_KINDS)}"
            )
        variable = url_variable(name)
        url = environ.get(variable, "")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"notification channel {name!r}: set {variable} to its http(s) URL "
                "(the chart takes it from a Secret)"
            )
        channels[name] = Channel(name, kind, url)
    return channels


Post = Callable[[str, bytes, float], int]


def http_post(url: str, body: bytes, timeout: float) -> int:
    """POST a JSON body; the HTTP status (an error status too), or raise OSError."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@dataclass
class Notifier:
    """A bounded queue of messages and the one thread that sends them."""

    channels: Mapping[str, Channel]
    queue_size: int = 100
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 1.0
    post: Post = http_post
    _queue: queue.Queue[tuple[Channel, bytes] | None] = field(init=False)
    _thread: threading.Thread | None = field(init=False, default=None)
    _warned: set[tuple[str, str]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self._queue = queue.Queue(maxsize=self.queue_size)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the messages already queued (waits at most `timeout`)."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def submit(self, md: ModelDeployment, decision: Decision, now: dt.datetime) -> None:
        """Queue what `decision` is worth telling; never blocks, never raises."""
        try:
            for n in notifications_for(md, decision, now):
                for name in n.channels:
                    channel = self.channels.get(name)
                    if channel is None:
                        self._unknown_channel(md, name)
                        continue
                    body = json.dumps(payload(channel.kind, n)).encode()
                    try:
                        self._queue.put_nowait((channel, body))
                    except queue.Full:
                        metrics.record_notification(name, "dropped")
                        log.warning(
                            "notification %s of %s/%s to channel %s dropped: queue full (%d)",
                            n.moment.value,
                            n.namespace,
                            n.name,
                            name,
                            self.queue_size,
                        )
        except Exception:
            log.exception("notifications of %s/%s not queued", md.namespace, md.name)

    def _unknown_channel(self, md: ModelDeployment, name: str) -> None:
        key = (f"{md.namespace}/{md.name}", name)
        if key not in self._warned:
            self._warned.add(key)
            log.warning(
                "%s/%s names notification channel %r, which is not configured (configured: %s)",
                md.namespace,
                md.name,
                name,
                ", ".join(sorted(self.channels)) or "none",
            )

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            channel, body = item
            metrics.record_notification(channel.name, self._send(channel, body))

    def _send(self, channel: Channel, body: bytes) -> metrics.NotificationResult:
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                code = self.post(channel.url, body, self.timeout)
            except Exception as exc:  # a refused connection, a timeout, a bad answer
                problem = redact(f"{type(exc).__name__}: {exc}", channel.url)
                continue
            if 200 <= code < 300:
                return "sent"
            problem = f"HTTP {code}"
            if 400 <= code < 500 and code not in (408, 429):
                break  # the receiver refuses this message; sending it again changes nothing
        log.warning(
            "notification to channel %s failed after %d attempt(s): %s",
            channel.name,
            attempt + 1,
            problem,
        )
        return "failed"


def redact(text: str, url: str) -> str:
    """`text` without the URL or any part of its path and query (where tokens live)."""
    text = text.replace(url, "<url>")
    rest = url.split("://", 1)[-1]
    _, _, path = rest.partition("/")
    for secret in sorted({path, *re.split(r"[/?&=#]", path)}, key=len, reverse=True):
        if len(secret) >= 6:
            text = text.replace(secret, "<redacted>")
    return text


# The operator's notifier, set by `slipway run`; without one, nothing is sent.
_notifier: Notifier | None = None


def configure(notifier: Notifier | None) -> None:
    global _notifier
    _notifier = notifier


def submit(md: ModelDeployment, decision: Decision, now: dt.datetime) -> None:
    """Hand a reconcile's decision to the notifier (a no-op when none is configured)."""
    if _notifier is not None:
        _notifier.submit(md, decision, now)


def from_environment(
    specs: Sequence[str],
    environ: Mapping[str, str] | None = None,
    *,
    queue_size: int = 100,
    timeout: float = 5.0,
    retries: int = 3,
) -> Notifier | None:
    """The notifier `slipway run` starts: None without channels."""
    channels = channels_from(specs, os.environ if environ is None else environ)
    if not channels:
        return None
    return Notifier(channels, queue_size=queue_size, timeout=timeout, retries=retries)
