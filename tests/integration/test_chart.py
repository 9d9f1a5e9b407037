"""The Helm chart against the real API server: it lints, renders, installs and passes Pod Security.

`helm` is the one hack/build-tools.sh builds (on the cluster's PATH through `cluster.env`).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import CRD_FILE, ROOT, Cluster

CHART = ROOT / "charts" / "slipway"
CHART_CRD = CHART / "crds" / CRD_FILE.name
RBAC_KINDS = ("ClusterRole", "Role")


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["helm", *args], capture_output=True, text=True, env=cluster.env, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
    return proc


def render(cluster: Cluster, namespace: str, *sets: str) -> str:
    flags = [flag for value in sets for flag in ("--set", value)]
    return helm(cluster, "template", "slipway", str(CHART), "-n", namespace, *flags).stdout


def manifests(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def operator_args(docs: list[dict[str, Any]]) -> list[str]:
    [deployment] = of_kind(docs, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return list(container["args"])


def operator_roles(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The roles of `kind` bound to the operator's ServiceAccount (not the people's roles)."""
    bound = {
        b["roleRef"]["name"]
        for b in docs
        if b["kind"] in ("ClusterRoleBinding", "RoleBinding")
        and any(s["kind"] == "ServiceAccount" for s in b["subjects"])
    }
    return [role for role in of_kind(docs, kind) if role["metadata"]["name"] in bound]


def release_name() -> str:
    return f"sw-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def other_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-chart-other-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def restricted_namespace(cluster: Cluster, namespace: str) -> str:
    cluster.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    return namespace


KOPF_PEERING_CRDS = ("crd/clusterkopfpeerings.kopf.dev", "crd/kopfpeerings.kopf.dev")


@pytest.fixture
def installed(cluster: Cluster) -> Iterator[list[tuple[str, str]]]:
    """Releases a test installs, (name, namespace), uninstalled afterwards with their cluster-wide
    objects; kopf's peering CRDs (which Helm installs but never removes) go too when they were not
    there before, so that a later kopf run does not find them and try to peer."""
    releases: list[tuple[str, str]] = []
    had_peering_crds = cluster.kubectl("get", *KOPF_PEERING_CRDS, check=False).returncode == 0
    yield releases
    for name, namespace in releases:
        helm(cluster, "uninstall", name, "-n", namespace, "--wait", "--timeout", "60s", check=False)
    if not had_peering_crds:
        cluster.kubectl("delete", *KOPF_PEERING_CRDS, "--ignore-not-found", check=False)


def test_chart_crd_is_the_same_file_as_the_generated_crd() -> None:
    assert CHART_CRD.read_bytes() == CRD_FILE.read_bytes(), "run `make crds`"


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("watchNamespaces={a,b}",),
        ("replicas=3", "serviceMonitor.enabled=true"),
        (
            "prometheusRule.enabled=true",
            "grafanaDashboard.enabled=true",
            "notifications.channels[0].name=ml-team",
            "notifications.channels[0].type=slack",
            "notifications.channels[0].secretName=slipway-notifications",
        ),
    ],
    ids=["defaults", "namespaced", "ha-with-servicemonitor", "dashboard-alerts-notifications"],
)
def test_chart_lints_cleanly_in_strict_mode(cluster: Cluster, sets: tuple[str, ...]) -> None:
    flags = [flag for value in sets for flag in ("--set", value)]

    proc = helm(cluster, "lint", "--strict", str(CHART), *flags)

    assert "0 chart(s) failed" in proc.stdout


def test_default_render_is_accepted_by_the_api_server(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    text = render(cluster, namespace)

    cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text)

    docs = manifests(text)
    assert {doc["kind"] for doc in docs} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        # governance (README: Governance), on by default
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    args = operator_args(docs)
    assert args[:3] == ["run", "--all-namespaces", "--standalone"]
    assert "--peering" not in args


def test_namespaced_mode_renders_roles_per_namespace_and_is_accepted(
    cluster: Cluster, crds: None, namespace: str, other_namespace: str
) -> None:
    watched = f"watchNamespaces={{{namespace},{other_namespace}}}"
    text = render(cluster, namespace, watched)

    cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text)

    docs = manifests(text)
    roles = of_kind(docs, "Role")
    bindings = of_kind(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted([namespace, other_namespace])
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(
        [namespace, other_namespace]
    )
    [discovery] = operator_roles(docs, "ClusterRole")
    cluster_wide = {res for rule in discovery["rules"] for res in rule["resources"]}
    assert cluster_wide == {"customresourcedefinitions", "namespaces"}
    # the governance policies act where the operator does
    for kind in ("MutatingAdmissionPolicyBinding", "ValidatingAdmissionPolicyBinding"):
        [binding] = of_kind(docs, kind)
        [selected] = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
        assert selected["values"] == [namespace, other_namespace]
    args = operator_args(docs)
    assert args[1:5] == ["--namespace", namespace, "--namespace", other_namespace]
    assert "--all-namespaces" not in args


@pytest.mark.parametrize(
    ("sets", "names"),
    [
        (("replicas=0",), "/replicas"),
        (("replicas=two",), "/replicas"),
        (("watchNamespaces={Not_A_Namespace}",), "/watchNamespaces/0"),
        (("image.repository=null",), "repository"),
        (("logFormat=xml",), "/logFormat"),
        (("metrics.port=70000",), "/metrics/port"),
        (("replica=2",), "'replica' not allowed"),
    ],
)
def test_a_bad_value_fails_with_a_message_naming_it(
    cluster: Cluster, sets: tuple[str, ...], names: str
) -> None:
    flags = [flag for value in sets for flag in ("--set", value)]

    proc = helm(cluster, "template", "slipway", str(CHART), *flags, check=False)

    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert names in proc.stderr


@pytest.mark.parametrize(
    "sets",
    [(), ("watchNamespaces={a,b}", "replicas=2"), ("replicas=3",)],
    ids=["cluster", "namespaced-ha", "cluster-ha"],
)
def test_rbac_is_exact_with_no_wildcards_and_no_secrets(
    cluster: Cluster, sets: tuple[str, ...]
) -> None:
    docs = manifests(render(cluster, "slipway-system", *sets))

    rules = [rule for kind in RBAC_KINDS for role in of_kind(docs, kind) for rule in role["rules"]]

    assert rules
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert not any("*" in value for value in rule[field]), rule
        assert "secrets" not in rule["resources"]
        assert "resourceNames" not in rule


def test_operator_pod_is_admitted_under_pod_security_restricted(
    cluster: Cluster,
    crds: None,
    restricted_namespace: str,
    installed: list[tuple[str, str]],
) -> None:
    release = release_name()
    installed.append((release, restricted_namespace))

    helm(cluster, "install", release, str(CHART), "-n", restricted_namespace)
    cluster.kubectl(
        "rollout",
        "status",
        f"deployment/{release}-slipway",
        "-n",
        restricted_namespace,
        "--timeout=120s",
    )

    pods = json.loads(
        cluster.kubectl(
            "get",
            "pods",
            "-n",
            restricted_namespace,
            "-l",
            f"app.kubernetes.io/instance={release}",
            "-o",
            "json",
        ).stdout
    )["items"]
    assert [pod["status"]["phase"] for pod in pods] == ["Running"]
    role = json.loads(
        cluster.kubectl("get", "clusterrole", f"{release}-slipway", "-o", "json").stdout
    )
    assert "*" not in json.dumps(role["rules"])


def test_restricted_namespace_really_rejects_a_privileged_pod(
    cluster: Cluster, restricted_namespace: str
) -> None:
    proc = cluster.kubectl(
        "run",
        "root-shell",
        "--image=busybox",
        "--restart=Never",
        "--dry-run=server",
        "-n",
        restricted_namespace,
        check=False,
    )

    assert proc.returncode != 0
    assert "violates PodSecurity" in proc.stderr


def test_more_than_one_replica_installs_kopf_peering(
    cluster: Cluster,
    crds: None,
    namespace: str,
    installed: list[tuple[str, str]],
) -> None:
    release = release_name()
    installed.append((release, namespace))
    peering = f"slipway-{namespace}"[:63]

    helm(
        cluster,
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--set",
        "replicas=2",
        "--set",
        f"peering.name={peering}",
    )

    cluster.kubectl("get", "clusterkopfpeering", peering)
    deployment = json.loads(
        cluster.kubectl(
            "get", "deployment", f"{release}-slipway", "-n", namespace, "-o", "json"
        ).stdout
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][2:4] == ["--peering", peering]
    assert "--standalone" not in container["args"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    cluster.kubectl(
        "rollout", "status", f"deployment/{release}-slipway", "-n", namespace, "--timeout=120s"
    )


def test_namespaced_install_grants_nothing_outside_the_watched_namespaces(
    cluster: Cluster,
    crds: None,
    namespace: str,
    other_namespace: str,
    installed: list[tuple[str, str]],
) -> None:
    release = release_name()
    installed.append((release, namespace))
    helm(
        cluster,
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--set",
        f"watchNamespaces={{{namespace}}}",
    )
    identity = f"system:serviceaccount:{namespace}:{release}-slipway"

    def can(verb: str, resource: str, where: str) -> bool:
        proc = cluster.kubectl(
            "auth", "can-i", verb, resource, "-n", where, "--as", identity, check=False
        )
        return proc.stdout.strip() == "yes"

    assert can("patch", "modeldeployments.serving.slipway.dev", namespace)
    assert can("create", "deployments.apps", namespace)
    assert not can("list", "modeldeployments.serving.slipway.dev", other_namespace)
    assert not can("create", "deployments.apps", other_namespace)
    assert not can("get", "secrets", namespace)
    assert can("watch", "customresourcedefinitions.apiextensions.k8s.io", namespace)


def test_values_schema_is_valid_json_for_draft_07() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults) <= set(schema["properties"])


@pytest.mark.parametrize(
    ("sets", "granted"), [((), False), (("modelRegistry.readCredentialSecrets=true",), True)]
)
def test_secrets_are_read_only_when_registry_credentials_are_wanted(
    cluster: Cluster, sets: tuple[str, ...], granted: bool
) -> None:
    docs = manifests(render(cluster, "slipway-system", *sets))
    rules = [r for kind in RBAC_KINDS for role in operator_roles(docs, kind) for r in role["rules"]]

    secrets = [r for r in rules if "secrets" in r["resources"]]
    assert secrets == (
        [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}] if granted else []
    )


def test_governance_can_be_left_out(cluster: Cluster) -> None:
    docs = manifests(render(cluster, "slipway-system", "governance.enabled=false"))

    kinds = {doc["kind"] for doc in docs}
    assert not {k for k in kinds if k.endswith(("AdmissionPolicy", "AdmissionPolicyBinding"))}
    assert all(r in operator_roles(docs, "ClusterRole") for r in of_kind(docs, "ClusterRole"))


@pytest.mark.parametrize(
    ("sets", "managed"),
    [((), True), (("podMonitors.enabled=false",), False)],
    ids=["pod-monitors", "no-pod-monitors"],
)
def test_podmonitors_are_granted_exactly_when_the_operator_manages_them(
    cluster: Cluster, sets: tuple[str, ...], managed: bool
) -> None:
    docs = manifests(render(cluster, "slipway-system", *sets))
    rules = [rule for kind in RBAC_KINDS for role in of_kind(docs, kind) for rule in role["rules"]]
    granted = [rule for rule in rules if "podmonitors" in rule["resources"]]
    if managed:
        assert granted == [
            {
                "apiGroups": ["monitoring.coreos.com"],
                "resources": ["podmonitors"],
                "verbs": ["get", "list", "watch", "create", "patch", "delete"],
            }
        ]
        assert "--no-pod-monitors" not in operator_args(docs)
    else:
        assert granted == []
        assert "--no-pod-monitors" in operator_args(docs)
