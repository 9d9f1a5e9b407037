"""Whether this operator may act, when it runs with kopf peering (`slipway run --peering NAME`).

kopf pauses its own watch streams while another peer outranks it, but not what Slipway runs beside
them: the work queue with its delayed requeues, and the periodic re-list. `PeeringGate` follows the
same KopfPeering object (read only: kopf keeps it) and applies kopf's own rule
(kopf/_core/engines/peering.py): stand by while any other live peer has a priority at least as
high as ours (an equal one pauses both, as kopf does). Like kopf with --peering, it starts standing
by, until the first look at the peers says otherwise.

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


def outranked(
    peers: Mapping[str, Mapping[str, Any]], identity: str, priority: int, now: dt.datetime
) -> bool:
    """kopf's rule: whether a live peer other than us has a priority at least as high as ours.

    `peers` is the status of a KopfPeering: identity -> {priority, lifetime, lastseen}.
    """
    for peer, info in peers.items():
        if peer == identity or not isinstance(info, Mapping):
            continue
        lifetime = dt.timedelta(seconds=int(info.get("lifetime", DEFAULT_LIFETIME_SECONDS)))
        seen = info.get("lastseen")
        last = dt.datetime.fromisoformat(seen) if isinstance(seen, str) else now
        if last.tzinfo is None:
            last = last.replace(tzinfo=dt.UTC)
        if last + lifetime <= now:
            continue  # dead: kopf cleans it up
        if int(info.get("priority", 0)) >= priority:
            return True
    return False


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
                self._judge(scope, None)
            self._stop.wait(RETRY_SECONDS)

    def _look(self, scope: str) -> str:
        try:
            text = read_ok(send(self.api, "GET", f"{self._path(scope)}/{self.name}"))
        except ApiError as exc:
            if not exc.not_found:
                raise
            self._judge(scope, None)  # no peering object: kopf stands by too
            return ""
        body: dict[str, Any] = json.loads(text)
        self._judge(scope, body)
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

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
        peers = (body or {}).get("status") or {}
        now = dt.datetime.now(dt.UTC)
        self._outranked[scope] = body is None or outranked(peers, self.identity, self.priority, now)
        active = not any(self._outranked.values())
        if active != self.active:
            self.active = active
            log.info(
                "peering %s: %s", self.name, "active" if active else "standing by behind a peer"
            )
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._on_change, active)
