"""The real API server with the generated CRD: bad input is stopped at the door, defaults are
filled in, kopf's status survives pruning, and `kubectl explain` tells people what a field means.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from slipway.api import ModelDeployment, ModelSpec

CORPUS_FILE = Path(__file__).resolve().parents[1] / "data" / "invalid-modeldeployments.yaml"
CORPUS: list[dict[str, Any]] = yaml.safe_load(CORPUS_FILE.read_text(encoding="utf-8"))

MINIMAL = {
    "apiVersion": "serving.slipway.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris"},
    "spec": {"model": {"version": "1.0.0", "uri": "s3://models/iris/1.0.0", "format": "sklearn"}},
}

# Every cross-field rule, passed the right way: a valid object must never be refused.
FULL_CANARY = {
    "apiVersion": "serving.slipway.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "fraud"},
    "spec": {
        "model": {
            "name": "fraud-detector",
            "version": "2.1.0",
            "uri": "hf://acme/fraud@v2",
            "format": "custom",
            "storage": {"secretName": "hf-token", "sha256": "a" * 64},
        },
        "runtime": {"image": "ghcr.io/acme/fraud-server:2.1.0", "protocol": "v2"},
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"nvidia.com/gpu": 1},
        },
        "autoscaling": {"minReplicas": 2, "maxReplicas": 2},
        "template": {
            "labels": {"team": "risk"},
            "nodeSelector": {"gpu": "true"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "imagePullSecrets": [{"name": "ghcr"}],
        },
        "rollout": {
            "strategy": "Canary",
            "steps": [
                {
                    "evaluate": {
                        "data": {"uri": "s3://eval/fraud.jsonl", "storage": {"secretName": "s3"}},
                        "compare": "numbers",
                        "tolerance": 0.01,
                        "gates": [
                            {"measure": "agreement", "min": 0.95},
                            {"measure": "ks", "max": 0.1},
                            {"measure": "latency-p99", "maxRatioToStable": 1.5},
                            {"measure": "error-rate", "name": "errors", "max": 0.01},
                        ],
                    }
                },
                {"setWeight": 10},
                {"pause": {"duration": "1h30m"}},
                {"setWeight": 10},
                {"pause": {}},
                {"setWeight": 100},
            ],
            "analysis": {
                "prometheus": {"address": "http://prometheus.monitoring:9090"},
                "metrics": [
                    {"name": "error-rate", "query": "vector(0)", "max": 0.01},
                    {"name": "throughput", "query": "vector(5)", "min": 1, "max": 1},
                ],
            },
            "maxSurge": 0,
            "maxUnavailable": "10%",
            "trafficRouting": {"gatewayAPI": {"httpRoute": "fraud"}},
        },
    },
}


def as_yaml(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


@pytest.fixture(scope="module")
def corpus_namespace(cluster: Any, crds: None) -> Iterator[str]:
    """One namespace for the whole corpus: rejected objects leave nothing behind to collide."""
    name = f"t-crd-corpus-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("case", CORPUS, ids=[case["name"] for case in CORPUS])
def test_api_server_rejects_invalid_modeldeployment_naming_the_field(
    cluster: Any, corpus_namespace: str, case: dict[str, Any]
) -> None:
    result = cluster.kubectl(
        "apply", "-n", corpus_namespace, "-f", "-", input=as_yaml(case["object"]), check=False
    )
    assert result.returncode != 0, f"accepted, but {case['why']}"
    missing = [words for words in case["expect"] if words not in result.stderr]
    assert not missing, f"the error lacks {missing}:\n{result.stderr}"


def stored(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    """A ModelDeployment as the API server stored it."""
    body: dict[str, Any] = json.loads(
        cluster.kubectl("get", "md", name, "-n", namespace, "-o", "json").stdout
    )
    return body


def applied(cluster: Any, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Apply an object and return it as the API server stored it."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=as_yaml(obj))
    return stored(cluster, namespace, obj["metadata"]["name"])


def test_minimal_modeldeployment_is_accepted_and_defaulted(
    cluster: Any, crds: None, namespace: str
) -> None:
    spec = applied(cluster, namespace, MINIMAL)["spec"]
    assert spec["replicas"] == 1
    assert spec["revisionHistoryLimit"] == 3
    assert spec["model"] == MINIMAL["spec"]["model"]


def test_full_canary_modeldeployment_is_accepted_and_defaulted(
    cluster: Any, crds: None, namespace: str
) -> None:
    body = applied(cluster, namespace, FULL_CANARY)
    spec = body["spec"]
    assert spec["runtime"]["port"] == 8080
    assert spec["rollout"]["progressDeadlineSeconds"] == 600
    assert spec["rollout"]["autoRollback"] is True
    assert spec["rollout"]["maxSurge"] == 0
    assert spec["rollout"]["analysis"]["interval"] == "1m"
    assert spec["rollout"]["analysis"]["failureLimit"] == 1
    assert spec["rollout"]["analysis"]["prometheus"]["timeout"] == "10s"
    assert spec["model"]["storage"]["sizeLimit"] == "20Gi"
    assert spec["autoscaling"]["targetCPUUtilizationPercentage"] == 80
    # what the server stored, the operator can parse
    assert ModelDeployment.from_body(body).spec.rollout.steps[2].pause is not None
    evaluate = spec["rollout"]["steps"][0]["evaluate"]
    assert (evaluate["timeout"], evaluate["requestTimeout"], evaluate["concurrency"]) == (
        "10m",
        "30s",
        4,
    )


def test_kopf_bookkeeping_in_status_survives_and_unknown_status_is_pruned(
    cluster: Any, crds: None, namespace: str
) -> None:
    applied(cluster, namespace, MINIMAL)
    patch = {"status": {"kopf": {"progress": {"reconcile": {"retries": 1}}}, "bogus": 1}}
    status_patch = ["--subresource=status", "--type=merge", "-p", json.dumps(patch)]
    cluster.kubectl("patch", "md", "iris", "-n", namespace, *status_patch)
    status = stored(cluster, namespace, "iris")["status"]
    assert status["kopf"] == {"progress": {"reconcile": {"retries": 1}}}
    assert "bogus" not in status


def test_kubectl_scale_sets_spec_replicas(cluster: Any, crds: None, namespace: str) -> None:
    applied(cluster, namespace, MINIMAL)
    cluster.kubectl("scale", "md", "iris", "-n", namespace, "--replicas=4")
    assert stored(cluster, namespace, "iris")["spec"]["replicas"] == 4


def test_kubectl_get_md_shows_the_printer_columns(cluster: Any, crds: None, namespace: str) -> None:
    applied(cluster, namespace, MINIMAL)
    header = cluster.kubectl("get", "md", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "MODEL", "VERSION", "CANARY", "WEIGHT", "READY", "PHASE", "AGE"]
    listed = cluster.kubectl("get", "slipway", "-n", namespace, "-o", "name").stdout
    assert "modeldeployment.serving.slipway.dev/iris" in listed


def test_kubectl_explain_prints_the_field_descriptions(cluster: Any, crds: None) -> None:
    # the CRD's OpenAPI is published a moment after it is Established
    deadline = time.monotonic() + 60
    while True:
        result = cluster.kubectl("explain", "md.spec.model", check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for name, field in ModelSpec.model_fields.items():
        assert " ".join((field.description or "").split()) in text, name
