"""Slipway's watches against the real API server: list once, then watch; go on from the last
resourceVersion when a watch ends; list afresh only when the server has forgotten that place
(410 Gone), and then drop what was deleted meanwhile."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from slipway.controller import Key, Store
from slipway.watch import Informer, Watched
from tests.conftest import Cluster, wait_until
from tests.watching import Heard

pytestmark = pytest.mark.integration

SERVICES = Watched("Service", "/api/v1", "services", "app.kubernetes.io/managed-by=slipway")


def service(name: str, owner: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "labels": {
                    "app.kubernetes.io/managed-by": "slipway",
                    "serving.slipway.dev/modeldeployment": owner,
                },
            },
            "spec": {"ports": [{"port": 80}], "selector": {"app": owner}},
        }
    )


@pytest.fixture
def informers(api_client: Any) -> Iterator[list[Informer]]:
    started: list[Informer] = []
    yield started
    for informer in started:
        informer.stop()


def start(informers: list[Informer], informer: Informer) -> Informer:
    informers.append(informer)
    informer.start()
    assert informer.wait_synced(30)
    return informer


def test_a_watch_lists_once_then_goes_on_from_where_it_was_through_its_timeouts(
    cluster: Cluster, namespace: str, api_client: Any, informers: list[Informer]
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=service("a", "fraud"))
    store, heard = Store(), Heard()
    # the server ends each of its watches after 1 to 2 seconds
    informer = start(
        informers, Informer(api_client, SERVICES, store, heard, namespace, watch_seconds=1)
    )
    assert store.get("Service", namespace, "a") is not None
    assert heard.owners() == {Key(namespace, "fraud")}

    wait_until("several watches to end", lambda: informer.watches >= 3, timeout=30)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=service("b", "iris"))
    wait_until("the new Service", lambda: store.get("Service", namespace, "b"), timeout=30)
    cluster.kubectl("delete", "service", "a", "-n", namespace)
    wait_until("the deletion", lambda: store.get("Service", namespace, "a") is None, timeout=30)

    assert Key(namespace, "iris") in heard.owners()
    assert informer.lists == 1


def test_a_watch_whose_place_is_gone_lists_afresh_and_drops_what_was_deleted_meanwhile(
    cluster: Cluster, namespace: str, api_client: Any, informers: list[Informer]
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=service("kept", "fraud"))
    store, heard = Store(), Heard()
    # what the store held before the watch stopped: one of them was deleted while it did
    for name, owner in (("kept", "fraud"), ("gone", "iris")):
        store.upsert("Service", {**json.loads(service(name, owner)), "metadata": {
            **json.loads(service(name, owner))["metadata"], "namespace": namespace}})  # fmt: skip
    # resourceVersion 1 is long compacted away: the server answers 410 Gone
    informer = start(
        informers, Informer(api_client, SERVICES, store, heard, namespace, resume_from="1")
    )

    assert informer.lists == 1
    assert store.get("Service", namespace, "gone") is None
    assert store.get("Service", namespace, "kept") is not None
    assert Key(namespace, "iris") in heard.owners()


def test_a_stopped_watch_delivers_nothing_more(
    cluster: Cluster, namespace: str, api_client: Any, informers: list[Informer]
) -> None:
    store, heard = Store(), Heard()
    informer = start(informers, Informer(api_client, SERVICES, store, heard, namespace))
    informer.stop()
    informer.join(10)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=service("late", "fraud"))
    time.sleep(2)  # what a running watch would have taken to see it

    assert not informer.alive
    assert store.get("Service", namespace, "late") is None
    assert heard.owners() == set()


def widget_crd(group: str) -> str:
    return json.dumps(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"widgets.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": {"type": "object"}},
                    }
                ],
            },
        }
    )


def test_a_kind_installed_after_its_watch_started_is_watched_once_it_is_served(
    cluster: Cluster, namespace: str, api_client: Any, informers: list[Informer]
) -> None:
    """What Argo CD or Flux do when they apply a CRD and the operator together: the operator's
    first list of the kind is answered 404. The watch must not give up on it for good."""
    group = f"{namespace}.test.slipway.dev"
    widgets = Watched("Widget", f"/apis/{group}/v1", "widgets")
    store, heard = Store(), Heard()
    informer = start(informers, Informer(api_client, widgets, store, heard, namespace))
    assert informer.not_served.is_set()  # synced all the same: nothing to wait for
    try:
        cluster.kubectl("apply", "-f", "-", input=widget_crd(group))
        cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s"
        )
        widget = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {
                "name": "w",
                "labels": {"serving.slipway.dev/modeldeployment": "fraud"},
            },
        }
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(widget))
        wait_until("the widget", lambda: store.get("Widget", namespace, "w"), timeout=60)
    finally:
        cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)
    assert Key(namespace, "fraud") in heard.owners()
    assert informer.alive and not informer.not_served.is_set()
