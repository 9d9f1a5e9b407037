"""Revisions pin what shaped their pods, so that an operator upgrade never rolls them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slipway.api import ModelDeployment, ModelDeploymentStatus, RevisionPins
from slipway.resources import (
    POD_SHAPE,
    PRESETS,
    desired_deployment,
    pins_for,
    pins_of_deployment,
    revision_of,
)
from slipway.resources import presets as presets_module
from slipway.resources.pins import POD_SHAPE_ANNOTATION, pin_revisions

DATA = Path(__file__).resolve().parent.parent / "data"
# Deployments built by Slipway 0.1.0 (commit ae75daf, before revisions were pinned) for a corpus
# of specs: what runs in clusters today.
LEGACY = json.loads((DATA / "legacy-deployments.json").read_text())
# Deployments of pod shape 2 built by commit 7add9b3 (before pins recorded the preset's image),
# with the pins it recorded, for a corpus of specs: what runs in clusters today.
SHAPE_2 = json.loads((DATA / "pod-shape-2-deployments.json").read_text())
OPERATOR_IMAGE = "ghcr.io/slipway-dev/slipway:0.1.0"
NEWER_OPERATOR_IMAGE = "ghcr.io/slipway-dev/slipway:0.2.0"
# what a later release's presets run, by server
NEWER_PRESET_IMAGES = {
    "MLServer": "docker.io/seldonio/mlserver:1.8.0",
    "Triton": "nvcr.io/nvidia/tritonserver:25.10-py3",
    "vLLM": "docker.io/vllm/vllm-openai:v0.11.0",
}


def bump_preset_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this operator a release that bumps every preset's image and changes nothing else."""
    for format, preset in PRESETS.items():
        newer = dataclasses.replace(preset, image=NEWER_PRESET_IMAGES[preset.server])
        monkeypatch.setitem(PRESETS, format, newer)
    monkeypatch.setattr(presets_module, "MLSERVER_IMAGE", NEWER_PRESET_IMAGES["MLServer"])
    monkeypatch.setattr(presets_module, "TRITON_IMAGE", NEWER_PRESET_IMAGES["Triton"])
    monkeypatch.setattr(presets_module, "VLLM_IMAGE", NEWER_PRESET_IMAGES["vLLM"])


@pytest.fixture
def newer_preset_images(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    bump_preset_images(monkeypatch)
    yield


def model_deployment(name: str, spec: dict[str, Any]) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {"metadata": {"name": name, "namespace": "ml", "uid": "u-1", "generation": 1}, "spec": spec}
    )


@pytest.mark.parametrize("case", sorted(LEGACY))
def test_a_revision_of_slipway_0_1_0_is_rebuilt_exactly_as_it_runs(case: str) -> None:
    legacy = LEGACY[case]
    md = model_deployment(case, legacy["spec"])
    pins = pins_of_deployment(legacy["deployment"])
    assert pins is not None and pins.pod_shape == 1
    rebuilt = desired_deployment(md, md.spec.serving(), legacy["revision"], "stable", 2, pins)
    assert rebuilt["spec"] == legacy["deployment"]["spec"]
    # only the object's own annotation is new: it does not reach the pods
    annotations = rebuilt["metadata"].pop("annotations")
    assert annotations == {POD_SHAPE_ANNOTATION: "1"}
    assert rebuilt["metadata"] == legacy["deployment"]["metadata"]


@pytest.mark.parametrize("case", sorted(LEGACY))
def test_an_operator_with_another_image_rebuilds_a_pinned_revision_unchanged(case: str) -> None:
    legacy = LEGACY[case]
    md = model_deployment(case, legacy["spec"])
    serving = md.spec.serving()
    first = pins_for(serving, md.name, OPERATOR_IMAGE)
    status = ModelDeploymentStatus.model_validate(
        {"stable": {"revision": legacy["revision"], "template": serving.wire()}}
    )
    status.stable.pinned = first  # type: ignore[union-attr]
    again = pin_revisions(status, md.name, {}, NEWER_OPERATOR_IMAGE)
    assert again.stable is not None and again.stable.pinned == first
    before = desired_deployment(md, serving, legacy["revision"], "stable", 2, first)
    after = desired_deployment(md, serving, legacy["revision"], "stable", 2, again.stable.pinned)
    assert before == after


@pytest.mark.parametrize("case", sorted(SHAPE_2))
def test_a_revision_of_pod_shape_2_is_rebuilt_exactly_as_it_runs(case: str) -> None:
    recorded = SHAPE_2[case]
    md = model_deployment(case, recorded["spec"])
    pins = RevisionPins.model_validate(recorded["pinned"])
    assert pins.pod_shape == 2
    rebuilt = desired_deployment(md, md.spec.serving(), recorded["revision"], "stable", 2, pins)
    assert rebuilt == recorded["deployment"]


@pytest.mark.parametrize("case", sorted(SHAPE_2))
@pytest.mark.usefixtures("newer_preset_images")
def test_a_release_with_newer_preset_images_rebuilds_a_pod_shape_2_revision_unchanged(
    case: str,
) -> None:
    recorded = SHAPE_2[case]
    md = model_deployment(case, recorded["spec"])
    pins = RevisionPins.model_validate(recorded["pinned"])
    rebuilt = desired_deployment(md, md.spec.serving(), recorded["revision"], "stable", 2, pins)
    assert rebuilt == recorded["deployment"]


@pytest.mark.parametrize(
    "image",
    [
        "",  # the preset's
        "docker.io/seldonio/mlserver:1.7.1",  # the preset's, written out (from the README)
        "docker.io/seldonio/mlserver:1.8.0",  # the image a later release makes the preset's
        "example.com/my-mlserver:2",  # another image
    ],
)
def test_a_new_revision_keeps_its_pods_through_a_release_with_newer_preset_images(
    image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    md = model_deployment("iris", {**LEGACY["sklearn-s3"]["spec"], "runtime": {"image": image}})
    serving = md.spec.serving()
    pins = pins_for(serving, md.name, OPERATOR_IMAGE)
    before = desired_deployment(md, serving, revision_of(serving), "stable", 2, pins)
    bump_preset_images(monkeypatch)
    after = desired_deployment(md, serving, revision_of(serving), "stable", 2, pins)
    assert after["spec"]["template"] == before["spec"]["template"]
    assert after == before


@pytest.mark.parametrize("image", ["", NEWER_PRESET_IMAGES["MLServer"]])
@pytest.mark.usefixtures("newer_preset_images")
def test_a_new_revision_of_the_presets_image_runs_as_the_presets_user(image: str) -> None:
    md = model_deployment("iris", {**LEGACY["sklearn-s3"]["spec"], "runtime": {"image": image}})
    serving = md.spec.serving()
    pins = pins_for(serving, md.name, OPERATOR_IMAGE)
    built = desired_deployment(md, serving, revision_of(serving), "stable", 2, pins)
    context = built["spec"]["template"]["spec"]["securityContext"]
    assert (context["runAsNonRoot"], context["runAsUser"]) == (True, 1000)


def test_a_new_revision_gets_this_operators_choices() -> None:
    md = model_deployment("iris", LEGACY["sklearn-s3"]["spec"])
    pins = pins_for(md.spec.serving(), md.name, NEWER_OPERATOR_IMAGE)
    assert pins == RevisionPins(
        server_image="docker.io/seldonio/mlserver:1.7.1",
        preset_image="docker.io/seldonio/mlserver:1.7.1",
        fetcher_image=NEWER_OPERATOR_IMAGE,
        pod_shape=POD_SHAPE,
    )


@pytest.mark.parametrize(
    ("case", "fetched"),
    [("onnx-pvc", False), ("lightgbm-oci", False), ("vllm-hf-gpu", True), ("custom-http", True)],
)
def test_only_a_downloaded_model_pins_a_fetcher_image(case: str, fetched: bool) -> None:
    md = model_deployment(case, LEGACY[case]["spec"])
    pins = pins_for(md.spec.serving(), md.name, OPERATOR_IMAGE)
    assert pins.fetcher_image == (OPERATOR_IMAGE if fetched else "")


def test_the_users_image_is_pinned_as_it_is() -> None:
    md = model_deployment("custom", LEGACY["custom-http"]["spec"])
    assert pins_for(md.spec.serving(), md.name, OPERATOR_IMAGE).server_image == (
        "registry.example.com/server:1"
    )


@pytest.mark.parametrize(
    ("case", "preset_image"),
    [
        ("lightgbm-oci", "docker.io/seldonio/mlserver:1.7.1"),  # beside the user's image
        ("onnx-pvc", "nvcr.io/nvidia/tritonserver:25.08-py3"),
        ("custom-http", None),  # no preset
    ],
)
def test_the_presets_image_of_the_day_is_pinned_beside_the_server_image(
    case: str, preset_image: str | None
) -> None:
    md = model_deployment(case, LEGACY[case]["spec"])
    assert pins_for(md.spec.serving(), md.name, OPERATOR_IMAGE).preset_image == preset_image


def test_pinning_keeps_recorded_pins_adopts_live_ones_and_pins_the_rest_anew() -> None:
    sklearn = model_deployment("iris", LEGACY["sklearn-s3"]["spec"]).spec.serving().wire()
    onnx = model_deployment("iris", LEGACY["onnx-pvc"]["spec"]).spec.serving().wire()
    recorded = RevisionPins(server_image="old/mlserver:1", fetcher_image="old/slipway:1")
    status = ModelDeploymentStatus.model_validate(
        {
            "stable": {"revision": "aaaaaaaaaa", "template": sklearn, "pinned": recorded.wire()},
            "canary": {"revision": "bbbbbbbbbb", "template": sklearn},
            "history": [
                {"revision": "aaaaaaaaaa", "template": sklearn, "pinned": recorded.wire()},
                {"revision": "cccccccccc", "template": onnx},
            ],
        }
    )
    live = {"bbbbbbbbbb": LEGACY["sklearn-s3"]["deployment"]}
    pinned = pin_revisions(status, "iris", live, NEWER_OPERATOR_IMAGE)
    assert pinned.stable is not None and pinned.stable.pinned == recorded
    assert pinned.canary is not None and pinned.canary.pinned == pins_of_deployment(
        LEGACY["sklearn-s3"]["deployment"]
    )
    assert pinned.history[0].pinned == recorded
    assert pinned.history[1].pinned == RevisionPins(
        server_image="nvcr.io/nvidia/tritonserver:25.08-py3",
        preset_image="nvcr.io/nvidia/tritonserver:25.08-py3",
        fetcher_image="",
        pod_shape=POD_SHAPE,
    )
    assert status.canary is not None and status.canary.pinned is None  # the input is not changed


def test_a_pod_shape_from_a_newer_operator_is_built_as_the_newest_this_one_knows() -> None:
    md = model_deployment("iris", LEGACY["sklearn-s3"]["spec"])
    serving = md.spec.serving()
    newest = pins_for(serving, md.name, OPERATOR_IMAGE)
    future = newest.model_copy(update={"pod_shape": POD_SHAPE + 1})
    built = desired_deployment(md, serving, "aaaaaaaaaa", "stable", 1, future)
    assert built == desired_deployment(md, serving, "aaaaaaaaaa", "stable", 1, newest)


def test_a_deployment_that_is_not_ours_gives_no_pins() -> None:
    assert pins_of_deployment({"spec": {"template": {"spec": {"containers": []}}}}) is None
