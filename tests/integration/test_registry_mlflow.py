"""The operator's MLflow client against a real MLflow tracking server (tests/mlflow_server.py):
aliases and version numbers resolved to a version and its artifact location, and every way it
cannot be, in Slipway's words."""

from __future__ import annotations

import pytest

from slipway.registry import RegistryError, Resolved, parse_registry_uri, resolve
from tests.mlflow_server import MlflowClient, MlflowServer, mlflow  # noqa: F401


@pytest.fixture(scope="module")
def registry(mlflow: MlflowServer) -> MlflowClient:  # noqa: F811
    client = MlflowClient(mlflow.url)
    client.create_model("fraud")
    for version in ("1", "2"):
        assert client.create_version("fraud", f"s3://models/fraud/v{version}") == version
    client.set_alias("fraud", "champion", "1")
    return client


def resolved(mlflow: MlflowServer, uri: str) -> Resolved:  # noqa: F811
    return resolve(parse_registry_uri(uri), mlflow.url, {})


def refusal(mlflow: MlflowServer, uri: str, timeout: float = 10) -> RegistryError:  # noqa: F811
    with pytest.raises(RegistryError) as caught:
        resolve(parse_registry_uri(uri), mlflow.url, {}, timeout=timeout)
    return caught.value


def test_an_alias_and_a_version_resolve_to_their_artifacts(
    mlflow: MlflowServer,  # noqa: F811
    registry: MlflowClient,
) -> None:
    assert resolved(mlflow, "models:/fraud@champion") == Resolved("1", "s3://models/fraud/v1")
    assert resolved(mlflow, "models:/fraud/2") == Resolved("2", "s3://models/fraud/v2")

    registry.set_alias("fraud", "champion", "2")
    assert resolved(mlflow, "models:/fraud@champion") == Resolved("2", "s3://models/fraud/v2")
    registry.set_alias("fraud", "champion", "1")


@pytest.mark.parametrize(
    ("uri", "reason", "says"),
    [
        (
            "models:/fraud@challenger",
            "AliasNotFound",
            "the registry has no alias 'challenger' of a model 'fraud'",
        ),
        (
            "models:/nobody@champion",
            "AliasNotFound",
            "the registry has no alias 'champion' of a model 'nobody'",
        ),
        ("models:/fraud/9", "VersionNotFound", "the registry has no version 9 of a model 'fraud'"),
    ],
)
def test_what_the_registry_does_not_have_is_named(
    mlflow: MlflowServer,  # noqa: F811
    registry: MlflowClient,
    uri: str,
    reason: str,
    says: str,
) -> None:
    error = refusal(mlflow, uri)
    assert (error.reason, error.message) == (reason, f"{uri}: {says}")


def test_artifacts_the_fetcher_cannot_read_are_refused_saying_what_would_do(
    mlflow: MlflowServer,  # noqa: F811
    registry: MlflowClient,
) -> None:
    # logged the usual way, from a run: the server keeps the files in its own artifact root
    version = registry.create_run_version("fraud", "model")

    error = refusal(mlflow, f"models:/fraud/{version}")

    assert error.reason == "UnsupportedArtifactLocation"
    assert "slipway fetch reads s3://, gs://, http(s):// and hf://" in error.message


def test_a_registry_that_does_not_answer_is_unavailable_within_the_timeout(
    mlflow: MlflowServer,  # noqa: F811
    registry: MlflowClient,
) -> None:
    mlflow.pause()
    try:
        error = refusal(mlflow, "models:/fraud@champion", timeout=2)
    finally:
        mlflow.resume()
    assert error.reason == "RegistryUnavailable"
    assert error.message == f"MLflow at {mlflow.url} did not answer: timed out"
