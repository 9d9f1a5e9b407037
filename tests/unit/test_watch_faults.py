"""A watch that fails halfway still tells the reconcile what it stored before the failure.

The API server is replaced by a scripted one here, to inject faults the real one does not produce
on demand: a list that fails on its second page, an ERROR event after others in one read, a kind
answered 404 and then served (tests/integration/test_watch.py has the real server's side of the
404: a CRD installed after the watch started).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import slipway.watch as watch
from slipway.controller import Key, Store
from slipway.kube import ApiError
from slipway.watch import Informer, Watched
from tests.watching import Heard

pytestmark = pytest.mark.unit

MDS = Watched("ModelDeployment", "/apis/serving.slipway.dev/v1alpha1", "modeldeployments")


def md(name: str, version: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "serving.slipway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "ml", "resourceVersion": version},
        "spec": {"replicas": 1},
    }


class Answer:
    """One response of the scripted server: a list page, or a watch stream."""

    def __init__(self, status: int = 200, body: Any = None, stream: list[bytes] | None = None):
        self.status = status
        self.reason = "scripted"
        self._body = json.dumps(body or {}).encode()
        self._stream = stream or []
        self.response = self

    def read(self) -> bytes:
        return self._body

    def stream(self, _size: int) -> Iterator[bytes]:
        yield from self._stream

    def release_conn(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


class Server:
    """Answers the informer's requests from a script: lists with `lists`, watches with
    `watches`; a watch beyond the script waits (as an idle watch does) until stopped."""

    def __init__(self, lists: list[Callable[[], Answer]], watches: list[Answer]) -> None:
        self.lists, self.watches = lists, watches
        self.idle = threading.Event()

    def __call__(self, _api: Any, _method: str, _path: str, **kwargs: Any) -> Answer:
        query = dict(kwargs.get("query") or [])
        if "watch" not in query:
            answer = self.lists.pop(0)() if self.lists else Answer(body=page([], "9"))
            if answer.status == 404:
                raise ApiError(404, "NotFound", "the server could not find the resource")
            return answer
        if self.watches:
            return self.watches.pop(0)
        self.idle.wait(5)
        return Answer(stream=[])


def page(items: list[dict[str, Any]], version: str = "", token: str = "") -> dict[str, Any]:
    return {"items": items, "metadata": {"resourceVersion": version, "continue": token}}


def failing() -> Answer:
    raise ApiError(500, "InternalError", "etcd leader changed")


@pytest.fixture
def informer(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Server], Informer]]:
    monkeypatch.setattr(watch, "RETRY_SECONDS", (0.01,))
    made: list[tuple[Informer, Server]] = []

    def make(server: Server) -> Informer:
        monkeypatch.setattr(watch, "send", server)
        found = Informer(None, MDS, Store(), Heard())  # type: ignore[arg-type]
        made.append((found, server))
        found.start()
        return found

    yield make
    for found, server in made:
        found.stop()
        server.idle.set()
        found.join(5)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_list_that_fails_on_its_second_page_delivers_the_first_page_s_owners(
    informer: Callable[[Server], Informer],
) -> None:
    server = Server(
        lists=[
            lambda: Answer(body=page([md("a")], token="next")),
            failing,  # page 2 of the first list
            lambda: Answer(body=page([md("a"), md("b")], "10")),
        ],
        watches=[],
    )
    found = informer(server)
    heard: Heard = found.deliver  # type: ignore[assignment]

    wait_until("the second list", lambda: found.lists >= 2 and found.synced.is_set())
    # a stored by the failed list, so unchanged for the second one: heard of all the same
    assert heard.owners() == {Key("ml", "a"), Key("ml", "b")}


def test_events_before_an_error_event_in_one_read_are_delivered(
    informer: Callable[[Server], Informer],
) -> None:
    events = [
        {"type": "ADDED", "object": md("a", "11")},
        {"type": "ERROR", "object": {"code": 500, "reason": "InternalError"}},
    ]
    stream = [b"".join(json.dumps(e).encode() + b"\n" for e in events)]
    server = Server(lists=[lambda: Answer(body=page([], "10"))], watches=[Answer(stream=stream)])
    found = informer(server)
    heard: Heard = found.deliver  # type: ignore[assignment]

    wait_until("a to be heard of", lambda: Key("ml", "a") in heard.owners())
    assert found.store.get("ModelDeployment", "ml", "a") is not None


def test_a_kind_not_served_yet_is_asked_for_again_until_it_is(
    informer: Callable[[Server], Informer],
) -> None:
    not_found = Answer(status=404)
    server = Server(
        lists=[lambda: not_found, lambda: not_found, lambda: Answer(body=page([md("a")], "5"))],
        watches=[],
    )
    found = informer(server)
    heard: Heard = found.deliver  # type: ignore[assignment]

    assert found.wait_synced(5)  # nothing to wait for at start-up
    wait_until("a to be listed", lambda: Key("ml", "a") in heard.owners())
    assert found.alive
    assert not found.not_served.is_set()
    assert found.lists == 3
