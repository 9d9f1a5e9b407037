"""A reconcile applies its children side by side (issue 16: rollbacks of 50 at once): under load the
API server takes seconds over a create (50 canary Services at once took 1.7 to 2.2 s each), and a
worker that applied a new revision's Deployment and Services one after another held every
ModelDeployment queued behind it for their sum.

The reconcile runs in this process against the real API server, with the suite's operator stopped
meanwhile. The Kubes below only hold each apply back for a second (a slow API server) or fail
one (a 500, which the real server gives only when it is in trouble): faults the real system
cannot be made to produce on demand.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from slipway.controller import Key, Store
from slipway.kube import ApiError, Kube
from slipway.reconcile import Reconciler
from tests.conftest import Cluster
from tests.e2e.conftest import Operator
from tests.governance import model_deployment


class SlowKube(Kube):
    """A Kube whose applies each take a second more, counting how many are under way at once."""

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_at_once = 0
        self.applied: list[str] = []

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.in_flight += 1
            self.most_at_once = max(self.most_at_once, self.in_flight)
            self.applied.append(f"{obj['kind']}/{obj['metadata']['name']}")
        try:
            time.sleep(1.0)
            return super().apply(obj)
        finally:
            with self.lock:
                self.in_flight -= 1


class FailingKube(Kube):
    """A Kube whose Deployment applies fail as an API server in trouble answers them."""

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.applied: list[str] = []

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "Deployment":
            raise ApiError(500, "Internal Server Error", "etcdserver: request timed out")
        self.applied.append(f"{obj['kind']}/{obj['metadata']['name']}")
        return super().apply(obj)


@pytest.fixture
def writers() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="child-write")
    yield executor
    executor.shutdown(wait=True)


@pytest.fixture
def new(cluster: Cluster, crds: None, namespace: str, operator: Operator) -> Iterator[Store]:
    """A store holding a new ModelDeployment `fraud` as the API server stored it, with the suite's
    operator stopped meanwhile: this process alone reconciles it."""
    operator.stop()
    try:
        cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=json.dumps(model_deployment("fraud"))
        )
        out = cluster.kubectl("get", "md", "fraud", "-n", namespace, "-o", "json").stdout
        store = Store()
        store.upsert("ModelDeployment", json.loads(out))
        yield store
    finally:
        operator.start()


def names(cluster: Cluster, namespace: str, kind: str) -> set[str]:
    out = cluster.kubectl("get", kind, "-n", namespace, "-o", "name").stdout
    return {line.split("/", 1)[1] for line in out.split()}


def test_a_new_revisions_deployment_and_services_are_applied_side_by_side(
    cluster: Cluster, namespace: str, api_client: Any, new: Store, writers: ThreadPoolExecutor
) -> None:
    kube = SlowKube(api_client)
    Reconciler(kube=kube, store=new, writers=writers).reconcile(Key(namespace, "fraud"))

    deployments = [a.split("/")[1] for a in kube.applied if a.startswith("Deployment/")]
    assert len(deployments) == 1 and "Service/fraud" in kube.applied, kube.applied
    assert kube.most_at_once == len(kube.applied)  # every apply under way at once
    assert names(cluster, namespace, "deployment") == set(deployments)
    assert "fraud" in names(cluster, namespace, "service")


def test_a_failed_child_apply_lets_the_others_end_and_fails_the_reconcile(
    cluster: Cluster, namespace: str, api_client: Any, new: Store, writers: ThreadPoolExecutor
) -> None:
    """The Deployment's apply fails (a 500); the Service's, under way beside it, is written all the
    same, and the reconcile fails with the 500 once both have ended (the queue retries it, with
    backoff). The next reconcile creates the Deployment."""
    key = Key(namespace, "fraud")
    failing = FailingKube(api_client)
    with pytest.raises(ApiError) as failed:
        Reconciler(kube=failing, store=new, writers=writers).reconcile(key)

    assert failed.value.status == 500
    assert "Service/fraud" in failing.applied
    assert "fraud" in names(cluster, namespace, "service")
    assert not names(cluster, namespace, "deployment")

    Reconciler(kube=Kube(api_client), store=new, writers=writers).reconcile(key)
    assert len(names(cluster, namespace, "deployment")) == 1
