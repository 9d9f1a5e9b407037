"""Bad input, applied as updates to a ModelDeployment that serves: the API server refuses what the
schema forbids; what passes the schema but cannot be served is reported in a condition or an Event.
None of it crashes the operator or touches the stable revision that serves."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiException

from tests.chaos.conftest import (
    SCALE,
    Api,
    ReadyFloor,
    Snapshot,
    model_deployment,
    report,
    until,
    wait_consistent,
)
from tests.conftest import Cluster
from tests.e2e.conftest import Operator

pytestmark = pytest.mark.chaos

CORPUS_FILE = Path(__file__).resolve().parents[1] / "data" / "invalid-modeldeployments.yaml"
CORPUS: list[dict[str, Any]] = yaml.safe_load(CORPUS_FILE.read_text(encoding="utf-8"))
V2 = {"version": "2.0.0", "format": "sklearn"}


def stable_deployment(snapshot: Snapshot, name: str) -> dict[str, Any]:
    revision = snapshot.mds[name]["status"]["stable"]["revision"]
    return next(
        d for d in snapshot.owned("Deployment", name) if d["metadata"]["name"].endswith(revision)
    )


def replaced(api: Api, name: str, obj: dict[str, Any]) -> bool:
    """PUT `obj` in place of the ModelDeployment `name`: whether the API server took it."""
    for _ in range(5):
        body = copy.deepcopy(obj)
        body["metadata"] = {
            "name": name,
            "resourceVersion": api.md(name)["metadata"]["resourceVersion"],
        }
        try:
            api.replace_md(body)
        except ApiException as exc:
            if exc.status == 409:
                continue  # its status changed meanwhile: a conflict is no verdict on the spec
            assert exc.status in (400, 422), (obj, exc.status, exc.body)
            return False
        return True
    raise AssertionError(f"5 conflicts in a row replacing {name}")


def test_the_invalid_corpus_is_refused_and_the_serving_revision_never_notices(
    api: Api, operator: Operator
) -> None:
    api.create(model_deployment("victim", steps=[]))
    before, _ = wait_consistent(api, SCALE.converge_seconds, ["victim"], "the victim to serve")
    # a name cannot change on an update: the cases about metadata.name are refused at creation
    # (tests/integration/test_crd_validation.py)
    updates = [case for case in CORPUS if case["expect"][0] != "metadata.name"]
    accepted = [case["name"] for case in updates if replaced(api, "victim", case["object"])]
    assert not accepted, f"the API server accepted {accepted}"
    after, _ = wait_consistent(api, 30, ["victim"], "the victim after the corpus")
    assert (
        after.mds["victim"]["metadata"]["generation"]
        == before.mds["victim"]["metadata"]["generation"]
    )
    assert stable_deployment(after, "victim")["spec"] == stable_deployment(before, "victim")["spec"]
    assert operator.proc is not None and operator.proc.poll() is None
    # a conflict is a stale read retried at once, not a failure
    errors = operator.metric("slipway_reconcile_errors_total")
    assert errors == operator.metric("slipway_reconcile_errors_total", reason="conflict")
    report(f"bad input: {len(CORPUS)} invalid ModelDeployments refused by the API server")


def model(name: str, **extra: Any) -> dict[str, Any]:
    return {"model": {**V2, "uri": f"s3://models/{name}/2.0.0", **extra}}


# name, the update, words that the condition or Event must contain, whether a canary pod can run
UNSERVABLE: list[tuple[str, dict[str, Any], list[str], bool]] = [
    (
        "claim",
        {"model": {**V2, "uri": "pvc://no-such-claim/model"}},
        ["no-such-claim"],
        False,
    ),
    # A missing imagePullSecret is not here: the operator has no access to Secrets (least
    # privilege, by design), and KWOK pulls no image. On a real cluster the kubelet's
    # ImagePullBackOff names the pod and the progress deadline rolls the canary back.
    (
        "huge",
        {
            **model("huge"),
            "resources": {"requests": {"cpu": "1000", "memory": "10Ti"}},
            "rollout": {"progressDeadlineSeconds": 15},
        },
        ["ProgressDeadlineExceeded"],
        False,
    ),
    (
        "route",
        {
            **model("route"),
            "rollout": {"trafficRouting": {"gatewayAPI": {"httpRoute": "no-such-route"}}},
        },
        ["no-such-route"],
        True,
    ),
    (
        "prometheus",
        {
            **model("prometheus"),
            "rollout": {
                "analysis": {
                    "interval": "2s",
                    "prometheus": {"address": "http://127.0.0.1:9"},
                    "metrics": [{"name": "error-rate", "query": "vector(0)", "max": 0.01}],
                }
            },
        },
        ["127.0.0.1:9"],
        True,
    ),
]


def said(api: Api, name: str, words: list[str]) -> str | None:
    """A condition message or Warning Event of `name` that contains all of `words`."""
    md = api.md(name)
    texts = [
        f"{c['reason']}: {c['message']}"
        for c in (md.get("status") or {}).get("conditions") or []
        if c["type"] in ("Degraded", "Progressing", "Ready")
    ]
    texts += [
        f"{e.get('reason')}: {e.get('message')}"
        for e in api.warning_events()
        if (e.get("involvedObject") or {}).get("name") == name
    ]
    return next((t for t in texts if all(w in t for w in words)), None)


def test_specs_that_cannot_be_served_are_reported_and_the_stable_revision_keeps_serving(
    cluster: Cluster, namespace: str, api: Api, operator: Operator
) -> None:
    names = [name for name, *_ in UNSERVABLE]
    for name in names:
        api.create(model_deployment(name, steps=[{"setWeight": 50}, {"pause": {"duration": "1h"}}]))
    before, _ = wait_consistent(api, SCALE.converge_seconds, names, "every victim to serve")
    errors_before = operator.metric("slipway_reconcile_errors_total")

    with ReadyFloor(Api(cluster, namespace), dict.fromkeys(names, 2)) as floor:
        for name, spec, _, _ in UNSERVABLE:
            api.patch_md(name, {"spec": spec})
        messages = {}
        missing = []
        for name, _, words, _ in UNSERVABLE:
            try:
                messages[name] = until(
                    f"{name} to say {words}", lambda n=name, w=words: said(api, n, w), 60
                )
            except AssertionError:
                missing.append(f"{name}: nothing says {words}")
        after = Snapshot.read(api)

    assert not missing, missing
    assert not floor.breaches, floor.breaches
    for name, _, _, canary_runs in UNSERVABLE:
        status = after.mds[name]["status"]
        assert status["stable"]["revision"] == before.mds[name]["status"]["stable"]["revision"]
        was, now = stable_deployment(before, name)["spec"], stable_deployment(after, name)["spec"]
        assert now["template"] == was["template"], name
        if not canary_runs:
            assert now["replicas"] == was["replicas"], name
    assert operator.proc is not None and operator.proc.poll() is None, operator.log_tail()
    errors = operator.metric("slipway_reconcile_errors_total") - errors_before
    assert errors <= 10, f"{errors} reconcile errors: {operator.log_tail()}"
    report(
        "unservable specs: "
        + "; ".join(f"{name}: {messages.get(name, '')[:120]}" for name in names)
        + f"; reconcile errors {errors:.0f}"
    )
