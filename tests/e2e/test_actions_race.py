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

import json
from typing import Any

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
