"""The model-storage wiring of every uri scheme builds Deployments the real API server accepts
(server-side dry run: admission and validation run, nothing is stored)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from slipway.api import ModelDeployment
from slipway.resources import desired_deployment, pins_for, revision_of
from tests.conftest import Cluster

URIS = [
    "pvc://models-claim/fraud/2.1.0",
    "s3://models/fraud/2.1.0",
    "gs://models/fraud/2.1.0",
    "hf://Qwen/Qwen2.5-0.5B-Instruct@main",
    "https://models.example.com/fraud/2.1.0/model.onnx",
    "oci://registry.example.com/models/fraud:2.1.0",
]


def md_for(uri: str, namespace: str, **model: Any) -> ModelDeployment:
    return ModelDeployment.from_body(
        {
            "metadata": {"name": "fraud", "namespace": namespace, "uid": "0000-uid"},
            "spec": {
                "model": {"version": "2.1.0", "uri": uri, "format": "onnx", **model},
                "replicas": 2,
                "resources": {"limits": {"nvidia.com/gpu": 1}},
            },
        }
    )


@pytest.mark.parametrize("uri", URIS)
def test_each_uri_scheme_gives_a_deployment_the_api_server_accepts(
    cluster: Cluster, namespace: str, uri: str
) -> None:
    storage = {"storage": {"secretName": "model-creds", "sha256": "a" * 64, "sizeLimit": "5Gi"}}
    md = md_for(uri, namespace, **({} if uri.startswith(("pvc", "oci")) else storage))
    serving = md.spec.serving()
    pins = pins_for(serving, md.name, "ghcr.io/slipway-dev/slipway:0.1.0")
    manifest = desired_deployment(md, serving, revision_of(serving), "stable", 2, pins)
    manifest["metadata"].pop("ownerReferences")  # the owner does not exist in a dry run
    proc = cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=slipway",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(manifest),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    stored = json.loads(proc.stdout)
    pod = stored["spec"]["template"]["spec"]
    server = next(c for c in pod["containers"] if c["name"] == "server")
    mount = next(m for m in server["volumeMounts"] if m["mountPath"] == "/mnt/models")
    assert mount["readOnly"] is True
    fetchers = [c for c in pod.get("initContainers") or [] if c["name"] == "storage-initializer"]
    if uri.startswith(("pvc://", "oci://")):
        assert not fetchers, "mounted models need no download"
    else:
        (fetcher,) = fetchers
        assert fetcher["command"] == ["slipway"]
        assert fetcher["args"] == ["fetch", uri, "/mnt/models", "--sha256", "a" * 64]
        assert fetcher["envFrom"] == [{"secretRef": {"name": "model-creds", "optional": False}}]
