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
