"""Who may act (issue 14): the chart's ValidatingAdmissionPolicy and MutatingAdmissionPolicy on
the real API server (RBAC on), as different users (`kubectl --as`).

Every request of the matrix is sent with --dry-run=server: the API server authorizes it and runs
every admission policy on it exactly as for a real write, and stores nothing, so each cell starts
from the same object. The stamps are then checked on real writes. (A resume at a pause that waits
for a promotion needs a canary the operator holds there: tests/e2e/test_governance.py.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from slipway.governance import ACTION_VERBS, STAMPS, VERBS
from slipway.rollout import Action
from tests.conftest import Cluster
from tests.governance import (
    ARGOCD_CONTROLLER,
    Governance,
    annotations,
    governed,
    model_deployment,
    render,
)

ACTION = "serving.slipway.dev/action"
ACTION_BY = "serving.slipway.dev/action-by"
APPLIED_BY = "serving.slipway.dev/applied-by"
APPLIED_WITH = "serving.slipway.dev/applied-with"
UNDO_TO = "serving.slipway.dev/undo-to"
UNDO_BY = "serving.slipway.dev/undo-by"

USERS = {
    "alice (edit)": ("alice", "edit"),
    "paula (approver)": ("paula", "approver"),
    "victor (view)": ("victor", "view"),
    "admin (system:masters)": (None, None),
}
REQUESTS = (
    "promote",
    "promote-full",
    "abort",
    "retry",
    "pause",
    "resume",
    "undo",
    "change spec",
)
RBAC = "patch (RBAC)"
# the verb each refusal names; None: allowed
EXPECTED: dict[str, dict[str, str | None]] = {
    "alice (edit)": {
        **dict.fromkeys(REQUESTS),
        "promote": "promote",
        "promote-full": "promote",
        "undo": "undo",
    },
    "paula (approver)": {**dict.fromkeys(REQUESTS), "change spec": "update"},
    "victor (view)": dict.fromkeys(REQUESTS, RBAC),
    "admin (system:masters)": dict.fromkeys(REQUESTS),
}


@pytest.fixture
def gov(cluster: Cluster, crds: None, namespace: str) -> Iterator[Governance]:
    with governed(cluster, namespace) as g:
        for user, role in USERS.values():
            if user is not None and role is not None:
                g.bind(user, role if role in ("edit", "view") else g.role(role))
        g.bind(ARGOCD_CONTROLLER, "admin")
        yield g


def request(g: Governance, user: str | None, name: str, what: str) -> tuple[int, str]:
    """Send one request of the matrix as `user`, dry-run; (exit code, stderr)."""
    if what == "change spec":
        args = ["patch", "md", name, "--type=merge", "-p", '{"spec":{"model":{"version":"9"}}}']
    elif what == "undo":
        ops = [
            {"op": "replace", "path": "/spec/model/version", "value": "0.9"},
            {
                "op": "add",
                "path": f"/metadata/annotations/{UNDO_TO.replace('/', '~1')}",
                "value": "x",
            },
        ]
        args = ["patch", "md", name, "--type=json", "-p", json.dumps(ops)]
    else:
        args = ["annotate", "--overwrite", "md", name, f"{ACTION}={what}"]
    proc = g.kubectl_as(user, *args, "--dry-run=server")
    return proc.returncode, proc.stderr


def verdict(code: int, stderr: str) -> str | None:
    """None for allowed, else the verb the refusal names."""
    if code == 0:
        return None
    if "cannot patch resource" in stderr:
        return RBAC
    for verb in (*VERBS, "update"):
        if f"the '{verb}' verb on modeldeployments.serving.slipway.dev is needed" in stderr or (
            f"needs the '{verb}' verb" in stderr
        ):
            return verb
    raise AssertionError(f"refused for no reason the matrix knows: {stderr}")


def test_each_action_needs_its_own_verb_and_the_refusal_names_it(gov: Governance) -> None:
    steps = [{"setWeight": 50}, {"pause": {}}]
    plain = model_deployment("fraud", rollout={"strategy": "Canary", "steps": steps})
    gov.kubectl_as(None, "apply", "-f", "-", input=json.dumps(plain))

    matrix: dict[str, dict[str, str | None]] = {}
    refusals: dict[tuple[str, str], str] = {}
    for label, (user, _) in USERS.items():
        matrix[label] = {}
        for what in REQUESTS:
            code, stderr = request(gov, user, "fraud", what)
            matrix[label][what] = verdict(code, stderr)
            if code:
                refusals[(label, what)] = stderr.strip()

    print_matrix(matrix)
    for (label, what), text in sorted(refusals.items()):
        print(f"{label} / {what}: {text}")
    assert matrix == EXPECTED
    alice = refusals[("alice (edit)", "promote")]
    assert "user 'alice' may not promote modeldeployments/fraud" in alice
    assert f"ClusterRole {gov.role('approver')}" in alice


def print_matrix(matrix: dict[str, dict[str, str | None]]) -> None:
    width = max(len(w) for w in (*REQUESTS, f"refused:{RBAC}")) + 2
    print("\n" + "".ljust(24) + "".join(w.ljust(width) for w in REQUESTS))
    for label, row in matrix.items():
        cells = ("allowed" if row[w] is None else f"refused:{row[w]}" for w in REQUESTS)
        print(label.ljust(24) + "".join(c.ljust(width) for c in cells))


def admitted(g: Governance, user: str, *args: str) -> dict[str, str]:
    """The annotations of the object a request of `user` would store (--dry-run=server: admitted
    and mutated exactly as a real write, stored nowhere; a suite's operator, if one runs, never
    sees it, so it consumes no action meanwhile)."""
    proc = g.kubectl_as(user, *args, "--dry-run=server", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return annotations(json.loads(proc.stdout))


def test_the_requester_is_stamped_on_the_action_and_a_forged_stamp_is_overwritten(
    gov: Governance,
) -> None:
    gov.kubectl_as(None, "apply", "-f", "-", input=json.dumps(model_deployment("fraud")))
    creator = annotations(gov.get("fraud"))[APPLIED_BY]
    gov.bind("mallory", "edit")

    forged = admitted(
        gov, "alice", "annotate", "md", "fraud", f"{ACTION}=pause", f"{ACTION_BY}=eve"
    )
    assert (forged[ACTION], forged[ACTION_BY]) == ("pause", "alice")

    # a stamp without an action, or an applied-by without a spec change, does not stay
    alone = admitted(gov, "mallory", "annotate", "md", "fraud", f"{ACTION_BY}=mallory")
    assert ACTION_BY not in alone
    applied = admitted(
        gov, "mallory", "annotate", "--overwrite", "md", "fraud", f"{APPLIED_BY}=mallory"
    )
    assert applied[APPLIED_BY] == creator != "mallory"


def test_an_undo_is_stamped_with_who_undid_it(gov: Governance) -> None:
    gov.kubectl_as(None, "apply", "-f", "-", input=json.dumps(model_deployment("fraud")))
    ops = [
        {"op": "replace", "path": "/spec/model/version", "value": "0.9"},
        {"op": "add", "path": f"/metadata/annotations/{UNDO_TO.replace('/', '~1')}", "value": "x"},
        {
            "op": "add",
            "path": f"/metadata/annotations/{UNDO_BY.replace('/', '~1')}",
            "value": "eve",
        },
    ]
    stamped = admitted(gov, "paula", "patch", "md", "fraud", "--type=json", "-p", json.dumps(ops))

    assert (stamped[UNDO_TO], stamped[UNDO_BY]) == ("x", "paula")
    assert (stamped[APPLIED_BY], stamped[APPLIED_WITH]) == ("paula", "kubectl-patch")


def test_a_gitops_sync_is_stamped_with_its_identity_and_field_manager(gov: Governance) -> None:
    md = model_deployment("fraud")
    sync = gov.kubectl_as(
        ARGOCD_CONTROLLER, "apply", "--server-side", "--field-manager=argocd-controller",
        "-f", "-", input=json.dumps(md),
    )  # fmt: skip
    assert sync.returncode == 0, sync.stderr
    stamped = annotations(gov.get("fraud"))
    assert (stamped[APPLIED_BY], stamped[APPLIED_WITH]) == (ARGOCD_CONTROLLER, "argocd-controller")

    # replicas shape no revision: scaling is not applying a model
    gov.kubectl_as("alice", "patch", "md", "fraud", "--type=merge", "-p", '{"spec":{"replicas":3}}')
    assert annotations(gov.get("fraud"))[APPLIED_BY] == ARGOCD_CONTROLLER
    # a new model version is
    new = '{"spec":{"model":{"version":"2.0.0"}}}'
    gov.kubectl_as("alice", "patch", "md", "fraud", "--type=merge", "-p", new)
    assert annotations(gov.get("fraud"))[APPLIED_BY] == "alice"
    # and the sync's next apply, unchanged, leaves the stamp alone (spec back to 1.0.0: the sync)
    gov.kubectl_as(
        ARGOCD_CONTROLLER, "apply", "--server-side", "--force-conflicts",
        "--field-manager=argocd-controller", "-f", "-", input=json.dumps(md),
    )  # fmt: skip
    stamped = annotations(gov.get("fraud"))
    assert (stamped[APPLIED_BY], stamped[APPLIED_WITH]) == (ARGOCD_CONTROLLER, "argocd-controller")


def test_the_chart_policies_know_every_action_verb_and_stamp(cluster: Cluster) -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in render(cluster, "r", "ns")}
    vap = docs[("ValidatingAdmissionPolicy", "r-slipway-action-verbs")]
    mutation = docs[("MutatingAdmissionPolicy", "r-slipway-stamp-requester")]
    actions = [a.value for a in Action]
    assert f"in {actions!r}" in json.dumps(vap)
    assert set(ACTION_VERBS.values()) | {"undo"} == set(VERBS)
    stamps = next(v for v in mutation["spec"]["variables"] if v["name"] == "stamps")
    assert all(f"'{key}'" in stamps["expression"] for key in STAMPS)

    def verbs(role: str) -> set[str]:
        rules = docs[("ClusterRole", f"r-slipway-{role}")]["rules"]
        return {v for r in rules if r["resources"] == ["modeldeployments"] for v in r["verbs"]}

    assert set(VERBS) <= verbs("approver") and "update" not in verbs("approver")
    assert {"promote", "undo"}.isdisjoint(verbs("edit"))
    assert {"abort", "retry", "pause", "resume", "update"} <= verbs("edit")


def test_only_someone_who_may_read_a_secret_can_have_the_operator_read_it(
    gov: Governance,
) -> None:
    gov.bind("carol", gov.role("edit"))  # ModelDeployments, and no Secrets
    gov.cluster.kubectl(
        "create", "secret", "generic", "mlflow-token", "-n", gov.namespace,
        "--from-literal=MLFLOW_TRACKING_TOKEN=t0k",
    )  # fmt: skip
    md = model_deployment("fraud")
    md["spec"]["model"] = {
        "uri": "models:/fraud@champion",
        "format": "sklearn",
        "registry": {
            "mlflow": {"trackingUri": "http://mlflow.mlops:5000", "secretName": "mlflow-token"}
        },
    }

    refused = gov.kubectl_as("carol", "create", "--dry-run=server", "-f", "-", input=json.dumps(md))
    allowed = gov.kubectl_as("alice", "create", "--dry-run=server", "-f", "-", input=json.dumps(md))

    assert refused.returncode != 0
    assert "user 'carol' may not name Secret 'mlflow-token'" in refused.stderr
    assert "you need get on it yourself" in refused.stderr
    assert allowed.returncode == 0, allowed.stderr  # edit reads the namespace's Secrets
