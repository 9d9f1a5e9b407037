"""The operator's own validation of a spec, the second line behind the CRD: what it cannot serve
is refused before anything is built from it, and the refusal names the field (InvalidSpec)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from slipway.api import ModelDeployment
from slipway.reconcile import unreadable_message

MODEL = {"version": "1.0.0", "uri": "s3://models/iris/1.0.0", "format": "sklearn"}


def parsed(**spec: Any) -> ModelDeployment:
    return ModelDeployment.from_body(
        {"metadata": {"name": "iris", "namespace": "ml"}, "spec": {"model": MODEL, **spec}}
    )


def refusal(**spec: Any) -> str:
    """What the InvalidSpec condition says of a spec the operator cannot read."""
    with pytest.raises(ValidationError) as refused:
        parsed(**spec)
    return unreadable_message(refused.value)


# --- lists a pod keys by name


def test_two_environment_variables_of_one_name_are_refused_naming_the_list() -> None:
    env = [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}, {"name": "X", "value": "3"}]
    message = refusal(runtime={"env": env})
    assert message.startswith("spec.runtime.env: ")
    assert 'duplicate name "X" in entries 0 and 2' in message


def test_an_environment_variable_without_a_name_is_refused_naming_it() -> None:
    message = refusal(runtime={"env": [{"name": "X", "value": "1"}, {"value": "2"}]})
    assert message.startswith("spec.runtime.env.1: ")
    assert "needs a name" in message


def test_two_image_pull_secrets_of_one_name_are_refused_naming_the_list() -> None:
    message = refusal(template={"imagePullSecrets": [{"name": "ghcr"}, {"name": "ghcr"}]})
    assert message.startswith("spec.template.imagePullSecrets: ")
    assert 'duplicate name "ghcr" in entries 0 and 1' in message


def test_distinct_names_are_kept_in_order() -> None:
    md = parsed(
        runtime={"env": [{"name": "B", "value": "1"}, {"name": "A", "valueFrom": {}}]},
        template={"imagePullSecrets": [{"name": "ghcr"}, {"name": "ecr"}]},
    )
    assert [v["name"] for v in md.spec.runtime.env] == ["B", "A"]
    assert [s.name for s in md.spec.template.image_pull_secrets] == ["ghcr", "ecr"]


# --- the evaluation set's uri


def with_evaluation_of(uri: str) -> dict[str, Any]:
    evaluate = {"data": {"uri": uri}, "gates": [{"measure": "agreement", "min": 0.9}]}
    return {"strategy": "Canary", "steps": [{"setWeight": 10}, {"evaluate": evaluate}]}


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("pvc:///eval.jsonl", "names a claim"),
        ("pvc://data/../secrets/eval.jsonl", "never leaves it with '..'"),
        ("pvc://Data/eval.jsonl", "names a claim"),
        ("ftp://eval/fraud.jsonl", "must start with one of pvc://, s3://"),
        ("s3://", "must start with one of pvc://, s3://"),
    ],
)
def test_an_evaluation_set_the_job_could_not_mount_or_fetch_is_refused_naming_its_uri(
    uri: str, words: str
) -> None:
    message = refusal(rollout=with_evaluation_of(uri))
    assert message.startswith("spec.rollout.steps.1.evaluate.data.uri: ")
    assert words in message


@pytest.mark.parametrize("uri", ["pvc://data/eval/fraud.jsonl", "pvc://data", "s3://eval/x"])
def test_an_evaluation_set_in_a_claim_or_a_bucket_is_accepted(uri: str) -> None:
    step = parsed(rollout=with_evaluation_of(uri)).spec.rollout.steps[1].evaluate
    assert step is not None and step.data.uri == uri


# --- waits: at most a year


def canary(*steps: dict[str, Any], **rollout: Any) -> dict[str, Any]:
    return {"rollout": {"strategy": "Canary", "steps": list(steps), **rollout}}


EVALUATE = {"data": {"uri": "s3://eval/x"}, "gates": [{"measure": "agreement", "min": 0.9}]}
ANALYSIS = {
    "prometheus": {"address": "http://prometheus:9090"},
    "metrics": [{"check": "error-rate", "max": 0.01}],
}
REGISTRY = {"mlflow": {"trackingUri": "http://mlflow:5000"}}


def waiting(wait: str) -> list[tuple[dict[str, Any], str]]:
    """Every duration of a spec set to `wait`, with the field it is in."""
    return [
        (canary({"pause": {"duration": wait}}), "spec.rollout.steps.0.pause.duration"),
        (canary({"approval": {"timeout": wait}}), "spec.rollout.steps.0.approval.timeout"),
        (
            canary({"evaluate": {**EVALUATE, "timeout": wait}}),
            "spec.rollout.steps.0.evaluate.timeout",
        ),
        (
            canary({"evaluate": {**EVALUATE, "requestTimeout": wait}}),
            "spec.rollout.steps.0.evaluate.requestTimeout",
        ),
        (canary(analysis={**ANALYSIS, "interval": wait}), "spec.rollout.analysis.interval"),
        (canary(analysis={**ANALYSIS, "window": wait}), "spec.rollout.analysis.window"),
        (
            {"monitoring": {"podMonitor": {"interval": wait}}},
            "spec.monitoring.podMonitor.interval",
        ),
    ]


@pytest.mark.parametrize("wait", ["8761h", "525601m", "31536001s", "99999999999h", "9" * 60 + "s"])
def test_a_wait_longer_than_a_year_is_refused_naming_its_field(wait: str) -> None:
    for spec, field in waiting(wait):
        message = refusal(**spec)
        assert message.startswith(f"{field}: "), message
        assert "must be at most 8760h (a year)" in message, message


@pytest.mark.parametrize("wait", ["8760h", "525600m", "31536000s", "8759h59m59.5s", "250ms"])
def test_a_wait_of_up_to_a_year_is_accepted(wait: str) -> None:
    for spec, _ in waiting(wait):
        parsed(**spec)


def test_a_duration_longer_than_64_characters_is_refused() -> None:
    message = refusal(**canary({"pause": {"duration": "1s" * 33}}))
    assert message.startswith("spec.rollout.steps.0.pause.duration: ")


def test_a_registry_poll_longer_than_a_year_is_refused_naming_it() -> None:
    model = {"uri": "models:/fraud@champion", "format": "sklearn", "registry": REGISTRY}
    mlflow = {**REGISTRY["mlflow"], "pollInterval": "99999999999h"}
    with pytest.raises(ValidationError) as refused:
        ModelDeployment.from_body(
            {
                "metadata": {"name": "iris"},
                "spec": {"model": {**model, "registry": {"mlflow": mlflow}}},
            }
        )
    message = unreadable_message(refused.value)
    assert message.startswith("spec.model.registry.mlflow.pollInterval: "), message


@pytest.mark.parametrize("field", ["progressDeadlineSeconds", "scaleDownDelaySeconds"])
def test_seconds_beyond_a_year_are_refused_naming_the_field(field: str) -> None:
    message = refusal(rollout={field: 365 * 24 * 3600 + 1})
    assert message.startswith(f"spec.rollout.{field}: "), message
    assert "less than or equal to 31536000" in message
    assert parsed(rollout={field: 365 * 24 * 3600}).spec.rollout is not None


# --- the surge and unavailability budgets


@pytest.mark.parametrize("field", ["maxSurge", "maxUnavailable"])
@pytest.mark.parametrize("value", [-1, "-1", "-10%", "one", "25.5%", ""])
def test_a_negative_or_unreadable_budget_is_refused_naming_it(field: str, value: Any) -> None:
    message = refusal(rollout={"maxSurge": 1, "maxUnavailable": 1, field: value})
    assert message.startswith(f"spec.rollout.{field}: "), message
    assert "0 or more" in message, message


@pytest.mark.parametrize("value", [0, 3, "0", "2", "25%", "100%"])
def test_a_count_or_a_percentage_is_a_budget(value: Any) -> None:
    rollout = parsed(rollout={"maxSurge": value, "maxUnavailable": value}).spec.rollout
    assert (rollout.max_surge, rollout.max_unavailable) == (value, value)
