"""docs/api.md is generated from the models, like the CRD, and must not go stale."""

from __future__ import annotations

from pathlib import Path

from slipway.apidocs import api_reference

ROOT = Path(__file__).resolve().parents[2]


def test_committed_field_reference_matches_the_models() -> None:
    committed = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert committed == api_reference(), "docs/api.md is stale: run make crds"


def test_field_reference_lists_every_rollout_field_with_its_default() -> None:
    text = api_reference()
    for row in (
        '| `spec.rollout.strategy` | `Canary` \\| `Rolling` | `"Rolling"` |',
        "| `spec.rollout.progressDeadlineSeconds` | integer | `600` |",
        "| `spec.rollout.steps[].setWeight` | integer |",
        "| `spec.rollout.analysis.metrics[].query` | string |",
    ):
        assert row in text, row
    assert "setWeight must not decrease" in text
