"""The Argo CD health check of ModelDeployment, run in a real Lua 5.1 VM on each health_test case.

Argo CD runs health checks in gopher-lua (Lua 5.1 semantics), so the test runs them in gopher-lua's
`glua` (built by hack/build-tools.sh) or, failing that, Debian's `lua5.1`. The object is handed
over the way Argo CD does it: as the global `obj`, a Lua table made from the object's JSON.
"""

from __future__ import annotations

import glob
import importlib.util
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "integrations" / "argocd"
CHECK_DIR = ARGOCD / "serving.slipway.dev" / "ModelDeployment"
HEALTH_LUA = CHECK_DIR / "health.lua"
CASES = yaml.safe_load((CHECK_DIR / "health_test.yaml").read_text())["tests"]
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
SEPARATOR = "\n--slipway-health-message--\n"


def lua_interpreter() -> str:
    """gopher-lua's glua (what Argo CD embeds) first, then Debian's lua5.1."""
    cache = Path(os.environ.get("SLIPWAY_CACHE", Path.home() / ".cache" / "slipway"))
    candidates = [
        *sorted(glob.glob(str(cache / "bin" / "*" / "glua"))),
        str(ROOT / ".cluster" / "bin" / "glua"),
        shutil.which("glua"),
        shutil.which("lua5.1"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "no Lua 5.1 interpreter: build gopher-lua's glua with hack/build-tools.sh "
        f"(it lands in {cache}/bin/<key>/glua) or `apt-get install lua5.1`"
    )


def lua_string(text: str) -> str:
    """A Lua 5.1 string literal: quotes, backslashes and every non-printable byte escaped."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte}")
    return '"' + "".join(out) + '"'


def lua_value(value: Any) -> str:
    """A Lua table literal of a JSON-like value, as Argo CD's conversion builds it (null: nil)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"JSON has no {value}")
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_value(item) for item in value) + "}"
    if isinstance(value, dict):
        fields = (f"[{lua_string(str(k))}] = {lua_value(v)}" for k, v in value.items())
        return "{" + ", ".join(fields) + "}"
    raise TypeError(f"not JSON: {value!r}")


def run_health_check(obj: dict[str, Any], tmp_path: Path) -> tuple[str, str]:
    """Run health.lua with `obj` the way Argo CD does; return (status, message)."""
    harness = tmp_path / "harness.lua"
    harness.write_text(
        f"obj = {lua_value(obj)}\n"
        f"local check = assert(loadfile({lua_string(str(HEALTH_LUA))}))\n"
        "local hs = check()\n"
        "io.write(tostring(hs.status))\n"
        f"io.write({lua_string(SEPARATOR)})\n"
        'io.write(hs.message or "")\n'
    )
    proc = subprocess.run(
        [lua_interpreter(), str(harness)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, f"health.lua failed: {proc.stderr}{proc.stdout}"
    status, _, message = proc.stdout.partition(SEPARATOR)
    return status, message


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


def test_argocd_cm_snippet_is_rendered_from_health_lua() -> None:
    spec = importlib.util.spec_from_file_location("render", ARGOCD / "render_argocd_cm.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)

    committed = (ARGOCD / "argocd-cm.yaml").read_text()

    assert committed == render.render(HEALTH_LUA.read_text()), (
        "argocd-cm.yaml is stale: python integrations/argocd/render_argocd_cm.py "
        "> integrations/argocd/argocd-cm.yaml"
    )
    data = yaml.safe_load(committed)["data"]
    assert data[render.KEY] == HEALTH_LUA.read_text()
