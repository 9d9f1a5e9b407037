"""An action is never lost to a write race (issue 14: approvals given at once): the reconcile takes
the action annotation off the object first (so a crash may lose it, never repeat it), then writes
its decision to status with the object's resourceVersion as a precondition. When another write
lands in between (the next person's promote, the moment the first is taken), the status write is
refused with a conflict, and the decision runs again with the same action.

The reconcile runs in this process against the real API server; the other write is a real one,
made by the test at that worst moment (the Kube below writes it just before the status write).
The suite's operator is stopped meanwhile, so that this process alone takes the action.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import urllib3

from slipway.controller import Key, Store
from slipway.kube import Kube
from slipway.reconcile import Reconciler
from tests.conftest import Cluster
from tests.e2e.conftest import Operator
from tests.governance import model_deployment


class RacingKube(Kube):
    """A Kube whose first status write comes just after someone else's write of the object."""

    def __init__(self, api: Any, cluster: Cluster, namespace: str) -> None:
        super().__init__(api)
        self.cluster, self.namespace = cluster, namespace
        self.raced = 0

    def patch_status(
        self, namespace: str, name: str, status: Any, resource_version: str
    ) -> dict[str, Any]:
        if not self.raced:
            self.raced += 1
            self.cluster.kubectl("annotate", "md", name, "-n", namespace, "someone-else=wrote")
        return super().patch_status(namespace, name, status, resource_version)


def stored(cluster: Cluster, namespace: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "md", "fraud", "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out))


def test_an_action_whose_decision_lost_a_write_race_is_decided_again(
    cluster: Cluster, crds: None, namespace: str, api_client: Any, operator: Operator
) -> None:
    operator.stop()
    try:
        decided_again(cluster, namespace, api_client)
    finally:
        operator.start()


def decided_again(cluster: Cluster, namespace: str, api_client: Any) -> None:
    md = model_deployment("fraud")
    md["metadata"]["annotations"] = {"serving.slipway.dev/action": "pause"}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(md))
    store = Store()
    store.upsert("ModelDeployment", stored(cluster, namespace))
    kube = RacingKube(api_client, cluster, namespace)
    reconciler = Reconciler(kube=kube, store=store)
    key = Key(namespace, "fraud")

    assert reconciler.reconcile(key) == 0.1  # the status write lost the race: run again soon
    after_race = stored(cluster, namespace)
    assert "serving.slipway.dev/action" not in after_race["metadata"]["annotations"]  # taken
    assert "lastAction" not in (after_race.get("status") or {})

    store.upsert("ModelDeployment", after_race)  # what the watch brings
    reconciler.reconcile(key)

    assert kube.raced == 1
    assert stored(cluster, namespace)["status"]["lastAction"].startswith("pause at ")


class DeletingKube(Kube):
    """A Kube whose status write comes just after the ModelDeployment was deleted (as when its
    namespace is torn down while a pod's event runs its reconcile)."""

    def __init__(self, api: Any, cluster: Cluster) -> None:
        super().__init__(api)
        self.cluster = cluster
        self.deleted = 0

    def patch_status(
        self, namespace: str, name: str, status: Any, resource_version: str
    ) -> dict[str, Any]:
        if not self.deleted:
            self.deleted += 1
            self.cluster.kubectl("delete", "md", name, "-n", namespace, "--wait=true")
        return super().patch_status(namespace, name, status, resource_version)


def test_a_modeldeployment_deleted_under_its_reconcile_is_no_error(
    cluster: Cluster, crds: None, namespace: str, api_client: Any, operator: Operator
) -> None:
    """The status write of an object deleted since it was read answers 404: the reconcile runs
    again soon (as after a conflict), and once the watch has said it is gone, it forgets it. It
    is never a failed reconcile (seen in the e2e suite: a namespace torn down while a pod's
    event ran the reconcile of its ModelDeployment)."""
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(model_deployment("fraud"))
    )
    # served first (by the suite's operator): its next status, read without its pods, differs
    cluster.kubectl(
        "wait",
        "md/fraud",
        "-n",
        namespace,
        "--for=jsonpath={.status.phase}=Ready",
        "--timeout=110s",
    )
    operator.stop()
    try:
        store = Store()
        read = stored(cluster, namespace)
        store.upsert("ModelDeployment", read)
        kube = DeletingKube(api_client, cluster)
        reconciler = Reconciler(kube=kube, store=store)
        key = Key(namespace, "fraud")

        assert reconciler.reconcile(key) == 0.1  # the object went under it: run again soon
        store.remove("ModelDeployment", read)  # what the watch brings
        assert reconciler.reconcile(key) is None
        assert kube.deleted == 1
    finally:
        operator.start()


class TimingOutKube(Kube):
    """A Kube whose first status write lands on the server but whose answer never comes back
    (a read timeout: a fault the real API server does not make on demand)."""

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.lost = 0

    def patch_status(
        self, namespace: str, name: str, status: Any, resource_version: str
    ) -> dict[str, Any]:
        written = super().patch_status(namespace, name, status, resource_version)
        if not self.lost:
            self.lost += 1
            raise urllib3.exceptions.ReadTimeoutError(None, "/status", "read timed out")
        return written


def test_an_action_whose_written_decision_was_not_answered_is_not_decided_twice(
    cluster: Cluster, crds: None, namespace: str, api_client: Any, operator: Operator
) -> None:
    """A promote decided twice skips two steps. When the status write's answer is lost, the next
    run finds the decision on the object (its lastAction) and does not take the action again."""
    operator.stop()
    try:
        md = model_deployment("fraud")
        md["metadata"]["annotations"] = {"serving.slipway.dev/action": "pause"}
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(md))
        store = Store()
        store.upsert("ModelDeployment", stored(cluster, namespace))
        ticks = iter(range(100))

        def clock() -> dt.datetime:  # a minute later at each reading
            return dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=next(ticks))

        reconciler = Reconciler(kube=TimingOutKube(api_client), store=store, clock=clock)
        key = Key(namespace, "fraud")

        with pytest.raises(urllib3.exceptions.ReadTimeoutError):
            reconciler.reconcile(key)
        first = stored(cluster, namespace)
        written = first["status"]["lastAction"]
        assert written.startswith("pause at ")  # it landed

        store.upsert("ModelDeployment", first)  # what the watch brings
        reconciler.reconcile(key)
        assert stored(cluster, namespace)["status"]["lastAction"] == written
    finally:
        operator.start()
