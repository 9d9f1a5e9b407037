"""The revision: a hash of everything that shapes a serving pod, and of nothing else."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from slipway.api import ModelDeploymentSpec
from slipway.resources import revision_of

BASE_SPEC: dict[str, Any] = {
    "model": {"version": "2.1.0", "uri": "s3://models/fraud/2.1.0", "format": "sklearn"},
}


def revision_for(changes: dict[str, Any] | None = None) -> str:
    """The revision of BASE_SPEC with `changes` merged in (one level deep per section)."""
    spec = copy.deepcopy(BASE_SPEC)
    for section, value in (changes or {}).items():
        if isinstance(value, dict) and isinstance(spec.get(section), dict):
            spec[section] = {**spec[section], **value}
        else:
            spec[section] = value
    return revision_of(ModelDeploymentSpec.model_validate(spec).serving())


def test_revision_is_ten_lowercase_hex_characters() -> None:
    assert re.fullmatch(r"[0-9a-f]{10}", revision_for())


def test_revision_is_the_same_in_every_process() -> None:
    # a pinned value: a change here would start a rollout of every ModelDeployment on upgrade
    assert revision_for() == "69f1e527ea"


def test_revision_does_not_depend_on_key_order() -> None:
    reordered = {
        "model": {"format": "sklearn", "uri": "s3://models/fraud/2.1.0", "version": "2.1.0"}
    }
    assert revision_of(ModelDeploymentSpec.model_validate(reordered).serving()) == revision_for()


def test_defaults_written_out_by_the_api_server_keep_the_revision() -> None:
    defaulted = {"runtime": {"port": 8080, "args": [], "env": []}, "resources": {}, "template": {}}
    assert revision_for(defaulted) == revision_for()


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"model": {"version": "2.2.0"}}, id="model version"),
        pytest.param({"model": {"uri": "s3://models/fraud/2.2.0"}}, id="model uri"),
        pytest.param({"model": {"format": "xgboost"}}, id="model format"),
        pytest.param({"model": {"name": "fraud-detector"}}, id="model name"),
        pytest.param({"model": {"storage": {"secretName": "s3"}}}, id="model storage"),
        pytest.param({"runtime": {"image": "example.com/server:1"}}, id="runtime image"),
        pytest.param({"runtime": {"port": 9000}}, id="runtime port"),
        pytest.param({"runtime": {"args": ["--workers=2"]}}, id="runtime args"),
        pytest.param({"runtime": {"env": [{"name": "A", "value": "1"}]}}, id="runtime env"),
        pytest.param({"runtime": {"protocol": "custom"}}, id="runtime protocol"),
        pytest.param({"resources": {"limits": {"nvidia.com/gpu": 1}}}, id="gpu limit"),
        pytest.param({"resources": {"requests": {"cpu": "500m"}}}, id="cpu request"),
        pytest.param({"template": {"labels": {"team": "risk"}}}, id="pod labels"),
        pytest.param({"template": {"annotations": {"a": "b"}}}, id="pod annotations"),
        pytest.param({"template": {"nodeSelector": {"gpu": "a100"}}}, id="node selector"),
        pytest.param({"template": {"serviceAccountName": "reader"}}, id="service account"),
    ],
)
def test_revision_changes_with_what_shapes_a_pod(changes: dict[str, Any]) -> None:
    assert revision_for(changes) != revision_for()


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"replicas": 7}, id="replicas"),
        pytest.param({"autoscaling": {"minReplicas": 2, "maxReplicas": 9}}, id="autoscaling"),
        pytest.param(
            {"rollout": {"strategy": "Canary", "steps": [{"setWeight": 10}]}}, id="rollout"
        ),
        pytest.param({"revisionHistoryLimit": 10}, id="revision history limit"),
    ],
)
def test_revision_ignores_scale_and_rollout_settings(changes: dict[str, Any]) -> None:
    assert revision_for(changes) == revision_for()
