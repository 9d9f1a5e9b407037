"""What a scrape needs on a serving pod, the PodMonitor, and the plain scrape config."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from slipway.api import ModelDeployment, ServingSpec
from slipway.controller import Key, Store
from slipway.resources import desired_deployment, pins_for
from slipway.resources.podmonitor import desired_pod_monitor
from slipway.resources.scraping import (
    METRICS_PATH_ANNOTATION,
    METRICS_PORT_ANNOTATION,
    MetricsEndpoint,
    metrics_endpoint,
    relabelings,
    scrape_config,
)
from tests.conftest import ROOT


def serving(model_format: str, **runtime: Any) -> ServingSpec:
    return ServingSpec.model_validate(
        {
            "model": {"version": "1", "uri": "s3://m/1", "format": model_format},
            "runtime": {"image": "img" if model_format == "custom" else "", **runtime},
        }
    )


@pytest.mark.parametrize(
    ("model_format", "runtime", "endpoint"),
    [
        ("sklearn", {}, MetricsEndpoint(8082, "/metrics")),  # MLServer's metrics server
        ("xgboost", {"port": 9000}, MetricsEndpoint(8082, "/metrics")),
        ("onnx", {}, MetricsEndpoint(8002, "/metrics")),  # Triton
        ("huggingface", {}, MetricsEndpoint(8080, "/metrics")),  # vLLM: the serving port
        ("huggingface", {"port": 8000}, MetricsEndpoint(8000, "/metrics")),
        ("custom", {}, None),  # nothing known: nothing exposed
        ("custom", {"metrics": {"port": 9100}}, MetricsEndpoint(9100, "/metrics")),
        ("custom", {"metrics": {"port": 9100, "path": "/stats"}}, MetricsEndpoint(9100, "/stats")),
        ("sklearn", {"metrics": {"port": 9200}}, MetricsEndpoint(9200, "/metrics")),
    ],
)
def test_each_runtime_serves_its_metrics_where_its_server_does(
    model_format: str, runtime: dict[str, Any], endpoint: MetricsEndpoint | None
) -> None:
    assert metrics_endpoint(serving(model_format, **runtime)) == endpoint


def md(spec: dict[str, Any] | None = None) -> ModelDeployment:
    return ModelDeployment.from_body(
        {
            "metadata": {"name": "fraud", "namespace": "ml", "uid": "u-1"},
            "spec": {
                "model": {"version": "2.1.0", "uri": "s3://m/2", "format": "sklearn"},
                **(spec or {}),
            },
        }
    )


def pod_template(model: ModelDeployment, pod_shape: int | None = None) -> dict[str, Any]:
    serving = model.spec.serving()
    pins = pins_for(serving, model.name, "op:1")
    if pod_shape is not None:
        pins = pins.model_copy(update={"pod_shape": pod_shape})
    manifest = desired_deployment(model, serving, "9ab1c0de77", "canary", 2, pins)
    template: dict[str, Any] = manifest["spec"]["template"]
    return template


def test_a_serving_pod_names_its_metrics_port_and_path() -> None:
    template = pod_template(md())
    server = template["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": 8082, "protocol": "TCP"} in server["ports"]
    assert template["metadata"]["annotations"][METRICS_PORT_ANNOTATION] == "8082"
    assert template["metadata"]["annotations"][METRICS_PATH_ANNOTATION] == "/metrics"


@pytest.mark.parametrize("pod_shape", [1])
def test_revisions_pinned_to_an_older_pod_shape_keep_their_pods_as_they_are(pod_shape: int) -> None:
    """The metrics port came with pod shape 2: an operator upgrade never rolls older revisions."""
    template = pod_template(md(), pod_shape)
    assert [p["name"] for p in template["spec"]["containers"][0]["ports"]] == ["http"]
    assert METRICS_PORT_ANNOTATION not in template["metadata"]["annotations"]


def test_metrics_on_the_serving_port_add_no_second_port() -> None:
    template = pod_template(
        md({"model": {"version": "1", "uri": "hf://q/w", "format": "huggingface"}})
    )
    ports = template["spec"]["containers"][0]["ports"]
    assert [p["containerPort"] for p in ports] == [8080]  # a duplicate port draws a warning
    assert template["metadata"]["annotations"][METRICS_PORT_ANNOTATION] == "8080"


def test_a_custom_image_without_a_metrics_port_is_left_as_it_is() -> None:
    template = pod_template(
        md(
            {
                "model": {"version": "1", "uri": "s3://m/1", "format": "custom"},
                "runtime": {"image": "img"},
            }
        )
    )
    assert METRICS_PORT_ANNOTATION not in template["metadata"]["annotations"]
    assert [p["name"] for p in template["spec"]["containers"][0]["ports"]] == ["http"]


def test_the_pod_monitor_selects_the_models_pods_and_labels_the_tracks() -> None:
    monitor = desired_pod_monitor(md(), stable="5d8f3a1c2b", canary="9ab1c0de77")
    assert monitor is not None
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert monitor["metadata"]["name"] == "fraud"
    assert monitor["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    assert monitor["spec"]["selector"] == {
        "matchLabels": {"serving.slipway.dev/modeldeployment": "fraud"}
    }
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    revision = "__meta_kubernetes_pod_label_serving_slipway_dev_revision"
    assert {"sourceLabels": [revision], "targetLabel": "revision"} in endpoint["relabelings"]
    assert endpoint["relabelings"][-2:] == [
        {
            "sourceLabels": [revision],
            "regex": "5d8f3a1c2b",
            "targetLabel": "track",
            "replacement": "stable",
        },
        {
            "sourceLabels": [revision],
            "regex": "9ab1c0de77",
            "targetLabel": "track",
            "replacement": "canary",
        },
    ]
    assert "interval" not in endpoint


def test_the_pod_monitor_follows_its_switch_labels_and_interval() -> None:
    off = md({"monitoring": {"podMonitor": {"enabled": False}}})
    assert desired_pod_monitor(off, "5d8f3a1c2b", None) is None
    on = md({"monitoring": {"podMonitor": {"labels": {"release": "prom"}, "interval": "15s"}}})
    monitor = desired_pod_monitor(on, "5d8f3a1c2b", None)
    assert monitor is not None
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "slipway"
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["interval"] == "15s"
    assert [
        r.get("replacement") for r in endpoint["relabelings"] if r.get("targetLabel") == "track"
    ] == ["stable"]


def test_the_pod_monitor_and_the_plain_config_relabel_alike() -> None:
    monitor = desired_pod_monitor(md(), None, None)
    assert monitor is not None
    camel = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
    plain = relabelings(plain=False)
    assert len(camel) == len(plain)
    for ours, theirs in zip(camel, plain, strict=True):
        assert ours.get("sourceLabels") == theirs.get("source_labels")
        assert ours.get("targetLabel") == theirs.get("target_label")
        assert ours.get("action") == theirs.get("action")


def test_the_readme_documents_the_plain_scrape_config_as_the_code_builds_it() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(scrape_configs:\n.*?)```", readme, re.DOTALL)
    assert blocks, "README.md has no scrape_configs block"
    documented = yaml.safe_load(blocks[0])["scrape_configs"][0]
    assert documented == scrape_config()


def test_the_plain_config_keeps_only_the_named_metrics_port_of_slipways_running_pods() -> None:
    rules = scrape_config()["relabel_configs"]
    actions = [(r.get("action", "replace"), r.get("target_label", "")) for r in rules]
    assert actions[:3] == [("drop", ""), ("keep", ""), ("keepequal", rules[2]["target_label"])]
    assert (
        rules[2]["target_label"]
        == "__meta_kubernetes_pod_annotation_serving_slipway_dev_metrics_port"
    )
    targets = {r["target_label"] for r in rules if r.get("target_label")}
    assert {
        "namespace",
        "pod",
        "container",
        "modeldeployment",
        "revision",
        "__metrics_path__",
    } <= targets


def test_a_fresh_list_names_the_owners_of_podmonitors_that_changed_came_or_went() -> None:
    def monitor(name: str, version: str, port: str = "http") -> dict[str, Any]:
        owner = {"kind": "ModelDeployment", "name": name, "controller": True}
        return {
            "metadata": {
                "name": name,
                "namespace": "ml",
                "resourceVersion": version,
                "ownerReferences": [owner],
            },
            "spec": {"podMetricsEndpoints": [{"port": port}]},
        }

    store = Store()
    for name in ("fraud", "iris", "gone"):
        store.upsert("PodMonitor", monitor(name, "10"))  # what Slipway applied
    listed = [
        monitor("fraud", "12"),  # touched, nothing the reconcile reads changed
        monitor("iris", "27", port="metrics"),  # edited by hand
        monitor("new", "5"),
    ]
    owners = store.replace("PodMonitor", listed)
    assert owners == {Key("ml", "iris"), Key("ml", "new"), Key("ml", "gone")}
    assert store.get("PodMonitor", "ml", "gone") is None
