"""The comparison that decides whether a child is applied: desired manifest against live object."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from slipway.api import ModelDeployment
from slipway.kube import is_subset
from slipway.resources import desired_deployment, pins_for, revision_of


def test_fields_the_server_adds_do_not_count() -> None:
    desired = {"spec": {"replicas": 2}}
    live = {"spec": {"replicas": 2, "paused": False}, "status": {"replicas": 2}}
    assert is_subset(desired, live)


@pytest.mark.parametrize(
    ("desired", "live"),
    [
        ({"replicas": 2}, {"replicas": 3}),
        ({"replicas": 2}, {}),
        ({"paused": True}, {"paused": "True"}),  # a boolean is no text
        ({"args": ["a", "b"]}, {"args": ["a"]}),
        ({"args": ["a"]}, {"args": ["a", "b"]}),
    ],
)
def test_a_field_that_differs_or_is_missing_counts(desired: Any, live: Any) -> None:
    assert not is_subset(desired, live)


# (what Slipway writes, what the API server stores and returns)
CANONICAL_QUANTITIES = [
    ("0.5", "500m"),
    ("0.1", "100m"),
    ("2000m", "2"),
    (2, "2"),
    ("1.5Gi", "1536Mi"),
    ("1024Mi", "1Gi"),
    ("1000M", "1G"),
    ("1.5G", "1500M"),
    ("500m", "500m"),
]


@pytest.mark.parametrize(("written", "stored"), CANONICAL_QUANTITIES)
@pytest.mark.parametrize("kind", ["requests", "limits"])
def test_container_resources_compare_by_value(written: Any, stored: str, kind: str) -> None:
    desired = {"containers": [{"name": "server", "resources": {kind: {"cpu": written}}}]}
    live = {"containers": [{"name": "server", "resources": {kind: {"cpu": stored}}}]}
    assert is_subset(desired, live)


@pytest.mark.parametrize(("written", "stored"), CANONICAL_QUANTITIES)
def test_other_quantities_compare_by_value(written: Any, stored: str) -> None:
    # an emptyDir's size limit, an HPA's target, a claim's size, a pod's ephemeral storage
    assert is_subset({"emptyDir": {"sizeLimit": written}}, {"emptyDir": {"sizeLimit": stored}})
    assert is_subset(
        {"target": {"type": "AverageValue", "averageValue": written}},
        {"target": {"type": "AverageValue", "averageValue": stored}},
    )
    assert is_subset(
        {"target": {"type": "Value", "value": written}},
        {"target": {"type": "Value", "value": stored}},
    )
    assert is_subset(
        {"spec": {"resources": {"requests": {"storage": written}}}},
        {"spec": {"resources": {"requests": {"storage": stored}}}},
    )
    assert is_subset(
        {"resources": {"limits": {"ephemeral-storage": written}}},
        {"resources": {"limits": {"ephemeral-storage": stored}}},
    )


@pytest.mark.parametrize(
    ("written", "stored"),
    [("500m", "501m"), ("1Gi", "1G"), ("2", "2Ki"), ("1", "not-a-quantity")],
)
def test_different_quantities_still_differ(written: str, stored: str) -> None:
    assert not is_subset({"requests": {"memory": written}}, {"requests": {"memory": stored}})
    assert not is_subset({"sizeLimit": written}, {"sizeLimit": stored})


@pytest.mark.parametrize(
    ("desired", "live"),
    [
        ({"env": [{"name": "X", "value": "1"}]}, {"env": [{"name": "X", "value": "1.0"}]}),
        ({"env": [{"name": "CPU", "value": "0.5"}]}, {"env": [{"name": "CPU", "value": "500m"}]}),
        ({"annotations": {"limit": "1Gi"}}, {"annotations": {"limit": "1024Mi"}}),
        ({"args": ["--memory", "2000m"]}, {"args": ["--memory", "2"]}),
    ],
)
def test_text_that_only_looks_like_a_quantity_compares_as_text(desired: Any, live: Any) -> None:
    assert not is_subset(desired, live)


def canonical(quantity: str) -> str:
    """The form the API server stores the quantities of the test below in."""
    return {"0.5": "500m", "1.5Gi": "1536Mi", "2000m": "2", "1.5G": "1500M", "0.5Gi": "512Mi"}[
        quantity
    ]


def test_a_deployment_with_quantities_the_server_canonicalised_is_not_applied_again() -> None:
    md = ModelDeployment.model_validate(
        {
            "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 1},
            "spec": {
                "model": {
                    "format": "sklearn",
                    "uri": "s3://models/iris/1",
                    "version": "1",
                    "storage": {"sizeLimit": "0.5Gi"},
                },
                "runtime": {"env": [{"name": "RATIO", "value": "0.5"}]},
                "resources": {
                    "requests": {"cpu": "0.5", "memory": "1.5Gi", "ephemeral-storage": "1.5G"},
                    "limits": {"cpu": "2000m", "memory": "1.5Gi"},
                },
            },
        }
    )
    serving = md.spec.serving()
    pins = pins_for(serving, md.name, "ghcr.io/slipway-dev/slipway:0.2.0")
    desired = desired_deployment(md, serving, revision_of(serving), "stable", 2, pins)
    live = copy.deepcopy(desired)
    pod = live["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    for quantities in resources.values():
        quantities.update({name: canonical(q) for name, q in quantities.items()})
    model_volume = pod["volumes"][0]["emptyDir"]
    model_volume["sizeLimit"] = canonical(model_volume["sizeLimit"])
    live["status"] = {"replicas": 2}
    assert resources["requests"]["cpu"] == "500m"  # the live object is canonical
    assert is_subset(desired, live)
    # the user's "0.5" in an environment variable is text: "500m" there is a change
    pod["containers"][0]["env"][-1]["value"] = "500m"
    assert not is_subset(desired, live)
