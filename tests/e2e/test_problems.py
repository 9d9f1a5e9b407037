"""What goes wrong is said, once, and never stops what must go on (issue 15, items 4, 6, 7, 8).

Faults come from the real API server: a ValidatingAdmissionPolicy refuses a write, a ResourceQuota
or Pod Security refuses pods, a claim or an HTTPRoute does not exist.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster
from tests.e2e.conftest import Driver, Operator, OperatorFactory, canary_model_deployment
from tests.e2e.test_canary import V2, canary, canary_md, condition, start, status

pytestmark = pytest.mark.usefixtures("operator")

ACTION = "serving.slipway.dev/action"


def conditions_say(k: Driver, name: str, *words: str) -> dict[str, Any] | None:
    """The status, once one condition's message says all of `words`."""
    st = status(k, name)
    for c in st.get("conditions") or []:
        if all(w in c.get("message", "") for w in words):
            return st
    return None


def events(k: Driver, name: str, reason: str) -> list[dict[str, Any]]:
    out = k.cluster.kubectl(
        "get", "events", "-n", k.ns, "-o", "json",
        "--field-selector", f"involvedObject.name={name},reason={reason}",
    ).stdout  # fmt: skip
    return list(json.loads(out)["items"])


@contextlib.contextmanager
def admission_policy(
    cluster: Cluster, namespace: str, operation: str, expression: str, message: str
) -> Iterator[None]:
    """A ValidatingAdmissionPolicy that refuses `operation` on Deployments of the namespace
    unless `expression` holds; in force (a server-side dry run is refused) when entered."""
    name = f"h-{uuid.uuid4().hex[:8]}"
    rule = {
        "apiGroups": ["apps"],
        "apiVersions": ["v1"],
        "operations": [operation],
        "resources": ["deployments"],
    }
    manifests = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [rule]},
                "validations": [{"expression": expression, "message": message}],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    ]
    probe = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "policy-probe", "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "policy-probe"}},
            "template": {
                "metadata": {"labels": {"app": "policy-probe"}},
                "spec": {"containers": [{"name": "c", "image": "probe"}]},
            },
        },
    }
    try:
        for manifest in manifests:
            cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        if operation == "UPDATE":
            cluster.kubectl("apply", "-f", "-", input=json.dumps(probe))
            probe["spec"]["replicas"] = 1  # type: ignore[index]
            cluster.kubectl("apply", "-f", "-", input=json.dumps(probe))
            probe["spec"]["replicas"] = 0  # type: ignore[index]
        deadline = time.monotonic() + 30
        while (
            message
            not in cluster.kubectl(
                "apply", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False
            ).stderr
        ):
            assert time.monotonic() < deadline, "the admission policy never came into force"
            time.sleep(0.5)
        yield
    finally:
        for manifest in reversed(manifests):
            kind = manifest["kind"].lower()
            cluster.kubectl("delete", kind, name, "--ignore-not-found", check=False)


def quota(k: Driver, pods: int) -> None:
    k.apply({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "pods"},
        "spec": {"hard": {"pods": str(pods)}},
    })  # fmt: skip


# -- item 4: an unservable spec stops nothing that must go on --------------------------------------


@pytest.mark.usefixtures("kwok_faults")
def test_an_unservable_new_spec_keeps_judging_the_canary_and_scaling_the_stable(
    k: Driver,
) -> None:
    start(k, canary_md(progressDeadlineSeconds=20))
    never_ready = {"template": {"labels": {"slipway.test/fault": "not-ready"}}}
    k.patch("md", "fraud", {"spec": {**V2, **never_ready}})
    k.wait("the canary", lambda: canary(k).get("revision"))

    missing = {"model": {"version": "3.0.0", "uri": "pvc://no-such-claim/fraud"}}
    k.patch("md", "fraud", {"spec": missing})
    k.wait("a condition naming the field", lambda: conditions_say(k, "fraud", "spec.model.uri"))
    k.cluster.kubectl("scale", "md/fraud", "--replicas=5", "-n", k.ns)

    st = k.wait(
        "the canary to be rolled back at its deadline all the same",
        lambda: (s := status(k)).get("phase") == "RolledBack" and s,
    )
    assert conditions_say(k, "fraud", "no-such-claim"), st["conditions"]
    stable = st["stable"]["revision"]
    k.wait(
        "the stable revision to follow kubectl scale",
        lambda: (d := k.get("deployment", f"fraud-{stable}")) and d["spec"]["replicas"] == 5,
    )

    # an action consumed while the spec cannot be served is answered, not dropped
    k.cluster.kubectl("annotate", "md/fraud", f"{ACTION}=promote", "-n", k.ns)
    ignored = k.wait("an ActionIgnored Event", lambda: events(k, "fraud", "ActionIgnored"))
    assert "spec.model.uri" in ignored[-1]["message"]
    assert ACTION not in (k.md("fraud")["metadata"].get("annotations") or {})


def test_a_spec_the_api_server_refuses_to_build_ends_in_a_condition_naming_the_field(
    k: Driver,
) -> None:
    """template.tolerations are Kubernetes objects the CRD keeps as they are; one with an effect
    Kubernetes does not know is refused by the API server when the Deployment is applied: the
    condition carries the server's words, which name the field, within moments."""
    md = canary_model_deployment("fraud", [], replicas=1)
    md["spec"]["template"] = {"tolerations": [{"key": "gpu", "effect": "Sometimes"}]}
    k.apply(md)
    st = k.wait(
        "a condition naming the field",
        lambda: conditions_say(k, "fraud", "tolerations[0].effect", "Unsupported value"),
    )
    assert st["phase"] == "Failed"
    assert condition(st, "Stalled").get("status") == "True"


# -- item 6: one condition writer: reconciles that change nothing write nothing --------------------


def test_a_missing_httproute_is_reported_and_reconciles_then_write_nothing(
    k: Driver, operator: Operator
) -> None:
    routed = {"trafficRouting": {"gatewayAPI": {"httpRoute": "no-such-route"}}}
    k.apply(canary_md(replicas=2, **routed))
    k.wait("the route to be reported", lambda: conditions_say(k, "fraud", "no-such-route"))
    k.wait_phase("fraud", "Ready")
    time.sleep(2)  # the last watch events of the first rollout settle
    version = k.md("fraud")["metadata"]["resourceVersion"]
    reconciles = operator.metric("slipway_reconcile_total")
    # pods change in ways Slipway does not read: each change is one reconcile that decides nothing
    for poke in range(5):
        k.cluster.kubectl("label", "pods", "--all", f"poke={poke}", "--overwrite", "-n", k.ns)
        time.sleep(1.5)
    assert operator.metric("slipway_reconcile_total") > reconciles
    assert k.md("fraud")["metadata"]["resourceVersion"] == version, "status was rewritten"
    assert condition(status(k), "Degraded")["reason"] == "TrafficRoutingUnavailable"


# -- item 7: what must be recorded is recorded -----------------------------------------------------


@pytest.mark.usefixtures("kwok_faults")
def test_the_rollback_event_and_count_survive_a_refused_scale_down(
    k: Driver, cluster: Cluster, operator: Operator
) -> None:
    """The rollback is decided and written to status, then the API server refuses the canary's
    scale-down: the RolledBack Event and slipway_rollouts_total are recorded all the same, and a
    condition names the refusal."""
    start(k, canary_md(replicas=2))
    rolled_back = operator.metric("slipway_rollouts_total", outcome="rolled_back")
    with admission_policy(
        cluster, k.ns, "UPDATE", "object.spec.replicas > 0", "scale-down refused by test policy"
    ):
        crash = {"template": {"labels": {"slipway.test/fault": "crash"}}}
        k.patch("md", "fraud", {"spec": {**V2, **crash}})
        k.wait("the rollback", lambda: status(k).get("phase") == "RolledBack")
        k.wait("the RolledBack Event", lambda: events(k, "fraud", "RolledBack"))
        k.wait(
            "the rollback to be counted",
            lambda: (
                operator.metric("slipway_rollouts_total", outcome="rolled_back") == rolled_back + 1
            ),
        )
        k.wait(
            "a condition with the server's message",
            lambda: conditions_say(k, "fraud", "scale-down refused by test policy"),
        )
    k.wait(
        "the refusal to be forgotten once the write goes through",
        lambda: not conditions_say(k, "fraud", "refused by test policy"),
    )
    revision = canary(k)["revision"]
    k.wait(
        "the canary at zero",
        lambda: (
            (d := k.get("deployment", f"fraud-{revision}")) is None or d["spec"]["replicas"] == 0
        ),
    )


def test_a_refused_deployment_is_named_in_a_condition_with_the_servers_message(
    k: Driver, cluster: Cluster
) -> None:
    start(k, canary_md(replicas=2))
    with admission_policy(cluster, k.ns, "CREATE", "false", "no new Deployments: test policy"):
        k.patch("md", "fraud", {"spec": V2})
        st = k.wait(
            "a condition with the server's message",
            lambda: conditions_say(k, "fraud", "no new Deployments: test policy"),
        )
        assert condition(st, "Degraded")["status"] == "True"
        assert st["stable"]["readyReplicas"] == 2


def test_a_canary_blocked_by_a_resource_quota_says_so_at_once(k: Driver) -> None:
    """The canary's pods exceed the namespace's pod quota: its ReplicaSet cannot create them. The
    condition says so long before the progress deadline (600 s)."""
    start(k, canary_md(replicas=2))
    quota(k, pods=2)
    k.patch("md", "fraud", {"spec": V2})
    st = k.wait("the quota to be named", lambda: conditions_say(k, "fraud", "exceeded quota"))
    assert st["phase"] == "Progressing"
    assert condition(st, "Degraded")["reason"] == "FailedCreate"


@pytest.mark.usefixtures("kwok_faults")
def test_every_decision_is_logged_as_structured_json(
    k: Driver, own_operators: OperatorFactory
) -> None:
    op = own_operators("--log-format", "json")
    start(k, canary_md(steps=[{"setWeight": 25}, {"pause": {}}]))
    k.patch("md", "fraud", {"spec": V2})
    k.wait("the pause", lambda: status(k).get("phase") == "Paused")
    k.plugin("promote", "fraud")
    k.wait_phase("fraud", "Ready")
    crash = {"template": {"labels": {"slipway.test/fault": "crash"}}}
    k.patch("md", "fraud", {"spec": {"model": {"version": "3.0.0", "uri": "s3://m/3"}, **crash}})
    k.wait("the rollback", lambda: status(k).get("phase") == "RolledBack")

    reasons = ("CanaryStarted", "CanaryStep", "Promote", "Promoted", "RolledBack")

    def logged() -> dict[str, dict[str, Any]] | None:
        """The last record of each reason, once every one of `reasons` is logged."""
        records = {}
        for line in op.log().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("reason"):
                    records[record["reason"]] = record
        return records if set(reasons) <= set(records) else None

    # a decision's log line follows its status write: the phase can be read before it is logged
    by_reason = k.wait(f"{', '.join(reasons)} in the log", logged, timeout=30)
    for reason in reasons:
        assert reason in by_reason, f"no {reason} in {sorted(by_reason)}"
        record = by_reason[reason]
        assert record["object"]["namespace"] == k.ns, record
        assert record["object"]["name"] == "fraud", record
        assert record["revision"], record
        assert record["severity"] in ("info", "warn"), record
    assert "step" in by_reason["CanaryStep"]


# -- item 8: pods the cluster refuses to create ----------------------------------------------------


@pytest.mark.parametrize(
    "refusal, phase",
    [
        ("pod-security", "Failed"),  # no pod at all: nothing serves
        ("quota", "Degraded"),  # one of two pods: it serves, not at full size
    ],
)
def test_pods_the_cluster_refuses_are_reported_with_its_reason(
    k: Driver, refusal: str, phase: str
) -> None:
    md = canary_model_deployment("fraud", [], replicas=2)
    if refusal == "pod-security":
        k.cluster.kubectl(
            "label", "namespace", k.ns, "pod-security.kubernetes.io/enforce=restricted"
        )
        md["spec"]["template"] = {"securityContext": {"runAsNonRoot": False}}
        words = "violates PodSecurity"
    else:
        quota(k, pods=1)
        words = "exceeded quota"
    k.apply(md)
    st = k.wait("the refusal to be named", lambda: conditions_say(k, "fraud", words))
    assert condition(st, "Degraded")["reason"] == "FailedCreate"
    assert k.wait(f"phase {phase}", lambda: status(k, "fraud").get("phase") == phase)
