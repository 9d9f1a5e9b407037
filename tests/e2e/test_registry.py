"""A model registry as the source of versions (issue 14), on KWOK: a real MLflow tracking server on
loopback holds a registered model with two versions; a ModelDeployment follows its alias
`champion`; moving the alias in MLflow starts a canary of the new version with no write to the
ModelDeployment's spec, and it is promoted. A registry that stops answering, or an alias that goes
away, is a condition; what serves stays. (tests/e2e/realnode/test_registry.py serves the
versions' real bytes.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Driver, Operator
from tests.mlflow_server import MlflowClient, MlflowServer, mlflow  # noqa: F401

pytestmark = pytest.mark.usefixtures("operator")

POLL = "10s"


@pytest.fixture
def registry(mlflow: MlflowServer, k: Driver) -> Iterator[MlflowClient]:  # noqa: F811
    """A registered model named after the test's namespace, versions 1 and 2, champion at 1."""
    client = MlflowClient(mlflow.url)
    client.create_model(k.ns)
    for version in ("1", "2"):
        assert client.create_version(k.ns, f"s3://models/{k.ns}/v{version}") == version
    client.set_alias(k.ns, "champion", "1")
    yield client
    mlflow.resume()


def following(k: Driver, mlflow: MlflowServer, uri: str) -> dict[str, Any]:  # noqa: F811
    return {
        "apiVersion": "serving.slipway.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": {
                "uri": uri,
                "format": "sklearn",
                "registry": {"mlflow": {"trackingUri": mlflow.url, "pollInterval": POLL}},
            },
            "replicas": 2,
            "rollout": {
                "strategy": "Canary",
                "steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}],
                "scaleDownDelaySeconds": 1,
            },
        },
    }


def status(k: Driver) -> dict[str, Any]:
    return dict(k.md("fraud").get("status") or {})


def resolved(k: Driver) -> dict[str, Any]:
    found = next((c for c in status(k).get("conditions") or [] if c["type"] == "ModelResolved"), {})
    return dict(found)


def test_moving_the_alias_rolls_the_new_version_out_without_a_spec_write(
    k: Driver,
    mlflow: MlflowServer,  # noqa: F811
    registry: MlflowClient,
) -> None:
    k.apply(following(k, mlflow, f"models:/{k.ns}@champion"))
    st = k.wait_phase("fraud", "Ready")
    assert (st["status"]["stable"]["version"], st["status"]["stable"]["uri"]) == (
        "1",
        f"s3://models/{k.ns}/v1",
    )
    assert st["status"]["registry"]["version"] == "1"
    assert st["status"]["registry"]["artifactUri"] == f"s3://models/{k.ns}/v1"
    assert resolved(k)["status"] == "True"
    generation = st["metadata"]["generation"]

    registry.set_alias(k.ns, "champion", "2")
    canary = k.wait(
        "a canary of version 2",
        lambda: (status(k).get("canary") or {}).get("version") == "2" and status(k)["canary"],
        timeout=60,
    )
    assert canary["uri"] == f"s3://models/{k.ns}/v2"
    after = k.wait(
        "version 2 stable",
        lambda: (s := status(k))["stable"]["version"] == "2" and not s.get("canary") and s,
        timeout=60,
    )
    assert k.md("fraud")["metadata"]["generation"] == generation  # nobody wrote the spec
    new, old = after["history"]
    assert (new["version"], new["registryUri"]) == ("2", f"models:/{k.ns}@champion")
    assert old["version"] == "1"
    # every pod runs the registry's artifact location, not the models:/ uri
    deployment = k.get("deployment", f"fraud-{new['revision']}")
    assert deployment is not None
    [init] = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][1] == f"s3://models/{k.ns}/v2"


def test_a_registry_that_stops_answering_never_touches_what_serves(
    k: Driver,
    mlflow: MlflowServer,  # noqa: F811
    registry: MlflowClient,
) -> None:
    k.apply(following(k, mlflow, f"models:/{k.ns}@champion"))
    revision = k.wait_phase("fraud", "Ready")["status"]["stable"]["revision"]

    mlflow.pause()
    down = k.wait(
        "RegistryUnavailable",
        lambda: resolved(k).get("reason") == "RegistryUnavailable" and resolved(k),
        timeout=90,
    )
    assert down["status"] == "False"
    assert "version 1" in down["message"] and "keeps serving" in down["message"]
    st = status(k)
    assert (st["stable"]["revision"], st["phase"], st.get("canary")) == (revision, "Ready", None)
    mlflow.resume()

    registry.delete_alias(k.ns, "champion")
    gone = k.wait(
        "AliasNotFound",
        lambda: resolved(k).get("reason") == "AliasNotFound" and resolved(k),
        timeout=60,
    )
    assert f"no alias 'champion' of a model '{k.ns}'" in gone["message"]
    assert status(k)["stable"]["revision"] == revision

    registry.set_alias(k.ns, "champion", "1")
    k.wait("resolved again", lambda: resolved(k).get("status") == "True", timeout=60)
    assert status(k)["stable"]["revision"] == revision  # the same version: nothing rolls


def test_a_restarted_operator_acts_on_what_was_resolved_while_the_registry_does_not_answer(
    k: Driver,
    mlflow: MlflowServer,  # noqa: F811
    registry: MlflowClient,
    operator: Operator,
) -> None:
    """An operator restarted (or a standby taking over) has no answer yet for any models:/ uri,
    and a registry that does not answer makes each first lookup last its timeout (10 s, 4 at a
    time). What was resolved before, recorded in status, is decided on meanwhile: an abort given
    while the operator was down is taken in its first reconcile, with ModelResolved still as it
    was, not held until the lookup gives up (it was: the abort came with RegistryUnavailable)."""
    body = following(k, mlflow, f"models:/{k.ns}@champion")
    body["spec"]["rollout"]["steps"] = [{"setWeight": 50}, {"pause": {}}]
    k.apply(body)
    k.wait_phase("fraud", "Ready")
    registry.set_alias(k.ns, "champion", "2")
    k.wait_phase("fraud", "Paused", timeout=60)
    assert status(k)["canary"]["version"] == "2"

    operator.stop()
    try:
        mlflow.pause()
        k.plugin("abort", "fraud")  # waits in its annotation
    finally:
        operator.start()
    try:
        st = k.wait(
            "the canary aborted",
            lambda: (s := status(k)).get("canary", {}).get("state") == "Aborted" and s,
            timeout=60,
        )
        said = next(c for c in st["conditions"] if c["type"] == "ModelResolved")
        assert (said["status"], said["reason"]) == ("True", "Resolved"), said
        assert (st["stable"]["version"], st["registry"]["version"]) == ("1", "2")
    finally:
        mlflow.resume()


def test_an_alias_that_does_not_exist_is_a_clear_condition_and_creates_nothing(
    k: Driver,
    mlflow: MlflowServer,  # noqa: F811
    registry: MlflowClient,
) -> None:
    k.apply(following(k, mlflow, f"models:/{k.ns}@challenger"))

    st = k.wait_phase("fraud", "Failed")["status"]
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "AliasNotFound"
    assert f"no alias 'challenger' of a model '{k.ns}'" in degraded["message"]
    assert "nothing is served until it resolves" in degraded["message"]
    assert k.items("deployments", "serving.slipway.dev/modeldeployment=fraud") == []

    registry.set_alias(k.ns, "challenger", "2")
    st = k.wait_phase("fraud", "Ready", timeout=60)["status"]
    assert st["stable"]["version"] == "2"


def test_a_pinned_version_is_resolved_once_and_served(
    k: Driver,
    mlflow: MlflowServer,  # noqa: F811
    registry: MlflowClient,
) -> None:
    k.apply(following(k, mlflow, f"models:/{k.ns}/2"))

    st = k.wait_phase("fraud", "Ready")["status"]
    assert (st["stable"]["version"], st["registry"]["uri"]) == ("2", f"models:/{k.ns}/2")
