"""Argo CD's Lua customizations of ModelDeployment, run the way Argo CD runs them.

Argo CD embeds gopher-lua (Lua 5.1). The tests run the scripts in gopher-lua's `glua` (built by
hack/build-tools.sh) or, failing that, Debian's `lua5.1`. The object is handed over as Argo CD does
it: the global `obj`, a Lua table made from the object's JSON. Actions and their discovery run in
Argo CD's sandbox (util/lua/lua.go: the base, table and package libraries and a safe `os` with
`time` and `date`; no `string`, `io` or `debug`), and what they return comes back as Argo CD's
gopher-json encodes it (an empty table is `[]`), cleaned the way Argo CD cleans it before it
patches the live object.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARGOCD = ROOT / "integrations" / "argocd"
CHECK_DIR = ARGOCD / "resource_customizations" / "serving.slipway.dev" / "ModelDeployment"
HEALTH_LUA = CHECK_DIR / "health.lua"
ACTIONS_DIR = CHECK_DIR / "actions"
DISCOVERY_LUA = ACTIONS_DIR / "discovery.lua"
ACTIONS = ("promote", "promote-full", "abort", "retry", "pause", "resume")
SEPARATOR = "\n--slipway-lua-separator--\n"


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


def run_lua(harness: str, tmp_path: Path) -> str:
    path = tmp_path / "harness.lua"
    path.write_text(harness)
    proc = subprocess.run(
        [lua_interpreter(), str(path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, f"Lua failed: {proc.stderr}{proc.stdout}"
    return proc.stdout


def run_health_check(obj: Mapping[str, Any], tmp_path: Path) -> tuple[str, str]:
    """Run health.lua with `obj` the way Argo CD does; return (status, message)."""
    out = run_lua(
        f"obj = {lua_value(obj)}\n"
        f"local check = assert(loadfile({lua_string(str(HEALTH_LUA))}))\n"
        "local hs = check()\n"
        "io.write(tostring(hs.status))\n"
        f"io.write({lua_string(SEPARATOR)})\n"
        'io.write(hs.message or "")\n',
        tmp_path,
    )
    status, _, message = out.partition(SEPARATOR)
    return status, message


# Encodes a Lua value as gopher-json (layeh.com/gopher-json) does: a table whose keys are 1..n is
# an array, an empty table is [], any other table an object with string keys.
_JSON_ENCODER = r"""
local function quote(s)
  local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
  return '"' .. string.gsub(s, '[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

local encode
encode = function(v)
  local t = type(v)
  if t == "nil" then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v == math.floor(v) and math.abs(v) < 2^53 then return string.format("%.0f", v) end
    return string.format("%.17g", v)
  end
  if t == "string" then return quote(v) end
  if t ~= "table" then error("cannot encode a " .. t) end
  local count = 0
  for _ in pairs(v) do count = count + 1 end
  local isArray = true
  for i = 1, count do
    if v[i] == nil then isArray = false end
  end
  local parts = {}
  if isArray then
    for i = 1, count do parts[i] = encode(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  for k, item in pairs(v) do
    table.insert(parts, quote(tostring(k)) .. ":" .. encode(item))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end
"""

# Argo CD's sandbox for actions and discovery: what runLuaWithResourceActionParameters opens.
_SANDBOX = r"""
local function sandbox(extra)
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
    print = print, rawequal = rawequal, rawget = rawget, rawset = rawset, select = select,
    setmetatable = setmetatable, getmetatable = getmetatable, tonumber = tonumber,
    tostring = tostring, type = type, unpack = unpack, xpcall = xpcall,
    table = table, os = { time = os.time, date = os.date },
  }
  for k, v in pairs(extra) do env[k] = v end
  env._G = env
  return env
end
"""


def run_sandboxed(script: Path, obj: Mapping[str, Any], tmp_path: Path) -> Any:
    out = run_lua(
        _JSON_ENCODER
        + _SANDBOX
        + f"local chunk = assert(loadfile({lua_string(str(script))}))\n"
        + f"setfenv(chunk, sandbox({{ obj = {lua_value(obj)}, actionParams = {{}} }}))\n"
        + "io.write(encode(chunk()))\n",
        tmp_path,
    )
    return json.loads(out)


def discover_actions(obj: Mapping[str, Any], tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Run discovery.lua on `obj`: {action: {"disabled": bool, "displayName": ...}}."""
    result = run_sandboxed(DISCOVERY_LUA, obj, tmp_path)
    assert isinstance(result, dict), f"discovery.lua returned {result!r}"
    return {name: dict(action) for name, action in result.items()}


def enabled_actions(obj: Mapping[str, Any], tmp_path: Path) -> set[str]:
    return {name for name, a in discover_actions(obj, tmp_path).items() if not a.get("disabled")}


def run_action(action: str, obj: Mapping[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Run actions/<action>/action.lua on `obj`; return the object as Argo CD would patch it in."""
    returned = run_sandboxed(ACTIONS_DIR / action / "action.lua", obj, tmp_path)
    assert isinstance(returned, dict), f"{action}/action.lua returned {returned!r}"
    return clean_returned_obj(returned, obj)


def clean_returned_obj(new: dict[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """Argo CD's cleanReturnedObj: an empty object that came back as [] is an object again."""
    for key, before in old.items():
        if key not in new:
            continue
        after = new[key]
        if isinstance(after, dict) and isinstance(before, Mapping):
            new[key] = clean_returned_obj(after, before)
        elif isinstance(after, list):
            if isinstance(before, Mapping) and not after:
                new[key] = {}
            elif isinstance(before, list):
                new[key] = _clean_returned_list(after, before)
    return new


def _clean_returned_list(new: list[Any], old: list[Any]) -> list[Any]:
    for i, (after, before) in enumerate(zip(new, old, strict=False)):
        if isinstance(after, dict) and isinstance(before, Mapping):
            new[i] = clean_returned_obj(after, before)
        elif isinstance(after, list) and isinstance(before, list):
            new[i] = _clean_returned_list(after, before)
    return new


def create_merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch from `old` to `new`, as Argo CD computes it before patching
    (evanphx/json-patch CreateMergePatch): objects recursively, anything else replaced whole."""
    if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
        return new
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = create_merge_patch(old[key], value)
    for key in old:
        if key not in new:
            patch[key] = None
    return patch
