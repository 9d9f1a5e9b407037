"""A decision's Events never hold up its children (the operator posts them from `EventPoster`).

The reconcile runs in this process against the real API server, as the operator runs it. The
Event POSTs hang until the test lets them go (an API server that takes seconds to answer an Event
while it answers everything else: a fault the real one does not make on demand). The suite's
operator is stopped meanwhile, so that this process alone reconciles.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from slipway.controller import Key, Store
from slipway.events import EventPoster
from slipway.kube import Kube
from slipway.reconcile import Reconciler
from slipway.resources.names import deployment_name
from tests.conftest import Cluster, wait_until
from tests.e2e.conftest import Operator
from tests.governance import model_deployment


class HeldEventsKube(Kube):
    """A Kube whose Event POSTs wait until `released` is set; every other write goes at once."""

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.released = threading.Event()
        self.holding: list[str] = []

    def post_event(self, event: Mapping[str, Any]) -> None:
        self.holding.append(event["reason"])
        assert self.released.wait(120), "the test never let the Event go"
        super().post_event(event)


def stored(cluster: Cluster, namespace: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "md", "fraud", "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out))


def reasons(cluster: Cluster, namespace: str) -> list[str]:
    out = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    return [
        e["reason"]
        for e in json.loads(out)["items"]
        if e["involvedObject"]["name"] == "fraud" and e["source"].get("component") == "slipway"
    ]


def test_a_decision_writes_its_children_while_its_event_is_still_on_its_way(
    cluster: Cluster, crds: None, namespace: str, api_client: Any, operator: Operator
) -> None:
    operator.stop()
    kube = HeldEventsKube(api_client)
    events = EventPoster(kube, senders=1)
    try:
        md = model_deployment("fraud")
        # an action: the first reconcile writes its status at once (not when the pods are up)
        md["metadata"]["annotations"] = {"serving.slipway.dev/action": "pause"}
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(md))
        store = Store()
        store.upsert("ModelDeployment", stored(cluster, namespace))
        decided: list[str] = []

        def emit(owner: Mapping[str, Any], type_: str, reason: str, *rest: Any) -> None:
            decided.append(reason)
            events.emit(owner, type_, reason, *rest)

        reconciler = Reconciler(kube=kube, store=store, emit_event=emit)

        reconciler.reconcile(Key(namespace, "fraud"))

        # the reconcile is over: its status and its children are written, its Event is not
        status = stored(cluster, namespace)["status"]
        assert status["lastAction"].startswith("pause at ")
        revision = status["stable"]["revision"]
        # (kubectl fails the test if it is not there)
        cluster.kubectl("get", "deployment", deployment_name("fraud", revision), "-n", namespace)
        assert decided[:1] == ["Deploying"] and "ActionIgnored" in decided, decided
        wait_until("its first Event in the sender's hands", lambda: kube.holding, 10)
        assert kube.holding == decided[:1]
        assert reasons(cluster, namespace) == []

        kube.released.set()
        wait_until(
            "its Events posted", lambda: sorted(reasons(cluster, namespace)) == sorted(decided), 30
        )
        assert events.close(timeout=10)
    finally:
        kube.released.set()
        events.close(timeout=10)
        operator.start()
