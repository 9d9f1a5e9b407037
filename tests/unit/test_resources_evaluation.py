"""The Job of an evaluation step."""

from __future__ import annotations

from typing import Any

import pytest

from slipway.api import ModelDeployment, Protocol
from slipway.api.evaluation import EvaluateStep
from slipway.resources.evaluation import (
    desired_evaluation_job,
    evaluation_job_name,
    service_url,
)

OPERATOR = "ghcr.io/slipway/slipway:0.2.0"


def md(name: str = "fraud", **spec: Any) -> ModelDeployment:
    return ModelDeployment.from_body(
        {
            "metadata": {"name": name, "namespace": "ml", "uid": "u-1"},
            "spec": {
                "model": {"version": "2.0.0", "uri": "s3://m/2", "format": "sklearn"},
                **spec,
            },
        }
    )


def evaluate(uri: str = "s3://eval/fraud.jsonl", **extra: Any) -> EvaluateStep:
    return EvaluateStep.model_validate(
        {"data": {"uri": uri}, "gates": [{"measure": "agreement", "min": 0.9}], **extra}
    )


def job(model: ModelDeployment | None = None, step: EvaluateStep | None = None) -> dict[str, Any]:
    model = model or md()
    return desired_evaluation_job(
        model,
        2,
        1,
        step or evaluate(),
        "9ab1c0de77",
        OPERATOR,
        service_url(model, "canary", 8080),
        service_url(model, "stable", 8080),
        Protocol.V2,
    )


def test_the_job_runs_slipway_evaluate_against_both_services() -> None:
    manifest = job()
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    assert manifest["metadata"]["name"] == "fraud-eval-9ab1c0de77-2-1"
    [container] = manifest["spec"]["template"]["spec"]["containers"]
    assert container["image"] == OPERATOR and container["command"] == ["slipway"]
    assert container["args"] == [
        "evaluate",
        "--data", "/data",
        "--canary", "http://fraud-canary.ml.svc.cluster.local:8080",
        "--stable", "http://fraud-stable.ml.svc.cluster.local:8080",
        "--model", "fraud",
        "--protocol", "v2",
        "--compare", "labels",
        "--tolerance", "0",
        "--concurrency", "4",
        "--request-timeout", "30",
    ]  # fmt: skip
    assert container["terminationMessagePolicy"] == "File"
    assert manifest["spec"]["backoffLimit"] == 0
    assert manifest["spec"]["activeDeadlineSeconds"] == 600


def test_the_job_is_owned_by_the_modeldeployment_but_its_pod_is_no_serving_pod() -> None:
    manifest = job()
    owner = manifest["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("ModelDeployment", "fraud", True)
    labels = manifest["metadata"]["labels"]
    assert labels["serving.slipway.dev/revision"] == "9ab1c0de77"
    assert labels["serving.slipway.dev/evaluation"] == "2"
    pod_labels = manifest["spec"]["template"]["metadata"]["labels"]
    # Services, the scale subresource and the HPA select serving pods by this label
    assert "serving.slipway.dev/modeldeployment" not in pod_labels
    assert pod_labels == {"serving.slipway.dev/evaluation": "fraud-eval-9ab1c0de77-2-1"}


def test_the_evaluation_pod_is_restricted_and_never_talks_to_the_api_server() -> None:
    pod = job()["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in [*pod["initContainers"], *pod["containers"]]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True


def test_a_fetched_evaluation_set_comes_by_slipway_fetch_with_its_credentials() -> None:
    step = evaluate(
        "s3://eval/fraud.jsonl",
        **{"data": {"uri": "s3://eval/fraud.jsonl", "storage": {"secretName": "eval-s3"}}},
    )
    pod = job(step=step)["spec"]["template"]["spec"]
    [fetch] = pod["initContainers"]
    assert fetch["args"] == ["fetch", "s3://eval/fraud.jsonl", "/data"]
    assert fetch["image"] == OPERATOR
    assert fetch["envFrom"] == [{"secretRef": {"name": "eval-s3", "optional": False}}]
    assert {"name": "evaluation-data", "mountPath": "/data"} in fetch["volumeMounts"]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "evaluation-data", "mountPath": "/data", "readOnly": True}
    ]


def test_an_evaluation_set_on_a_claim_is_mounted_read_only() -> None:
    pod = job(step=evaluate("pvc://datasets/fraud/eval.jsonl"))["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert pod["volumes"] == [
        {
            "name": "evaluation-data",
            "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True},
        }
    ]
    assert pod["containers"][0]["args"][1:3] == ["--data", "/data/fraud/eval.jsonl"]


def test_the_evaluation_pod_is_scheduled_where_the_serving_pods_may_be() -> None:
    placed = md(
        template={
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        }
    )
    pod = job(model=placed)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]


@pytest.mark.parametrize(
    ("extra", "args"),
    [
        ({"limit": 500}, ["--limit", "500"]),
        ({"output": "probabilities"}, ["--output", "probabilities"]),
        (
            {"compare": "numbers", "tolerance": 0.01},
            ["--compare", "numbers", "--tolerance", "0.01"],
        ),
    ],
)
def test_the_steps_options_reach_the_command(extra: dict[str, Any], args: list[str]) -> None:
    sent = job(step=evaluate(**extra))["spec"]["template"]["spec"]["containers"][0]["args"]
    assert any(sent[i : i + len(args)] == args for i in range(len(sent)))


def test_a_long_name_still_gives_a_job_name_its_pods_can_carry() -> None:
    name = evaluation_job_name(md("f" * 120), "9ab1c0de77", 13, 7)
    assert len(name) <= 63 and name.endswith("-eval-9ab1c0de77-13-7")
