"""The children of a ModelDeployment: Deployment, Services, HPA, names and labels."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from kubernetes.client import ApiClient

from slipway.api import ModelDeployment, ServingSpec
from slipway.resources import (
    HTTPRouteNotWired,
    controlled_by,
    deployment_name,
    desired_deployment,
    desired_hpa,
    desired_service,
    httproute_weights_patch,
    not_ours,
    pins_for,
    pod_selector,
    revision_of,
    service_name,
    url_for,
)
from slipway.resources.names import label_value
from slipway.resources.pins import POD_SHAPE

OPERATOR_IMAGE = "ghcr.io/slipway/slipway:0.1.0"
BASE_SPEC: dict[str, Any] = {
    "model": {"version": "2.1.0", "uri": "s3://models/fraud/2.1.0", "format": "sklearn"},
}
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in, recursively for dicts."""
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def model_deployment(
    spec: dict[str, Any] | None = None, *, name: str = "fraud", namespace: str = "ml"
) -> ModelDeployment:
    """A ModelDeployment as the API server returns it, BASE_SPEC with `spec` merged in."""
    return ModelDeployment.from_body(
        {
            "apiVersion": "serving.slipway.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace, "uid": "uid-1", "generation": 1},
            "spec": merged(BASE_SPEC, spec or {}),
        }
    )


def deployment(
    spec: dict[str, Any] | None = None,
    track: str | None = "stable",
    replicas: int = 3,
    serving: ServingSpec | None = None,
) -> dict[str, Any]:
    md = model_deployment(spec)
    serving = serving or md.spec.serving()
    pins = pins_for(serving, md.name, OPERATOR_IMAGE)
    return desired_deployment(md, serving, revision_of(serving), track, replicas, pins)


def server_of(manifest: dict[str, Any]) -> dict[str, Any]:
    containers = manifest["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["server"]
    return dict(containers[0])


CONTRACT_LABELS = {
    "app.kubernetes.io/name": "fraud",
    "app.kubernetes.io/instance": "fraud",
    "app.kubernetes.io/version": "2.1.0",
    "app.kubernetes.io/managed-by": "slipway",
    "serving.slipway.dev/modeldeployment": "fraud",
}


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("track", "name"), [(None, "fraud"), ("stable", "fraud-stable"), ("canary", "fraud-canary")]
)
def test_service_names_are_the_contract_names(track: str | None, name: str) -> None:
    assert service_name("fraud", track) == name


def test_deployment_of_a_revision_is_named_after_it() -> None:
    assert deployment_name("fraud", "0123456789") == "fraud-0123456789"


@pytest.mark.parametrize("length", [56, 57, 63, 64, 100, 253])
@pytest.mark.parametrize("track", [None, "stable", "canary"])
def test_long_names_give_service_names_of_at_most_63_characters(
    length: int, track: str | None
) -> None:
    name = ("a" * 30 + "-" + "b" * 300)[:length]
    fitted = service_name(name, track)
    assert len(fitted) <= 63
    assert DNS_LABEL.match(fitted)
    if track is not None:
        assert fitted.endswith(f"-{track}")
    assert fitted == service_name(name, track)


def test_long_names_that_differ_only_at_the_end_get_different_service_names() -> None:
    prefix = "m" * 70
    assert service_name(prefix + "x", "stable") != service_name(prefix + "y", "stable")


def test_names_that_fit_are_left_alone() -> None:
    name = "m" * 56
    assert service_name(name, "canary") == name + "-canary"


def test_an_unknown_track_is_refused() -> None:
    with pytest.raises(ValueError, match="track must be one of stable, canary"):
        service_name("fraud", "blue")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2.1.0", "2.1.0"),
        ("v1+build.7", "v1-build.7"),
        ("-edge-", "edge"),
        ("x" * 70, None),
    ],
)
def test_label_values_are_made_valid(text: str, value: str | None) -> None:
    result = label_value(text)
    assert len(result) <= 63
    assert re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", result)
    if value is not None:
        assert result == value


# --- Deployment ------------------------------------------------------------------------------


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_deployment_object_carries_the_contract_labels_and_its_track(track: str) -> None:
    manifest = deployment(track=track)
    revision = revision_of(model_deployment().spec.serving())
    assert manifest["metadata"]["labels"] == CONTRACT_LABELS | {
        "serving.slipway.dev/revision": revision,
        "serving.slipway.dev/track": track,
    }


def test_a_retired_revision_has_no_track_label() -> None:
    assert "serving.slipway.dev/track" not in deployment(track=None)["metadata"]["labels"]


@pytest.mark.parametrize("track", ["stable", "canary", None])
def test_pod_template_never_carries_the_track_label(track: str | None) -> None:
    labels = deployment(track=track)["spec"]["template"]["metadata"]["labels"]
    assert "serving.slipway.dev/track" not in labels
    assert labels == CONTRACT_LABELS | {
        "serving.slipway.dev/revision": revision_of(model_deployment().spec.serving())
    }


def test_promotion_changes_no_field_of_the_pod_template() -> None:
    assert deployment(track="canary")["spec"] == deployment(track="stable")["spec"]


def test_selector_is_the_model_deployment_and_the_revision_only() -> None:
    manifest = deployment()
    revision = manifest["metadata"]["labels"]["serving.slipway.dev/revision"]
    assert manifest["spec"]["selector"] == {
        "matchLabels": {
            "serving.slipway.dev/modeldeployment": "fraud",
            "serving.slipway.dev/revision": revision,
        }
    }
    assert manifest["metadata"]["name"] == f"fraud-{revision}"


def test_pod_template_labels_and_annotations_reach_the_pods_but_cannot_break_the_selector() -> None:
    template = {
        "labels": {"team": "risk", "serving.slipway.dev/revision": "forged"},
        "annotations": {"prometheus.io/scrape": "true"},
    }
    pod_metadata = deployment({"template": template})["spec"]["template"]["metadata"]
    assert pod_metadata["labels"]["team"] == "risk"
    assert pod_metadata["labels"]["serving.slipway.dev/revision"] != "forged"
    assert pod_metadata["annotations"]["prometheus.io/scrape"] == "true"


def test_deployment_rolls_hand_edits_back_without_losing_pods() -> None:
    spec = deployment({"rollout": {"progressDeadlineSeconds": 120}}, replicas=4)["spec"]
    assert spec["replicas"] == 4
    assert spec["revisionHistoryLimit"] == 0
    assert spec["progressDeadlineSeconds"] == 120
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }


def test_pods_are_shaped_by_the_serving_spec_given_not_by_the_current_spec() -> None:
    stored = model_deployment().spec.serving()
    md = model_deployment({"model": {"version": "3.0.0", "format": "onnx"}})
    pins = pins_for(stored, md.name, OPERATOR_IMAGE)
    manifest = desired_deployment(md, stored, revision_of(stored), "stable", 2, pins)
    assert server_of(manifest)["image"] == "docker.io/seldonio/mlserver:1.7.1"
    assert manifest["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == (
        "2.1.0"
    )
    assert manifest["metadata"]["name"] == f"fraud-{revision_of(stored)}"


def test_the_server_container_listens_on_the_runtime_port_and_is_probed_there() -> None:
    server = server_of(deployment({"runtime": {"port": 9000}}))
    assert server["ports"] == [
        {"name": "http", "containerPort": 9000, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 8082, "protocol": "TCP"},  # MLServer's own
    ]
    assert server["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 9000}
    assert server["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 9000}
    assert "startupProbe" in server


def test_the_server_reads_the_model_read_only_at_mnt_models() -> None:
    assert server_of(deployment())["volumeMounts"] == [
        {"name": "model", "mountPath": "/mnt/models", "readOnly": True}
    ]


def test_gpu_limits_and_requests_pass_through() -> None:
    resources = {
        "requests": {"cpu": "2", "memory": "16Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": 1},
    }
    assert server_of(deployment({"resources": resources}))["resources"] == {
        "requests": {"cpu": "2", "memory": "16Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"},
    }


def test_no_resources_means_no_resources_field() -> None:
    assert "resources" not in server_of(deployment())


def test_user_env_and_args_reach_the_server() -> None:
    runtime = {
        "image": "example.com/server:1",
        "args": ["--workers", "2"],
        "env": [{"name": "SLIPWAY_MODEL_NAME", "value": "override"}],
    }
    server = server_of(deployment({"model": {"format": "custom"}, "runtime": runtime}))
    assert server["image"] == "example.com/server:1"
    assert server["args"] == ["--workers", "2"]
    assert "command" not in server
    assert [v for v in server["env"] if v["name"] == "SLIPWAY_MODEL_NAME"] == [
        {"name": "SLIPWAY_MODEL_NAME", "value": "override"}
    ]
    assert server["readinessProbe"]["tcpSocket"] == {"port": 8080}


def test_spec_template_reaches_the_pod_spec() -> None:
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    affinity: dict[str, Any] = {
        "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}
    }
    template = {
        "nodeSelector": {"gpu": "a100"},
        "tolerations": [toleration],
        "affinity": affinity,
        "serviceAccountName": "model-reader",
        "imagePullSecrets": [{"name": "registry"}],
        "priorityClassName": "inference",
    }
    pod = deployment({"template": template})["spec"]["template"]["spec"]
    assert {key: pod[key] for key in template} == template


def test_an_empty_template_adds_no_scheduling_fields() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    absent = (
        "nodeSelector",
        "tolerations",
        "affinity",
        "serviceAccountName",
        "imagePullSecrets",
        "priorityClassName",
    )
    assert not set(absent) & set(pod)
    assert pod["enableServiceLinks"] is False
    assert pod["terminationGracePeriodSeconds"] > 0


# --- owner references ------------------------------------------------------------------------


def children() -> list[dict[str, Any]]:
    md = model_deployment({"autoscaling": {"maxReplicas": 5}})
    hpa = desired_hpa(md)
    assert hpa is not None
    return [
        deployment({"autoscaling": {"maxReplicas": 5}}),
        desired_service(md, None, None, 8080),
        desired_service(md, "stable", "0123456789", 8080),
        desired_service(md, "canary", "abcdef0123", 8080),
        hpa,
    ]


@pytest.mark.parametrize("index", range(5), ids=["deployment", "svc", "stable", "canary", "hpa"])
def test_every_child_is_owned_by_its_model_deployment_and_carries_the_contract_labels(
    index: int,
) -> None:
    child = children()[index]
    assert child["metadata"]["namespace"] == "ml"
    assert child["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "serving.slipway.dev/v1alpha1",
            "kind": "ModelDeployment",
            "name": "fraud",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert CONTRACT_LABELS.items() <= child["metadata"]["labels"].items()


@pytest.mark.parametrize("index", range(5), ids=["deployment", "svc", "stable", "canary", "hpa"])
def test_every_child_is_ours_to_write_and_to_delete(index: int) -> None:
    md = model_deployment({})
    child = children()[index]
    assert not_ours(child, md) is None
    assert controlled_by(child, md)


def owned(kind: str, name: str, uid: str) -> list[dict[str, Any]]:
    return [{"kind": kind, "name": name, "uid": uid, "controller": True}]


@pytest.mark.parametrize(
    ("metadata", "writable", "deletable", "said"),
    [
        # ours, by uid
        ({"ownerReferences": owned("ModelDeployment", "fraud", "uid-1")}, True, True, None),
        # an earlier ModelDeployment of the same name (deleted, its children not collected yet)
        (
            {"ownerReferences": owned("ModelDeployment", "fraud", "uid-0")},
            False,
            False,
            "controlled by ModelDeployment 'fraud' (uid uid-0)",
        ),
        # another ModelDeployment's: `fraud-stable`'s Service `fraud-stable`
        (
            {"ownerReferences": owned("ModelDeployment", "fraud-stable", "uid-2")},
            False,
            False,
            "controlled by ModelDeployment 'fraud-stable'",
        ),
        # another controller's, even with Slipway's labels
        (
            {
                "ownerReferences": owned("Application", "fraud", "uid-3"),
                "labels": {
                    "app.kubernetes.io/managed-by": "slipway",
                    "serving.slipway.dev/modeldeployment": "fraud",
                },
            },
            False,
            False,
            "controlled by Application 'fraud'",
        ),
        # a user's own (a migration: Service `fraud` of the Deployment being replaced)
        ({"labels": {"app": "fraud"}}, False, False, "is not Slipway's"),
        # Slipway's labels for this one, no controller: orphaned (--cascade=orphan) or a copy:
        # written only when wanted (adopted), never deleted
        (
            {
                "labels": {
                    "app.kubernetes.io/managed-by": "slipway",
                    "serving.slipway.dev/modeldeployment": "fraud",
                }
            },
            True,
            False,
            None,
        ),
        # Slipway's labels for another
        (
            {
                "labels": {
                    "app.kubernetes.io/managed-by": "slipway",
                    "serving.slipway.dev/modeldeployment": "fraud-stable",
                }
            },
            False,
            False,
            "is not Slipway's",
        ),
    ],
    ids=["ours", "earlier-same-name", "other-md", "other-controller", "users", "orphan", "labels"],
)
def test_an_object_under_a_childs_name_is_written_and_deleted_only_when_it_is_ours(
    metadata: dict[str, Any], writable: bool, deletable: bool, said: str | None
) -> None:
    md = model_deployment({})
    obj = {"metadata": {"name": "fraud", "namespace": "ml", **metadata}}
    reason = not_ours(obj, md)
    assert (reason is None) is writable
    assert controlled_by(obj, md) is deletable
    if said is not None:
        assert reason is not None and said in reason


# --- Services --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("track", "revision", "name", "selector"),
    [
        (None, None, "fraud", {"serving.slipway.dev/modeldeployment": "fraud"}),
        (
            "stable",
            "0123456789",
            "fraud-stable",
            {
                "serving.slipway.dev/modeldeployment": "fraud",
                "serving.slipway.dev/revision": "0123456789",
            },
        ),
        (
            "canary",
            "abcdef0123",
            "fraud-canary",
            {
                "serving.slipway.dev/modeldeployment": "fraud",
                "serving.slipway.dev/revision": "abcdef0123",
            },
        ),
    ],
)
def test_services_select_every_pod_or_one_revision(
    track: str | None, revision: str | None, name: str, selector: dict[str, str]
) -> None:
    service = desired_service(model_deployment(), track, revision, 8080)
    assert service["metadata"]["name"] == name
    assert service["spec"]["selector"] == selector
    assert service["metadata"]["labels"].get("serving.slipway.dev/track") == track


@pytest.mark.parametrize(
    ("track", "revision", "serves", "labels"),
    [
        (None, None, None, ("fraud", "2.1.0")),
        (None, None, {"version": "1.9.0"}, ("fraud", "1.9.0")),
        ("stable", "0123456789", {"name": "fraud-v1", "version": "1.9.0"}, ("fraud-v1", "1.9.0")),
        ("canary", "abcdef0123", {}, ("fraud", "2.1.0")),
    ],
)
def test_a_service_says_the_model_it_serves_else_the_specs(
    track: str | None, revision: str | None, serves: dict[str, str] | None, labels: tuple[str, str]
) -> None:
    """`<name>-stable` says 1.9.0 while a 2.1.0 canary runs (or after it was rolled back), so a
    new version's canary leaves it as it is; a revision's model without a name is served under
    the ModelDeployment's name, as its Deployment says."""
    service = desired_service(model_deployment(), track, revision, 8080, serves)
    found = service["metadata"]["labels"]
    assert (found["app.kubernetes.io/name"], found["app.kubernetes.io/version"]) == labels


def test_services_listen_on_the_runtime_port_and_target_the_named_port() -> None:
    spec = desired_service(model_deployment(), None, None, 9000)["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["ports"] == [
        {"name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"}
    ]


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_a_track_service_needs_a_revision(track: str) -> None:
    with pytest.raises(ValueError, match="needs its revision"):
        desired_service(model_deployment(), track, None, 8080)


def test_the_main_service_may_select_one_revision_alone() -> None:
    service = desired_service(model_deployment(), None, "0123456789", 8080)
    assert service["metadata"]["name"] == "fraud"
    assert service["spec"]["selector"] == {
        "serving.slipway.dev/modeldeployment": "fraud",
        "serving.slipway.dev/revision": "0123456789",
    }
    assert "serving.slipway.dev/track" not in service["metadata"]["labels"]


def test_the_url_is_the_main_service_in_cluster() -> None:
    assert url_for(model_deployment(), 8080) == "http://fraud.ml.svc.cluster.local:8080"


def test_the_pod_selector_selects_every_serving_pod() -> None:
    assert pod_selector(model_deployment()) == "serving.slipway.dev/modeldeployment=fraud"


# --- HPA -------------------------------------------------------------------------------------


def test_no_autoscaling_means_no_hpa() -> None:
    assert desired_hpa(model_deployment()) is None


def test_the_hpa_scales_the_model_deployment_itself() -> None:
    # the field's Python name: its wire alias (targetCPU... vs targetCpu...) is not settled yet
    autoscaling = {"minReplicas": 2, "maxReplicas": 10, "target_cpu_utilization_percentage": 70}
    hpa = desired_hpa(model_deployment({"autoscaling": autoscaling}))
    assert hpa is not None
    assert (hpa["apiVersion"], hpa["kind"], hpa["metadata"]["name"]) == (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "fraud",
    )
    assert hpa["spec"] == {
        "scaleTargetRef": {
            "apiVersion": "serving.slipway.dev/v1alpha1",
            "kind": "ModelDeployment",
            "name": "fraud",
        },
        "minReplicas": 2,
        "maxReplicas": 10,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70},
                },
            }
        ],
    }


# --- HTTPRoute weights -----------------------------------------------------------------------


def http_route(*rules: list[dict[str, Any]]) -> dict[str, Any]:
    """An HTTPRoute whose rules have these backendRefs, each with a match Slipway must keep."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud", "namespace": "ml", "resourceVersion": "42"},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "hostnames": ["fraud.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": f"/r{i}"}}],
                    "backendRefs": refs,
                }
                for i, refs in enumerate(rules)
            ],
        },
    }


def test_the_canary_backend_is_added_with_its_weight_and_other_backends_are_kept() -> None:
    other = {"name": "legacy", "port": 80, "weight": 5}
    route = http_route([{"name": "fraud-stable", "port": 8080, "weight": 100}, other])
    assert httproute_weights_patch(route, model_deployment(), 90, 10) == [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/r0"}}],
            "backendRefs": [
                {"name": "fraud-stable", "port": 8080, "weight": 90},
                other,
                {"name": "fraud-canary", "port": 8080, "weight": 10},
            ],
        }
    ]


def test_weights_already_set_need_no_change() -> None:
    route = http_route(
        [
            {"name": "fraud-stable", "port": 8080, "weight": 50},
            {"name": "fraud-canary", "port": 8080, "weight": 50},
        ]
    )
    assert httproute_weights_patch(route, model_deployment(), 50, 50) is None


def test_rules_that_do_not_serve_the_model_are_left_untouched() -> None:
    untouched = [{"name": "other-stable", "port": 80, "weight": 1}]
    route = http_route(untouched, [{"name": "fraud-stable", "port": 8080}])
    rules = httproute_weights_patch(route, model_deployment(), 100, 0)
    assert rules is not None
    assert rules[0] == route["spec"]["rules"][0]
    assert rules[1]["backendRefs"] == [
        {"name": "fraud-stable", "port": 8080, "weight": 100},
        {"name": "fraud-canary", "port": 8080, "weight": 0},
    ]


def test_backends_of_the_same_name_in_another_namespace_are_not_ours() -> None:
    foreign = {"name": "fraud-canary", "namespace": "elsewhere", "port": 8080, "weight": 3}
    route = http_route([{"name": "fraud-stable", "port": 8080}, foreign])
    rules = httproute_weights_patch(route, model_deployment(), 80, 20)
    assert rules is not None
    refs = rules[0]["backendRefs"]
    assert foreign in refs
    assert {"name": "fraud-canary", "port": 8080, "weight": 20} in refs


def test_the_backends_ports_follow_their_services_when_a_revision_listens_on_another() -> None:
    """A canary listening on 9090: Service fraud-canary moves to 9090, and the route's canary
    backendRef with it; at the promotion fraud-stable moves too. A route left on 8080 sends its
    share to a port no Service has (the gateway answers 5xx)."""
    route = http_route(
        [
            {"name": "fraud-stable", "port": 8080, "weight": 100},
            {"name": "fraud-canary", "port": 8080, "weight": 0},
        ]
    )
    md = model_deployment()
    canary = httproute_weights_patch(route, md, 80, 20, canary_port=9090, stable_port=8080)
    assert canary is not None
    assert canary[0]["backendRefs"] == [
        {"name": "fraud-stable", "port": 8080, "weight": 80},
        {"name": "fraud-canary", "port": 9090, "weight": 20},
    ]
    route["spec"]["rules"] = canary
    promoted = httproute_weights_patch(route, md, 100, 0, canary_port=9090, stable_port=9090)
    assert promoted is not None
    assert promoted[0]["backendRefs"] == [
        {"name": "fraud-stable", "port": 9090, "weight": 100},
        {"name": "fraud-canary", "port": 9090, "weight": 0},
    ]
    route["spec"]["rules"] = promoted
    assert httproute_weights_patch(route, md, 100, 0, canary_port=9090, stable_port=9090) is None


def test_the_route_read_is_not_modified() -> None:
    route = http_route([{"name": "fraud-stable", "port": 8080}])
    before = copy.deepcopy(route)
    httproute_weights_patch(route, model_deployment(), 90, 10)
    assert route == before


def test_a_route_without_the_stable_backend_says_what_to_add() -> None:
    route = http_route([{"name": "something-else", "port": 80}])
    with pytest.raises(HTTPRouteNotWired, match="no backendRef to Service 'fraud-stable'"):
        httproute_weights_patch(route, model_deployment(), 100, 0)


# --- field names Kubernetes knows ------------------------------------------------------------


def kubernetes_round_trip(manifest: dict[str, Any], model: str) -> Any:
    """`manifest` through the kubernetes client's typed model: unknown fields fall out."""
    client: Any = ApiClient()
    typed = client.deserialize(json.dumps(manifest), model, "application/json")
    return client.sanitize_for_serialization(typed)


@pytest.mark.parametrize(
    "uri", ["s3://models/fraud", "pvc://models/fraud", "oci://ghcr.io/acme/fraud:1"]
)
def test_deployments_use_only_fields_kubernetes_knows(uri: str) -> None:
    template = {
        "nodeSelector": {"gpu": "a100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        "imagePullSecrets": [{"name": "registry"}],
        "serviceAccountName": "reader",
        "priorityClassName": "inference",
    }
    spec = {
        "model": {"uri": uri, "storage": {"secretName": "s3", "sha256": "a" * 64}},
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "template": template,
    }
    manifest = deployment(spec)
    assert kubernetes_round_trip(manifest, "V1Deployment") == manifest


def test_services_and_hpa_use_only_fields_kubernetes_knows() -> None:
    *_, stable, canary, hpa = children()
    assert kubernetes_round_trip(stable, "V1Service") == stable
    assert kubernetes_round_trip(canary, "V1Service") == canary
    assert kubernetes_round_trip(hpa, "V2HorizontalPodAutoscaler") == hpa


# --- pod shape 2: graceful shutdown, fast probes, Pod Security restricted ---------------------


@pytest.mark.parametrize(
    ("spec", "delay", "grace"),
    [
        ({}, 5, 30),  # MLServer: 5 s delay, 25 s to finish in-flight requests
        ({"model": {"format": "huggingface"}}, 5, 120),  # vLLM: generations take minutes
        ({"runtime": {"shutdownDelaySeconds": 12}}, 12, 37),
        (
            {
                "runtime": {"shutdownDelaySeconds": 12},
                "template": {"terminationGracePeriodSeconds": 90},
            },
            12,
            90,
        ),
        ({"model": {"format": "custom"}, "runtime": {"image": "example.com/s:1"}}, 5, 30),
    ],
)  # fmt: skip
def test_a_stopping_pod_keeps_serving_for_the_shutdown_delay_before_sigterm(
    spec: dict[str, Any], delay: int, grace: int
) -> None:
    manifest = deployment(spec)
    pod = manifest["spec"]["template"]["spec"]
    assert server_of(manifest)["lifecycle"] == {"preStop": {"sleep": {"seconds": delay}}}
    assert pod["terminationGracePeriodSeconds"] == grace


def test_no_shutdown_delay_means_no_prestop_hook() -> None:
    manifest = deployment({"runtime": {"shutdownDelaySeconds": 0}})
    assert "lifecycle" not in server_of(manifest)
    assert manifest["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 25


@pytest.mark.parametrize(("model_format", "startup_period"), [("sklearn", 1), ("huggingface", 2)])
def test_a_pod_is_ready_within_a_probe_period_or_two_of_its_server(
    model_format: str, startup_period: int
) -> None:
    server = server_of(deployment({"model": {"format": model_format}}))
    assert server["startupProbe"]["periodSeconds"] == startup_period
    assert server["readinessProbe"]["periodSeconds"] == 2
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60


def test_preset_pods_pass_pod_security_restricted() -> None:
    manifest = deployment()
    pod = manifest["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsNonRoot": True,
        "runAsUser": 1000,
    }
    assert server_of(manifest)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


@pytest.mark.parametrize(
    "spec",
    [
        {"model": {"format": "custom"}, "runtime": {"image": "example.com/s:1"}},
        {"runtime": {"image": "example.com/my-mlserver:2"}},  # another image, another user
        {"model": {"format": "huggingface"}},  # vLLM's image runs as root
    ],
)
def test_an_image_whose_user_is_unknown_is_not_forced_to_a_uid(spec: dict[str, Any]) -> None:
    pod = deployment(spec)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}


def test_a_server_on_a_privileged_port_keeps_the_capability_to_bind_it() -> None:
    server = server_of(deployment({"runtime": {"port": 80}}))
    assert server["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["NET_BIND_SERVICE"],
    }


def test_the_users_security_contexts_replace_the_defaults_key_by_key() -> None:
    template = {
        "securityContext": {"runAsUser": 2000, "fsGroup": 2000},
        "containerSecurityContext": {"readOnlyRootFilesystem": True, "capabilities": {"drop": []}},
    }
    manifest = deployment({"template": template})
    assert manifest["spec"]["template"]["spec"]["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsNonRoot": True,
        "runAsUser": 2000,
        "fsGroup": 2000,
    }
    assert server_of(manifest)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": []},
        "readOnlyRootFilesystem": True,
    }


def test_the_deployment_says_which_pod_shape_built_it() -> None:
    assert deployment()["metadata"]["annotations"] == {
        "serving.slipway.dev/pod-shape": str(POD_SHAPE)
    }
