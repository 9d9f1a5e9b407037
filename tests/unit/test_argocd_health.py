"""The Argo CD health check of ModelDeployment, run in a real Lua 5.1 VM on each health_test case.

Argo CD runs health checks in gopher-lua (Lua 5.1 semantics); tests/argocd.py runs them in
gopher-lua's `glua` (built by hack/build-tools.sh) or, failing that, Debian's `lua5.1`, handing the
object over the way Argo CD does it: as the global `obj`, a Lua table made from the object's JSON.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.argocd import (
    ACTIONS,
    ACTIONS_DIR,
    ARGOCD,
    CHECK_DIR,
    DISCOVERY_LUA,
    HEALTH_LUA,
    run_health_check,
)

CASES = yaml.safe_load((CHECK_DIR / "health_test.yaml").read_text())["tests"]
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


@pytest.mark.parametrize("case", CASES, ids=[Path(case["inputPath"]).stem for case in CASES])
def test_health_check_maps_each_sample_status_like_health_test_yaml_says(
    case: dict[str, Any], tmp_path: Path
) -> None:
    obj = yaml.safe_load((CHECK_DIR / case["inputPath"]).read_text())

    status, message = run_health_check(obj, tmp_path)

    assert (status, message) == (case["healthStatus"]["status"], case["healthStatus"]["message"])


def test_every_sample_in_testdata_has_a_case() -> None:
    samples = {p.relative_to(CHECK_DIR).as_posix() for p in (CHECK_DIR / "testdata").glob("*")}

    assert samples == {case["inputPath"] for case in CASES}


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Ready", "Healthy"),
        ("Progressing", "Progressing"),
        ("Pending", "Progressing"),
        ("Paused", "Suspended"),
        ("Degraded", "Degraded"),
        ("RolledBack", "Degraded"),
        ("Failed", "Degraded"),
    ],
)
def test_every_phase_maps_to_an_argo_cd_health_status(
    phase: str, expected: str, tmp_path: Path
) -> None:
    obj = {
        "metadata": {"name": "m", "generation": 2},
        "status": {"phase": phase, "observedGeneration": 2},
    }

    status, message = run_health_check(obj, tmp_path)

    assert status == expected
    assert message != ""


def test_the_phases_of_the_api_are_exactly_the_ones_the_check_knows() -> None:
    from slipway.api.status import Phase

    known = {"Ready", "Progressing", "Pending", "Paused", "Degraded", "RolledBack", "Failed"}
    assert {phase.value for phase in Phase} == known


def test_a_status_without_observed_generation_waits_for_the_operator(tmp_path: Path) -> None:
    obj = {"metadata": {"name": "m", "generation": 1}, "status": {"phase": "Ready"}}

    assert run_health_check(obj, tmp_path) == (
        "Progressing",
        "Waiting for the operator to observe generation 1",
    )


def test_messages_survive_quotes_and_non_ascii_text(tmp_path: Path) -> None:
    message = 'model "fraud" → 404 from s3://bucket\\key'
    obj = {
        "metadata": {"name": "m", "generation": 1},
        "status": {
            "phase": "Failed",
            "observedGeneration": 1,
            "conditions": [
                {"type": "Degraded", "status": "True", "reason": "FetchFailed", "message": message}
            ],
        },
    }

    assert run_health_check(obj, tmp_path) == ("Degraded", f"FetchFailed: {message}")


def test_every_expected_status_is_one_argo_cd_knows() -> None:
    assert {case["healthStatus"]["status"] for case in CASES} <= ARGO_STATUSES


def test_argocd_cm_patch_is_rendered_from_the_health_check_and_the_actions() -> None:
    spec = importlib.util.spec_from_file_location("render", ARGOCD / "render_argocd_cm.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)

    committed = (ARGOCD / "argocd-cm.yaml").read_text()

    assert committed == render.render(CHECK_DIR), (
        "argocd-cm.yaml is stale: python integrations/argocd/render_argocd_cm.py "
        "> integrations/argocd/argocd-cm.yaml"
    )
    data = yaml.safe_load(committed)["data"]
    assert data[render.HEALTH_KEY] == HEALTH_LUA.read_text()
    actions = yaml.safe_load(data[render.ACTIONS_KEY])
    assert actions["discovery.lua"] == DISCOVERY_LUA.read_text()
    assert {d["name"]: d["action.lua"] for d in actions["definitions"]} == {
        name: (ACTIONS_DIR / name / "action.lua").read_text() for name in ACTIONS
    }
