"""Whether this operator may act, when it runs with kopf peering (`slipway run --peering NAME`).

kopf pauses its own watch streams while another peer outranks it, but not what Slipway runs beside
them: the work queue with its delayed requeues, and the periodic re-list. `PeeringGate` follows the
same KopfPeering object (read only: kopf keeps it) and applies kopf's own rule
(kopf/_core/engines/peering.py): stand by while any other live peer has a priority at least as
high as ours (an equal one pauses both, as kopf does). Like kopf with --peering, it starts standing
by, until the first look at the peers says otherwise.

Stricter than kopf (`standby_reason`): an operator acts only while its own keep-alive is in the
object and live (a second before its deadline by our clock: the peers judge it by theirs), that
is while every other peer can see it; and only once a keep-alive's lifetime has passed since it
began to see the object, by when every live peer has written its own. kopf acts as soon as no
other peer outranks it, so two replicas started together each acted until the other's keep-alive
came (up to a minute when the first keep-alives found no peering object yet: Helm creates it
after the Deployment), the younger one handing over to the older a moment later; and a peer whose
keep-alive was late kept acting after the others had declared it dead and taken over. An
operator allowed to act waits TAKEOVER_GRACE more, and acts if it still may: a reconcile the peer
that stood by had begun is most likely over by then. The verdict is judged again without a new
event at the moment it would change (our own deadline, the settle time, the deadline of the peer
that outranks us), first on what we hold, then on a fresh read.

Priorities: by default an operator started later has a lower priority than every one started
before it (`seniority_priority`), so that a rolling upgrade of the operator Deployment never
preempts the active pod: the new pods stand by until the old one leaves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes import client

from slipway.kube import ApiError, read_ok, send

log = logging.getLogger(__name__)

# kopf's default lifetime of a peer's keep-alive, for a peer that does not say its own
DEFAULT_LIFETIME_SECONDS = 60
WATCH_SECONDS = 300
RETRY_SECONDS = 2.0
# our own keep-alive counts as run out this much before its deadline by our clock: the peers
# judge it by theirs, a moment later at best
OWN_MARGIN = dt.timedelta(seconds=1)
# an operator that may act waits this long first, and acts only if it still may: a reconcile
# the peer that stood by had begun when it stopped is most likely over by then
TAKEOVER_GRACE = dt.timedelta(seconds=2)
# the longest the gate goes without reading the object while only an event could change its
# verdict (a watch can stall without a word)
LOOK_AGAIN_SECONDS = 15.0


def own_identity() -> str:
    """An identity for kopf's peering (POD_ID, as kopf reads it, when set)."""
    pod = os.environ.get("POD_ID")
    if pod:
        return pod
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    return f"{getpass.getuser()}@{socket.gethostname()}/{stamp}/{secrets.token_hex(3)}"


def seniority_priority(now_ns: int | None = None) -> int:
    """A peering priority that is lower the later the operator starts: negative microseconds
    since the epoch (below every priority a person or an older Slipway chose, all of them >= 0)."""
    return -((time.time_ns() if now_ns is None else now_ns) // 1000)


def deadline(info: Mapping[str, Any], now: dt.datetime) -> dt.datetime:
    """When a peer's keep-alive runs out (`now` plus its lifetime when it says no time)."""
    lifetime = dt.timedelta(seconds=int(info.get("lifetime", DEFAULT_LIFETIME_SECONDS)))
    seen = info.get("lastseen")
    last = dt.datetime.fromisoformat(seen) if isinstance(seen, str) else now
    if last.tzinfo is None:
        last = last.replace(tzinfo=dt.UTC)
    return last + lifetime


def _blockers(
    peers: Mapping[str, Mapping[str, Any]], identity: str, priority: int, now: dt.datetime
) -> dict[str, dt.datetime]:
    """The live peers other than us whose priority is at least ours, with their deadlines."""
    return {
        peer: end
        for peer, info in peers.items()
        if peer != identity
        and isinstance(info, Mapping)
        and (end := deadline(info, now)) > now  # a dead one: kopf cleans it up
        and int(info.get("priority", 0)) >= priority
    }


def outranked(
    peers: Mapping[str, Mapping[str, Any]], identity: str, priority: int, now: dt.datetime
) -> bool:
    """kopf's rule: whether a live peer other than us has a priority at least as high as ours.

    `peers` is the status of a KopfPeering: identity -> {priority, lifetime, lastseen}.
    """
    return bool(_blockers(peers, identity, priority, now))


def standby_reason(
    peers: Mapping[str, Mapping[str, Any]],
    identity: str,
    priority: int,
    now: dt.datetime,
    *,
    settled: dt.datetime,
) -> str | None:
    """Why this operator must stand by, or None when it may act.

    It may act while its own keep-alive is recorded and live (every other peer sees it, and
    stands by behind it or outranks it), no live peer outranks it, and `now` is past `settled`:
    a keep-alive's lifetime after it began to see the peering object, by when every live peer
    has written its own (kopf writes one at least that often, even while the object is missing).
    Before that, a peer that outranks us may not be in the object yet: two operators started
    together would each act until the other's keep-alive came, one after the other.
    """
    own = peers.get(identity)
    if not isinstance(own, Mapping):
        return "our keep-alive is not in the peering object"
    if deadline(own, now) - OWN_MARGIN <= now:
        return "our keep-alive ran out (the others may have taken over)"
    if now < settled:
        return f"waiting until {settled.isoformat(timespec='seconds')} for every peer's keep-alive"
    ahead = sorted(_blockers(peers, identity, priority, now))
    return f"outranked by {', '.join(ahead)}" if ahead else None


def may_act(
    peers: Mapping[str, Mapping[str, Any]],
    identity: str,
    priority: int,
    now: dt.datetime,
    *,
    settled: dt.datetime,
) -> bool:
    """`standby_reason` is None."""
    return standby_reason(peers, identity, priority, now, settled=settled) is None


def next_verdict(
    peers: Mapping[str, Mapping[str, Any]],
    identity: str,
    priority: int,
    now: dt.datetime,
    *,
    settled: dt.datetime,
) -> dt.datetime | None:
    """When `may_act` changes if the object does not: at our own keep-alive's deadline, at
    `settled`, or at the last deadline of the peers that outrank us; None when only a new event
    can change it."""
    own = peers.get(identity)
    if not isinstance(own, Mapping) or deadline(own, now) - OWN_MARGIN <= now:
        return None  # only our next keep-alive (an event) lets us act
    ends = [deadline(own, now) - OWN_MARGIN]
    if now < settled:
        ends.append(settled)
    blockers = _blockers(peers, identity, priority, now)
    if blockers:
        ends.append(max(blockers.values()))
    return min(ends)


class PeeringGate:
    """Follows the KopfPeering object(s) of this operator and says whether it may act.

    `on_change(active)` runs on the event loop whenever that changes (and once at the start).
    """

    def __init__(
        self,
        api: client.ApiClient,
        name: str,
        namespaces: tuple[str, ...],
        identity: str,
        priority: int,
        on_change: Callable[[bool], None],
        lifetime: int = DEFAULT_LIFETIME_SECONDS,
    ) -> None:
        self.api = api
        self.name = name
        # a namespaced operator has a KopfPeering in each namespace; a cluster-wide one a
        # ClusterKopfPeering
        self.scopes: tuple[str, ...] = namespaces or ("",)
        self.identity = identity
        self.priority = priority
        self._on_change = on_change
        self._outranked = dict.fromkeys(self.scopes, True)  # standing by until we know
        self.active = False
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # the watch threads and the timers judge under one lock, so that `active` and the order
        # of the `on_change` calls agree
        self._lock = threading.RLock()
        self._bodies: dict[str, Mapping[str, Any] | None] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._reasons: dict[str, str] = {}  # the last reason to stand by, per scope (for the log)
        self.lifetime = dt.timedelta(seconds=lifetime)  # our keep-alive's, as kopf is told
        # since when each scope's peering object has been there without a gap
        self._seen_since: dict[str, dt.datetime] = {}
        self._uids: dict[str, str] = {}  # the object seen since then
        # since when the verdict has said "may act", for a scope not acting yet
        self._favourable: dict[str, dt.datetime] = {}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for scope in self.scopes:
            threading.Thread(
                target=self._follow,
                args=(scope,),
                name=f"peering-{scope or 'cluster'}",
                daemon=True,
            ).start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()

    def _path(self, scope: str) -> str:
        if scope:
            return f"/apis/kopf.dev/v1/namespaces/{scope}/kopfpeerings"
        return "/apis/kopf.dev/v1/clusterkopfpeerings"

    def _follow(self, scope: str) -> None:
        """Read the peering object, then watch it; again after any break."""
        while not self._stop.is_set():
            try:
                version = self._look(scope)
                for body in self._watch(scope, version):
                    self._judge(scope, body)
            except Exception as exc:  # an outage: stand by until we can see the peers again
                log.warning("peering %s: cannot follow the peers (%s); standing by", self.name, exc)
                self._blind(scope, f"cannot see the peering object ({exc.__class__.__name__})")
            self._stop.wait(RETRY_SECONDS)

    def _get(self, scope: str) -> dict[str, Any] | None:
        """The peering object, or None when there is none."""
        try:
            text = read_ok(send(self.api, "GET", f"{self._path(scope)}/{self.name}"))
        except ApiError as exc:
            if not exc.not_found:
                raise
            return None  # no peering object: kopf stands by too
        body: dict[str, Any] = json.loads(text)
        return body

    def _look(self, scope: str) -> str:
        body = self._get(scope)
        self._judge(scope, body)
        return str(((body or {}).get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, scope: str, version: str) -> Iterator[dict[str, Any] | None]:
        query = [
            ("watch", "true"),
            ("fieldSelector", f"metadata.name={self.name}"),
            ("timeoutSeconds", str(WATCH_SECONDS)),
        ]
        if version:
            query.append(("resourceVersion", version))
        response = send(
            self.api, "GET", self._path(scope), query=query, timeout=(10, WATCH_SECONDS + 30)
        )
        if not 200 <= response.status <= 299:
            read_ok(response)  # raises with the server's answer
        buffer = b""
        for chunk in response.response.stream(4096, decode_content=True):
            if self._stop.is_set():
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    return  # e.g. 410 Gone: look again
                yield None if event.get("type") == "DELETED" else event.get("object")

    def _judge(self, scope: str, body: Mapping[str, Any] | None) -> None:
        """Judge a scope's peering object as it is now (None: there is none)."""
        with self._lock:
            self._bodies[scope] = body
            now = dt.datetime.now(dt.UTC)
            if body is None:
                self._seen_since.pop(scope, None)
                self._favourable.pop(scope, None)
                self._verdict(scope, "no peering object", None)
                return
            uid = str((body.get("metadata") or {}).get("uid") or "")
            if self._uids.get(scope) != uid:  # the first look, or an object made anew
                self._uids[scope] = uid
                self._seen_since[scope] = now
            peers = body.get("status") or {}
            settled = self._seen_since[scope] + self.lifetime
            verdict = (self.identity, self.priority, now)
            reason = standby_reason(peers, *verdict, settled=settled)
            wake = next_verdict(peers, *verdict, settled=settled)
            if reason is None and not self._outranked[scope]:
                self._favourable.pop(scope, None)  # acting already
            elif reason is None:
                since = self._favourable.setdefault(scope, now)
                if now < since + TAKEOVER_GRACE:
                    reason = "taking over in a moment"
                    wake = (
                        since + TAKEOVER_GRACE
                        if wake is None
                        else min(wake, since + TAKEOVER_GRACE)
                    )
            else:
                self._favourable.pop(scope, None)
            self._verdict(scope, reason, wake)

    def _blind(self, scope: str, reason: str) -> None:
        """The peers cannot be seen for now: stand by (the object is not known to be gone)."""
        with self._lock:
            self._bodies.pop(scope, None)
            self._favourable.pop(scope, None)
            self._verdict(scope, reason, None)

    def _verdict(self, scope: str, reason: str | None, wake: dt.datetime | None) -> None:
        now = dt.datetime.now(dt.UTC)
        if self._stop.is_set():
            reason, wake = reason or "stopping", None
        elif wake is None and scope in self._bodies:
            # only an event could change the verdict: look again now and then all the same
            wake = now + dt.timedelta(
                seconds=min(LOOK_AGAIN_SECONDS, self.lifetime.total_seconds() / 4)
            )
        self._outranked[scope] = reason is not None
        if reason is not None:
            self._reasons[scope] = reason
        timer = self._timers.pop(scope, None)
        if timer is not None:
            timer.cancel()
        if wake is not None:
            # a moment after the deadline, so that it has passed by our clock too
            delay = (wake - now).total_seconds() + 0.05
            timer = threading.Timer(max(0.0, delay), self._again, args=(scope,))
            timer.daemon = True
            self._timers[scope] = timer
            timer.start()
        self._decide()

    def _again(self, scope: str) -> None:
        """A deadline passed with no new event: judge what we hold by our own clock at once (a
        keep-alive of ours that is late stands us by now, not after a read that may hang), then
        read the object afresh (a watch can stall without a word) and judge that."""
        with self._lock:
            if self._stop.is_set() or scope not in self._bodies:
                return  # blind: the watch thread looks again by itself
            body = self._bodies[scope]
            self._judge(scope, body)
        try:
            fresh = self._get(scope)
        except Exception as exc:
            log.warning("peering %s: cannot read the peers (%s)", self.name, exc)
            return  # the judgement above has set the next look
        with self._lock:
            if self._bodies.get(scope) is body and not self._stop.is_set():
                self._judge(scope, fresh)

    def _decide(self) -> None:
        active = not any(self._outranked.values())
        if active != self.active:
            self.active = active
            if active:
                log.info("peering %s: active", self.name)
            else:
                reasons = {self._reasons.get(s, "") for s, out in self._outranked.items() if out}
                log.info("peering %s: standing by (%s)", self.name, "; ".join(sorted(reasons)))
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._on_change, active)
