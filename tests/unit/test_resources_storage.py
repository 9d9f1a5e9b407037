"""Model storage: every uri scheme reaches the server, read-only, at /mnt/models."""

from __future__ import annotations

from typing import Any

import pytest

from slipway.api import ModelSpec
from slipway.resources import ModelSource, model_source, storage_wiring
from slipway.resources.storage import StorageWiring

OPERATOR_IMAGE = "ghcr.io/slipway/slipway:0.1.0"
SHA256 = "a" * 64


def wiring(uri: str, storage: dict[str, Any] | None = None) -> StorageWiring:
    model: dict[str, Any] = {"version": "1", "uri": uri, "format": "sklearn"}
    if storage is not None:
        model["storage"] = storage
    return storage_wiring(ModelSpec.model_validate(model), OPERATOR_IMAGE)


SERVER_MOUNT = {"name": "model", "mountPath": "/mnt/models", "readOnly": True}


@pytest.mark.parametrize(
    ("uri", "model_volume", "server_mount"),
    [
        (
            "pvc://models/fraud/2.1.0",
            {"persistentVolumeClaim": {"claimName": "models", "readOnly": True}},
            SERVER_MOUNT | {"subPath": "fraud/2.1.0"},
        ),
        (
            "pvc://models",
            {"persistentVolumeClaim": {"claimName": "models", "readOnly": True}},
            SERVER_MOUNT,
        ),
        (
            "oci://ghcr.io/acme/fraud-weights:2.1.0",
            {
                "image": {
                    "reference": "ghcr.io/acme/fraud-weights:2.1.0",
                    "pullPolicy": "IfNotPresent",
                }
            },
            SERVER_MOUNT,
        ),
    ],
)
def test_mounted_sources_need_no_download(
    uri: str, model_volume: dict[str, Any], server_mount: dict[str, Any]
) -> None:
    result = wiring(uri)
    assert result.volumes == [{"name": "model", **model_volume}]
    assert result.init_containers == []
    assert result.server_mount == server_mount


@pytest.mark.parametrize(
    "uri",
    [
        "s3://models/fraud/2.1.0",
        "gs://models/fraud/2.1.0",
        "hf://meta-llama/Llama-3.1-8B-Instruct@main",
        "http://files.example.com/fraud.joblib",
        "https://files.example.com/fraud.joblib",
    ],
)
def test_remote_sources_are_fetched_into_an_empty_dir_by_slipway_fetch(uri: str) -> None:
    result = wiring(uri)
    model_volume = next(v for v in result.volumes if v["name"] == "model")
    assert model_volume == {"name": "model", "emptyDir": {"sizeLimit": "20Gi"}}
    [fetcher] = result.init_containers
    assert fetcher["name"] == "storage-initializer"
    assert fetcher["image"] == OPERATOR_IMAGE
    assert [*fetcher["command"], *fetcher["args"]] == ["slipway", "fetch", uri, "/mnt/models"]
    assert {"name": "model", "mountPath": "/mnt/models"} in fetcher["volumeMounts"]
    assert "envFrom" not in fetcher
    assert result.server_mount == SERVER_MOUNT


def test_every_volume_the_fetcher_mounts_exists() -> None:
    result = wiring("s3://models/fraud")
    volumes = {volume["name"] for volume in result.volumes}
    [fetcher] = result.init_containers
    assert {mount["name"] for mount in fetcher["volumeMounts"]} <= volumes


def test_fetch_uses_the_size_limit_the_checksum_and_the_secret_of_the_spec() -> None:
    result = wiring(
        "s3://models/fraud", {"secretName": "s3-credentials", "sizeLimit": "50Gi", "sha256": SHA256}
    )
    assert {"name": "model", "emptyDir": {"sizeLimit": "50Gi"}} in result.volumes
    [fetcher] = result.init_containers
    assert fetcher["args"][-2:] == ["--sha256", SHA256]
    assert fetcher["envFrom"] == [{"secretRef": {"name": "s3-credentials", "optional": False}}]


def test_the_fetcher_runs_locked_down() -> None:
    [fetcher] = wiring("hf://org/model").init_containers
    security = fetcher["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize(
    ("uri", "source"),
    [
        (
            "pvc://models/fraud/2.1.0/",
            ModelSource(
                uri="pvc://models/fraud/2.1.0/",
                scheme="pvc",
                reference="models/fraud/2.1.0/",
                claim="models",
                sub_path="fraud/2.1.0",
            ),
        ),
        (
            "pvc://models",
            ModelSource(uri="pvc://models", scheme="pvc", reference="models", claim="models"),
        ),
        ("s3://b/k", ModelSource(uri="s3://b/k", scheme="s3", reference="b/k")),
        ("hf://org/m@v1", ModelSource(uri="hf://org/m@v1", scheme="hf", reference="org/m@v1")),
        (
            "oci://reg/img:1",
            ModelSource(uri="oci://reg/img:1", scheme="oci", reference="reg/img:1"),
        ),
    ],
)
def test_model_uris_are_parsed(uri: str, source: ModelSource) -> None:
    assert model_source(uri) == source


@pytest.mark.parametrize(
    ("uri", "fetched"),
    [
        ("pvc://c", False),
        ("oci://r/i", False),
        ("s3://b/k", True),
        ("gs://b/k", True),
        ("hf://o/m", True),
        ("http://h/p", True),
        ("https://h/p", True),
    ],
)
def test_only_remote_stores_are_fetched(uri: str, fetched: bool) -> None:
    assert model_source(uri).fetched is fetched


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://host/model", "must start with one of pvc://, s3://"),
        ("s3://", "must start with one of"),
        ("/models/fraud", "must start with one of"),
        ("pvc:///fraud", "must name a claim"),
        ("pvc://models/../secrets", "must not leave the claim"),
    ],
)
def test_bad_uris_are_refused_naming_the_field(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"spec\.model\.uri") as error:
        model_source(uri)
    assert message in str(error.value)
