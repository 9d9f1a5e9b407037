"""RBAC proven, not assumed (issue 7): the operator process runs with a token of the chart's own
ServiceAccount instead of the admin's kubeconfig, and the serving and canary scenarios pass with
it; whatever the chart does not grant is refused, by `kubectl auth can-i` and by real requests.

While a test runs, the session's (admin) operator is stopped: otherwise it would do the work and
prove nothing about the chart's identity.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cluster
from tests.e2e.conftest import Driver, Operator
from tests.e2e.test_canary import (
    V2,
    canary_md,
    condition,
    fraud_route,
    paused_at,
    revision_replicas,
    start,
)
from tests.e2e.test_scraping import podmonitor_crd
from tests.e2e.test_serving import sklearn
from tests.integration.test_chart import CHART, helm, installed, release_name  # noqa: F401

SELECTOR = "serving.slipway.dev/modeldeployment"

# What the chart grants its ServiceAccount in a namespace it serves, beyond what every
# authenticated identity has: exactly the requests slipway/kube.py and kopf's watches make.
GRANTED = {
    "modeldeployments.serving.slipway.dev": {"get", "list", "watch", "patch"},
    "modeldeployments.serving.slipway.dev/status": {"patch"},
    "modeldeployments.serving.slipway.dev/finalizers": {"update"},
    "deployments.apps": {"list", "watch", "create", "patch", "delete"},
    "services": {"get", "list", "watch", "create", "patch", "delete"},
    "horizontalpodautoscalers.autoscaling": {"get", "list", "watch", "create", "patch", "delete"},
    "jobs.batch": {"list", "watch", "create", "patch", "delete"},
    "pods": {"list", "watch"},
    "persistentvolumeclaims": {"get"},
    "httproutes.gateway.networking.k8s.io": {"get", "patch"},
    "events": {"create"},
    "customresourcedefinitions.apiextensions.k8s.io": {"get", "list", "watch"},
    "podmonitors.monitoring.coreos.com": {"get", "list", "watch", "create", "patch", "delete"},
}

# (verb, resource, cluster-scoped?) that the operator never needs, each refused.
REFUSED = [
    ("get", "secrets", False),
    ("list", "secrets", False),
    ("create", "pods", False),
    ("delete", "pods", False),
    ("get", "configmaps", False),
    ("update", "modeldeployments.serving.slipway.dev", False),
    ("create", "modeldeployments.serving.slipway.dev", False),
    ("delete", "modeldeployments.serving.slipway.dev", False),
    ("patch", "modeldeployments.serving.slipway.dev/scale", False),
    ("update", "deployments.apps", False),
    ("create", "httproutes.gateway.networking.k8s.io", False),
    ("delete", "httproutes.gateway.networking.k8s.io", False),
    ("create", "rolebindings.rbac.authorization.k8s.io", False),
    ("get", "clusterroles.rbac.authorization.k8s.io", True),
    ("create", "clusterroles.rbac.authorization.k8s.io", True),
    ("delete", "namespaces", True),
    ("list", "nodes", True),
    ("impersonate", "serviceaccounts", False),
]

# Real requests with the token, each of which must come back Forbidden (dry-run=server is still
# authorized first, so nothing is created or deleted even if it were allowed).
REQUESTS = [
    ("get", "secrets"),
    ("get", "secrets", "--all-namespaces"),
    ("run", "intruder", "--image=busybox", "--restart=Never", "--dry-run=server"),
    ("get", "clusterroles"),
    ("create", "clusterrole", "intruder", "--verb=get", "--resource=secrets", "--dry-run=server"),
    ("delete", "namespace", "{ns}", "--dry-run=server"),
    ("delete", "modeldeployment", "fraud", "--dry-run=server"),
]


@dataclass(frozen=True)
class ChartIdentity:
    """A release of the chart and a kubeconfig that authenticates as its ServiceAccount."""

    release: str
    namespace: str
    service_account: str
    kubeconfig: Path

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def token_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    """The admin kubeconfig's server and CA, with a token of `account` as the only user."""
    token = cluster.kubectl(
        "create", "token", account, "-n", namespace, "--duration", "1h"
    ).stdout.strip()
    admin = json.loads(
        cluster.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "cluster", "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def release_namespace(cluster: Cluster) -> Iterator[str]:
    """Where the chart is installed: not the namespace of the ModelDeployments."""
    name = f"t-rbac-release-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def install(
    cluster: Cluster,
    installed: list[tuple[str, str]],  # noqa: F811
    namespace: str,
    tmp_path: Path,
    *sets: str,
) -> ChartIdentity:
    release = release_name()
    installed.append((release, namespace))
    flags = [flag for value in ("replicas=1", *sets) for flag in ("--set", value)]
    helm(cluster, "install", release, str(CHART), "-n", namespace, *flags)
    account = f"{release}-slipway"
    # the local process is the operator under test; the chart's own pod (a real second operator
    # on kind) must not compete with it
    cluster.kubectl("scale", "deployment", account, "-n", namespace, "--replicas=0")
    kubeconfig = token_kubeconfig(cluster, namespace, account, tmp_path / "token.kubeconfig")
    return ChartIdentity(release, namespace, account, kubeconfig)


@contextlib.contextmanager
def operating_as(
    cluster: Cluster, session: Operator, identity: ChartIdentity, log_dir: Path, *namespaces: str
) -> Iterator[Operator]:
    """The operator process with the chart's identity, while the session's operator is stopped."""
    session.stop()
    op = Operator(cluster, log_dir, kubeconfig=identity.kubeconfig, namespaces=namespaces)
    try:
        op.start()
        yield op
        never_refused(op)
    finally:
        op.stop()
        session.start()


def never_refused(op: Operator) -> None:
    """RBAC refused no request of the operator, and kopf never lacked a permission.

    Only RBAC's answer counts ('User "…" cannot patch resource …'): a 403 for a namespace being
    terminated (an earlier test's) is not about the chart.
    """
    log = op.log_tail(10**6)
    refusals = [
        line
        for line in log.splitlines()
        if re.search(r"cannot \w+ resource|not enough permissions", line, re.IGNORECASE)
    ]
    assert refusals == [], "\n".join(refusals[:10])


@pytest.fixture
def chart_identity(
    cluster: Cluster,
    crds: None,
    release_namespace: str,
    installed: list[tuple[str, str]],  # noqa: F811
    tmp_path: Path,
) -> ChartIdentity:
    """The chart installed in cluster mode (a ClusterRole)."""
    return install(cluster, installed, release_namespace, tmp_path)


@pytest.fixture
def chart_operator(
    cluster: Cluster, operator: Operator, chart_identity: ChartIdentity, tmp_path: Path
) -> Iterator[Operator]:
    """`slipway run --all-namespaces` authenticated as the chart's ServiceAccount."""
    with operating_as(cluster, operator, chart_identity, tmp_path) as op:
        yield op


def events_in(k: Driver) -> str:
    return k.cluster.kubectl("get", "events", "-n", k.ns).stdout


# -- what the identity can do: the scenarios -------------------------------------------------------


def test_with_the_charts_identity_a_model_is_served_and_a_canary_is_promoted(
    k: Driver, chart_operator: Operator
) -> None:
    k.apply(fraud_route())
    routing = {"gatewayAPI": {"httpRoute": "fraud"}}
    old = start(k, canary_md(replicas=2, trafficRouting=routing))
    assert k.ready_pods("fraud") == 2
    assert {s["metadata"]["name"] for s in k.items("services", f"{SELECTOR}=fraud")} >= {
        "fraud",
        "fraud-stable",
    }

    k.patch("md", "fraud", {"spec": V2})
    new = paused_at(k, 25)["revision"]
    rules = k.get("httproute", "fraud")["spec"]["rules"][0]["backendRefs"]
    assert {b["name"]: b["weight"] for b in rules} == {"fraud-stable": 75, "fraud-canary": 25}
    k.plugin("promote", "fraud")
    k.wait(
        "promotion",
        lambda: (
            (s := k.md("fraud")["status"])["stable"]["revision"] == new and s["phase"] == "Ready"
        ),
    )
    k.wait("the old revision at 0", lambda: revision_replicas(k, "fraud", old) == 0)
    k.wait("the Promoted Event", lambda: "Promoted" in events_in(k))


def test_with_the_charts_identity_a_crash_looping_canary_is_rolled_back(
    kwok_faults: None, k: Driver, chart_operator: Operator
) -> None:
    old = start(k, canary_md(replicas=2))
    k.patch(
        "md", "fraud", {"spec": {**V2, "template": {"labels": {"slipway.test/fault": "crash"}}}}
    )
    st = k.wait(
        "RolledBack",
        lambda: (s := k.md("fraud")["status"])["phase"] == "RolledBack" and s,
        timeout=60,
    )
    assert condition(st, "Degraded")["reason"] == "CanaryCrashLooping"
    assert st["stable"]["revision"] == old
    k.wait("the canary at 0", lambda: revision_replicas(k, "fraud", st["canary"]["revision"]) == 0)
    k.wait("the CanaryCrashLooping Event", lambda: "CanaryCrashLooping" in events_in(k))


def test_with_the_charts_identity_the_podmonitor_is_created_and_removed(
    cluster: Cluster, k: Driver, chart_operator: Operator
) -> None:
    with podmonitor_crd(cluster):
        k.apply(sklearn(replicas=1))
        k.wait_phase("iris", "Ready")
        k.wait("the PodMonitor", lambda: k.get("podmonitors.monitoring.coreos.com", "iris"))
        k.patch("md", "iris", {"spec": {"monitoring": {"podMonitor": {"enabled": False}}}})
        k.wait(
            "the PodMonitor to go",
            lambda: k.get("podmonitors.monitoring.coreos.com", "iris") is None,
        )


def test_with_the_charts_identity_autoscaling_creates_and_removes_the_hpa(
    k: Driver, chart_operator: Operator
) -> None:
    k.apply(sklearn(autoscaling={"minReplicas": 2, "maxReplicas": 4}))
    k.wait_phase("iris", "Ready")
    hpa = k.wait("the HPA", lambda: k.get("hpa", "iris"))
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "ModelDeployment"

    k.patch("md", "iris", [{"op": "remove", "path": "/spec/autoscaling"}], type_="json")

    k.wait("the HPA to go", lambda: k.get("hpa", "iris") is None)


def test_with_the_charts_identity_a_missing_claim_is_reported(
    k: Driver, chart_operator: Operator
) -> None:
    k.apply(
        sklearn(
            replicas=1,
            model={"version": "1.0.0", "uri": "pvc://no-such-claim/iris", "format": "sklearn"},
        )
    )

    st = k.wait_phase("iris", "Failed")["status"]

    assert condition(st, "Degraded")["reason"] == "ModelUnavailable"
    assert "no-such-claim" in condition(st, "Degraded")["message"]


# -- what it cannot do ---------------------------------------------------------------------------


def can_i_list(cluster: Cluster, user: str, namespace: str) -> dict[str, set[str]]:
    """`kubectl auth can-i --list` as `user`: resource → verbs (non-resource URLs left out)."""
    out = cluster.kubectl("auth", "can-i", "--list", "--as", user, "-n", namespace).stdout
    granted: dict[str, set[str]] = {}
    for line in out.splitlines()[1:]:
        match = re.match(r"^(\S+)\s+\[[^\]]*\]\s+\[[^\]]*\]\s+\[([^\]]*)\]\s*$", line)
        if match:
            granted.setdefault(match[1], set()).update(match[2].split())
    return granted


def test_the_charts_identity_is_granted_exactly_what_the_operator_uses(
    cluster: Cluster, k: Driver, chart_identity: ChartIdentity
) -> None:
    # what any ServiceAccount may do on this cluster (self-reviews, discovery) is not the chart's
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", k.ns)
    baseline = can_i_list(cluster, f"system:serviceaccount:{k.ns}:nobody", k.ns)

    granted = can_i_list(cluster, chart_identity.user, k.ns)

    extra = {
        resource: verbs - baseline.get(resource, set())
        for resource, verbs in granted.items()
        if verbs - baseline.get(resource, set())
    }
    assert extra == GRANTED


def test_the_charts_identity_is_refused_secrets_pods_and_cluster_objects(
    cluster: Cluster, k: Driver, chart_identity: ChartIdentity
) -> None:
    allowed = []
    for verb, resource, cluster_scoped in REFUSED:
        where = [] if cluster_scoped else ["-n", k.ns]
        # "resource/x" would ask about an object named x: a subresource is a flag of its own
        resource, _, subresource = resource.partition("/")
        sub = [f"--subresource={subresource}"] if subresource else []
        proc = cluster.kubectl(
            "auth", "can-i", verb, resource, *sub, *where, "--as", chart_identity.user, check=False
        )
        if proc.stdout.strip() != "no":
            allowed.append(f"can-i {verb} {resource}: {proc.stdout.strip()}")

    as_identity = {**cluster.env, "KUBECONFIG": str(chart_identity.kubeconfig)}
    assert "system:serviceaccount" in run_kubectl(as_identity, "auth", "whoami").stdout
    for request in REQUESTS:
        args = [arg.replace("{ns}", k.ns) for arg in request]
        proc = run_kubectl(as_identity, *args, "-n", k.ns)
        if proc.returncode == 0 or "Forbidden" not in proc.stderr:
            allowed.append(f"kubectl {' '.join(args)}: {proc.stderr or proc.stdout}")

    assert allowed == []


def run_kubectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


# -- namespaced mode -----------------------------------------------------------------------------


@pytest.fixture
def unwatched_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-rbac-unwatched-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_namespaced_install_serves_its_namespace_with_its_own_identity(
    cluster: Cluster,
    crds: None,
    k: Driver,
    operator: Operator,
    release_namespace: str,
    unwatched_namespace: str,
    installed: list[tuple[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    identity = install(
        cluster, installed, release_namespace, tmp_path, f"watchNamespaces={{{k.ns}}}"
    )
    elsewhere = Driver(cluster, unwatched_namespace)

    with operating_as(cluster, operator, identity, tmp_path, k.ns):
        k.apply(sklearn(replicas=2))
        elsewhere.apply(sklearn(replicas=2))
        k.wait_phase("iris", "Ready")
        assert k.ready_pods("iris") == 2
        # the unwatched namespace is not served, and the identity may not even look there
        # the CRD's default: not observed, Pending
        assert elsewhere.md("iris").get("status") == {"observedGeneration": 0, "phase": "Pending"}
        assert elsewhere.items("deployments", f"{SELECTOR}=iris") == []
        assert (
            cluster.kubectl(
                "auth",
                "can-i",
                "list",
                "modeldeployments.serving.slipway.dev",
                "-n",
                unwatched_namespace,
                "--as",
                identity.user,
                check=False,
            ).stdout.strip()
            == "no"
        )
