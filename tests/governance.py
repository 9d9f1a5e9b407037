"""The chart's governance policies and roles on the real API server, for one test namespace, and
the people who act on it (README: Governance).

The policies are rendered from the chart (templates/governance.yaml, templates/roles.yaml) under a
release name of the test's own, bound to the test's namespace only (governance.namespaceSelector),
and removed afterwards. People are users the admin impersonates (`kubectl --as`): the API server
authenticates the admin, then authorizes and admits the request as the named user, and the
admission policies see that user, as they would see one signed in with a certificate or a token.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import yaml

from tests.conftest import ROOT, Cluster, wait_until

CHART = ROOT / "charts" / "slipway"
ARGOCD_CONTROLLER = "system:serviceaccount:argocd:argocd-application-controller"
API_VERSION = "serving.slipway.dev/v1alpha1"


@dataclass(frozen=True)
class Governance:
    """The policies and roles installed for `namespace`, under the release `release`."""

    cluster: Cluster
    namespace: str
    release: str

    def role(self, which: str) -> str:
        """The chart's ClusterRole `view`, `edit` or `approver` of this release."""
        return f"{self.release}-slipway-{which}"

    def bind(self, user: str, cluster_role: str) -> None:
        """A RoleBinding of `cluster_role` to `user` in the namespace."""
        name = f"{user.rsplit(':', 1)[-1]}-{uuid.uuid4().hex[:5]}"
        self.cluster.kubectl(
            "create", "rolebinding", name, "-n", self.namespace,
            f"--clusterrole={cluster_role}", f"--user={user}",
        )  # fmt: skip

    def kubectl_as(
        self, user: str | None, *args: str, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """kubectl as `user` (None: the admin) in the namespace; never raises."""
        who = ["--as", user] if user else []
        return self.cluster.kubectl(*args, "-n", self.namespace, *who, input=input, check=False)

    def get(self, name: str) -> dict[str, Any]:
        proc = self.kubectl_as(None, "get", "md", name, "-o", "json")
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))


def render(cluster: Cluster, release: str, namespace: str) -> list[dict[str, Any]]:
    """The chart's policies and roles, the policies bound to `namespace` only."""
    values = {
        "governance": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
        }
    }
    proc = subprocess.run(
        [
            "helm", "template", release, str(CHART), "-f", "-",
            "-s", "templates/governance.yaml", "-s", "templates/roles.yaml",
        ],
        input=json.dumps(values), capture_output=True, text=True, env=cluster.env, timeout=60,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"helm template failed: {proc.stderr}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@contextmanager
def governed(cluster: Cluster, namespace: str) -> Iterator[Governance]:
    """The governance policies and roles, acting in `namespace`; removed afterwards."""
    release = f"gov-{uuid.uuid4().hex[:5]}"
    text = yaml.safe_dump_all(render(cluster, release, namespace))
    cluster.kubectl("apply", "-f", "-", input=text)
    governance = Governance(cluster, namespace, release)
    try:
        wait_for_policies(governance)
        yield governance
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=text)


PROBE = "governance-probe"
PROBE_USER = "governance-probe"


def wait_for_policies(g: Governance) -> None:
    """Until the policies act on the namespace and the roles are aggregated (the API server loads
    a new policy, and the controller manager aggregates a new role, a moment after it is created):
    an object the admin creates is stamped, a bogus action is refused, and `edit` and `admin`
    carry the chart's verbs."""
    probe = model_deployment(PROBE)
    g.kubectl_as(None, "apply", "-f", "-", input=json.dumps(probe))
    g.cluster.kubectl(
        "create", "role", PROBE_USER, "-n", g.namespace,
        "--verb=get,patch", "--resource=modeldeployments.serving.slipway.dev",
    )  # fmt: skip
    g.cluster.kubectl(
        "create", "rolebinding", PROBE_USER, "-n", g.namespace,
        f"--role={PROBE_USER}", f"--user={PROBE_USER}",
    )  # fmt: skip

    def stamped() -> bool:
        fresh = json.dumps(model_deployment(f"{PROBE}-new"))
        made = g.kubectl_as(None, "create", "--dry-run=server", "-ojson", "-f", "-", input=fresh)
        return made.returncode == 0 and "serving.slipway.dev/applied-by" in made.stdout

    def refused() -> bool:
        proc = g.kubectl_as(
            PROBE_USER, "annotate", "--dry-run=server", "md", PROBE,
            "serving.slipway.dev/action=bogus",
        )  # fmt: skip
        return "ValidatingAdmissionPolicy" in proc.stderr

    def aggregated() -> bool:
        return all(
            g.cluster.kubectl("auth", "can-i", verb, "modeldeployments.serving.slipway.dev",
                              "-n", g.namespace, "--as", user, check=False).returncode == 0
            for verb, user in (("abort", "probe-editor"), ("promote", "probe-admin"))
        )  # fmt: skip

    g.bind("probe-editor", "edit")
    g.bind("probe-admin", "admin")
    wait_until("the mutating policy to stamp", stamped, timeout=60, every=0.5)
    wait_until("the validating policy to refuse", refused, timeout=60, every=0.5)
    wait_until("edit and admin to aggregate the chart's roles", aggregated, timeout=60, every=0.5)
    g.kubectl_as(None, "delete", "md", PROBE, "--wait=false")


def annotations(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def model_deployment(name: str, version: str = "1.0.0", **spec: Any) -> dict[str, Any]:
    model = {"version": version, "uri": f"s3://models/{name}/{version}", "format": "sklearn"}
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": model, **spec},
    }
