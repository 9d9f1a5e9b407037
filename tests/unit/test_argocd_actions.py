"""The Argo CD resource actions of ModelDeployment, run in Argo CD's Lua 5.1 sandbox on the cases of
actions/action_test.yaml (real statuses from the operator), the way Argo CD's own test runs them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from slipway.rollout import Action
from tests.argocd import (
    ACTIONS,
    ACTIONS_DIR,
    create_merge_patch,
    discover_actions,
    lua_string,
    run_action,
    run_lua,
    run_sandboxed,
)

TESTS = yaml.safe_load((ACTIONS_DIR / "action_test.yaml").read_text())
DISCOVERY = TESTS["discoveryTests"]
ACTION_CASES = TESTS["actionTests"]
ANNOTATION = "serving.slipway.dev/action"


def load(path: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ACTIONS_DIR / path).read_text()))


@pytest.mark.parametrize("case", DISCOVERY, ids=[Path(c["inputPath"]).stem for c in DISCOVERY])
def test_discovery_offers_exactly_the_actions_that_apply_to_each_sample(
    case: dict[str, Any], tmp_path: Path
) -> None:
    discovered = discover_actions(load(case["inputPath"]), tmp_path)

    expected = {r["name"]: {k: v for k, v in r.items() if k != "name"} for r in case["result"]}
    assert discovered == expected


@pytest.mark.parametrize(
    "case", ACTION_CASES, ids=[f"{c['action']}-{Path(c['inputPath']).stem}" for c in ACTION_CASES]
)
def test_each_action_returns_the_object_with_its_annotation(
    case: dict[str, Any], tmp_path: Path
) -> None:
    live = load(case["inputPath"])

    returned = run_action(case["action"], live, tmp_path)

    assert returned == load(case["expectedOutputPath"])
    # what Argo CD patches into the live object: the annotation and nothing else
    assert create_merge_patch(live, returned) == {
        "metadata": {"annotations": {ANNOTATION: case["action"]}}
    }


def test_an_action_keeps_the_annotations_an_object_already_has(tmp_path: Path) -> None:
    live = load("testdata/waiting-for-promotion.yaml")
    live["metadata"]["annotations"] = {"team": "fraud", ANNOTATION: "pause"}

    returned = run_action("promote", copy.deepcopy(live), tmp_path)

    assert returned["metadata"]["annotations"] == {"team": "fraud", ANNOTATION: "promote"}


def test_the_actions_are_the_operators_actions_each_with_a_script_and_a_case() -> None:
    scripts = {p.parent.name for p in ACTIONS_DIR.glob("*/action.lua")}

    assert scripts == set(ACTIONS) == {a.value for a in Action}
    assert {c["action"] for c in ACTION_CASES} == set(ACTIONS)


def test_every_discovery_lists_every_action() -> None:
    for case in DISCOVERY:
        assert {r["name"] for r in case["result"]} == set(ACTIONS), case["inputPath"]


def test_every_sample_in_testdata_is_used_by_a_case() -> None:
    samples = {p.relative_to(ACTIONS_DIR).as_posix() for p in (ACTIONS_DIR / "testdata").glob("*")}
    used = {c["inputPath"] for c in DISCOVERY} | {
        path for c in ACTION_CASES for path in (c["inputPath"], c["expectedOutputPath"])
    }

    assert samples == used


def test_a_state_where_an_action_applies_exists_for_every_action() -> None:
    enabled = {r["name"] for case in DISCOVERY for r in case["result"] if not r["disabled"]}

    assert enabled == set(ACTIONS)


def test_the_sandbox_lacks_the_string_library_as_argo_cd_does(tmp_path: Path) -> None:
    """The harness must refuse what Argo CD refuses, or the tests above prove nothing."""
    script = tmp_path / "uses-string.lua"
    script.write_text('obj.metadata.name = string.upper("x")\nreturn obj\n')
    with pytest.raises(AssertionError, match="string"):
        run_sandboxed(script, {"metadata": {"name": "m"}}, tmp_path)
    # and the harness itself runs: the same script outside the sandbox works
    assert "X" in run_lua(
        f"obj = {{metadata = {{}}}}\ndofile({lua_string(str(script))})\n"
        "io.write(obj.metadata.name)\n",
        tmp_path,
    )
