"""Slipway writes and deletes only what is its own (the real API server, KWOK pods).

A child's name is the ModelDeployment's and a suffix, so another object may have it: a user's
own Service from before Slipway (a migration), or another ModelDeployment's child (`iris-stable`
the ModelDeployment has Service `iris-stable`, and so does `iris`). Such an object is never taken
over: the write is not sent and `Degraded` (NameTaken) names it. And what only carries Slipway's
labels (a copy of a Service, an orphan) is never deleted as a stale child.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Driver
from tests.e2e.test_canary import condition
from tests.e2e.test_serving import sklearn

pytestmark = pytest.mark.usefixtures("operator")


def legacy_service(name: str) -> dict[str, Any]:
    """The Service of what served the model before Slipway did."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": f"legacy-{name}"}},
        "spec": {
            "selector": {"app": f"legacy-{name}"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }


def name_taken(k: Driver, name: str, what: str) -> dict[str, Any] | None:
    degraded = condition(k.md(name).get("status") or {}, "Degraded")
    found = degraded.get("reason") == "NameTaken" and what in degraded.get("message", "")
    return degraded if found else None


def test_a_users_own_service_named_after_the_model_is_never_taken_over(k: Driver) -> None:
    k.apply(legacy_service("iris"))
    k.apply(sklearn("iris", replicas=1))
    degraded = k.wait(
        "NameTaken naming Service iris", lambda: name_taken(k, "iris", "Service iris:")
    )
    assert "not Slipway's" in degraded["message"], degraded

    service = k.get("service", "iris")
    assert service is not None
    assert service["spec"]["selector"] == {"app": "legacy-iris"}
    assert not service["metadata"].get("ownerReferences")
    # the rest is built and serves: the stable Service and the pods
    k.wait("iris's pod Ready", lambda: k.ready_pods("iris") == 1)
    stable = k.get("service", "iris-stable")
    assert stable is not None and stable["spec"]["selector"]["serving.slipway.dev/modeldeployment"]

    # once the user's Service is gone, Slipway's takes the name (a refused write is tried again)
    k.cluster.kubectl("delete", "service", "iris", "-n", k.ns)
    ours = k.wait(
        "Service iris to be Slipway's",
        lambda: (s := k.get("service", "iris")) and s["metadata"].get("ownerReferences") and s,
    )
    assert ours["spec"]["selector"] == {"serving.slipway.dev/modeldeployment": "iris"}
    k.wait("NameTaken to clear", lambda: name_taken(k, "iris", "Service iris:") is None)


def test_a_modeldeployment_whose_childs_name_is_anothers_service_takes_nothing_from_it(
    k: Driver,
) -> None:
    k.apply(sklearn("iris-stable", replicas=1))
    k.wait_phase("iris-stable", "Ready")
    theirs = k.get("service", "iris-stable")
    assert theirs is not None

    k.apply(sklearn("iris", replicas=1))
    degraded = k.wait(
        "NameTaken naming Service iris-stable",
        lambda: name_taken(k, "iris", "Service iris-stable:"),
    )
    assert "controlled by ModelDeployment 'iris-stable'" in degraded["message"], degraded
    k.wait("iris's pod Ready", lambda: k.ready_pods("iris") == 1)
    assert k.get("service", "iris") is not None

    after = k.get("service", "iris-stable")
    assert after is not None
    assert after["spec"]["selector"] == theirs["spec"]["selector"]
    assert after["metadata"]["ownerReferences"] == theirs["metadata"]["ownerReferences"]
    assert k.md("iris-stable")["status"]["phase"] == "Ready"


def test_a_copy_of_a_child_carrying_its_labels_is_not_deleted_as_stale(k: Driver) -> None:
    k.apply(sklearn("iris", replicas=1))
    k.wait_phase("iris", "Ready")
    original = k.get("service", "iris")
    assert original is not None
    # `kubectl get svc iris -o yaml`, renamed, its server-set fields and owner taken out
    copy = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "iris-public", "labels": original["metadata"]["labels"]},
        "spec": {"selector": original["spec"]["selector"], "ports": original["spec"]["ports"]},
    }
    k.apply(copy)
    k.patch("md", "iris", {"spec": {"replicas": 2}})
    k.wait("iris to serve 2 pods", lambda: k.ready_pods("iris") == 2)
    k.wait_phase("iris", "Ready")
    assert k.get("service", "iris-public") is not None
