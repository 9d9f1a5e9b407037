"""Runtime presets: the model server for each model format, pinned, in one table.

A preset says which image serves a format, which protocol it speaks (and so which probes it
gets), and how it is told where the model is: MLServer by environment variables, Triton by its
model repository flag, vLLM by arguments. Templates in `command`, `args` and `env` are filled
with {model_dir}, {model_name}, {model_version} and {port}.

Every server, preset or not, also gets the documented contract for custom images:
SLIPWAY_MODEL_DIR, SLIPWAY_MODEL_NAME, SLIPWAY_MODEL_VERSION.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slipway.api import PRESET_FORMATS, Protocol, RevisionPins, ServingSpec
from slipway.api.spec import DEFAULT_SHUTDOWN_DELAY_SECONDS
from slipway.resources.storage import MODEL_DIR

MLSERVER_IMAGE = "docker.io/seldonio/mlserver:1.7.1"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.08-py3"
VLLM_IMAGE = "docker.io/vllm/vllm-openai:v0.10.1"
# The preset images, by server, of the releases whose pins did not record them (presetImage): a
# revision they pinned that names one in runtime.image runs as the preset's user. Never changes.
UNPINNED_PRESET_IMAGES = {
    "MLServer": "docker.io/seldonio/mlserver:1.7.1",
    "Triton": "nvcr.io/nvidia/tritonserver:25.08-py3",
    "vLLM": "docker.io/vllm/vllm-openai:v0.10.1",
}

# The documented contract for custom images: where the model is and what it is called.
SLIPWAY_MODEL_ENV = (
    ("SLIPWAY_MODEL_DIR", "{model_dir}"),
    ("SLIPWAY_MODEL_NAME", "{model_name}"),
    ("SLIPWAY_MODEL_VERSION", "{model_version}"),
)


# After SIGTERM, time for in-flight requests of a server without a preset's own figure.
DEFAULT_DRAIN_SECONDS = 25


@dataclass(frozen=True)
class RuntimePreset:
    """How one model server is run for one format."""

    server: str
    image: str
    protocol: Protocol
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    # seconds after SIGTERM the server needs to finish what it is answering (an LLM: minutes)
    drain_seconds: int = DEFAULT_DRAIN_SECONDS
    # the non-root uid the image runs as (None: the image runs as root, or it is not known)
    run_as_user: int | None = None
    # how often the startup probe asks whether the server is up (models load in seconds to minutes)
    startup_period_seconds: int = 1


def _mlserver(implementation: str) -> RuntimePreset:
    return RuntimePreset(
        server="MLServer",
        image=MLSERVER_IMAGE,
        protocol=Protocol.V2,
        run_as_user=1000,  # the published image's USER 1000
        # with no model-settings.json in the model directory, MLServer builds one from these
        env=(
            ("MLSERVER_MODEL_URI", "{model_dir}"),
            ("MLSERVER_MODEL_NAME", "{model_name}"),
            ("MLSERVER_MODEL_VERSION", "{model_version}"),
            ("MLSERVER_MODEL_IMPLEMENTATION", implementation),
            ("MLSERVER_HTTP_PORT", "{port}"),
        ),
    )


# The model URI must hold a Triton model repository: <model>/config.pbtxt, <model>/<version>/...
_TRITON = RuntimePreset(
    server="Triton",
    image=TRITON_IMAGE,
    protocol=Protocol.V2,
    command=("tritonserver",),
    args=("--model-repository={model_dir}", "--http-port={port}"),
    run_as_user=1000,  # triton-server, the non-root user of NGC's images
)

_VLLM = RuntimePreset(
    server="vLLM",
    image=VLLM_IMAGE,
    protocol=Protocol.OPENAI,
    args=("--model", "{model_dir}", "--served-model-name", "{model_name}", "--port", "{port}"),
    # a generation in flight finishes; weights load for minutes
    drain_seconds=115,
    startup_period_seconds=2,
    # the image runs as root: set spec.template security contexts for a restricted namespace
)

PRESETS: dict[str, RuntimePreset] = {
    "sklearn": _mlserver("mlserver_sklearn.SKLearnModel"),
    "xgboost": _mlserver("mlserver_xgboost.XGBoostModel"),
    "lightgbm": _mlserver("mlserver_lightgbm.LightGBMModel"),
    "onnx": _TRITON,
    "pytorch": _TRITON,
    "tensorflow": _TRITON,
    "tensorrt": _TRITON,
    "huggingface": _VLLM,
}


@dataclass(frozen=True)
class ServerRuntime:
    """The server container of a revision, with the preset and the user's overrides resolved."""

    image: str
    protocol: Protocol
    port: int
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: list[dict[str, Any]] = field(default_factory=list)
    shutdown_delay_seconds: int = DEFAULT_SHUTDOWN_DELAY_SECONDS
    drain_seconds: int = DEFAULT_DRAIN_SECONDS
    run_as_user: int | None = None
    startup_period_seconds: int = 1


def runtime_for(
    serving: ServingSpec, model_name: str, pins: RevisionPins | None = None
) -> ServerRuntime:
    """The server for `serving`: its format's preset, overridden by spec.runtime; `pins` are the
    revision's (None: a new revision's, this operator's choices).

    - image: runtime.image replaces only the preset's image (e.g. a newer vLLM); the preset's
      wiring stays. A format without a preset runs the user's image with nothing added.
    - command, args: the user's list, when non-empty, replaces the preset's whole list (a merge
      of positional arguments cannot be guessed right).
    - env: the user's variables win by name over the preset's and Slipway's; theirs come last,
      so they can refer to ours with $(NAME).
    - protocol: runtime.protocol, else the preset's, else custom.
    - shutdown delay: runtime.shutdownDelaySeconds, else the default; the time to drain and the
      startup probe's period come from the preset; the non-root uid only with the preset's own
      image as pinned (another image may run as another user).
    """
    runtime = serving.runtime
    preset = PRESETS.get(serving.model.format)
    if preset is None and not runtime.image:
        raise ValueError(
            f"spec.runtime.image is required: spec.model.format {serving.model.format!r} has "
            f"no preset (presets: {', '.join(PRESET_FORMATS)})"
        )
    values = {
        "model_dir": MODEL_DIR,
        "model_name": model_name,
        "model_version": serving.model.version,
        "port": str(runtime.port),
    }
    base_env = [*SLIPWAY_MODEL_ENV, *(preset.env if preset else ())]
    user_names = {variable.get("name") for variable in runtime.env}
    env = [
        {"name": name, "value": value.format(**values)}
        for name, value in base_env
        if name not in user_names
    ] + [dict(variable) for variable in runtime.env]
    return ServerRuntime(
        image=runtime.image or (preset.image if preset else ""),
        protocol=runtime.protocol or (preset.protocol if preset else Protocol.CUSTOM),
        port=runtime.port,
        command=list(runtime.command)
        or [part.format(**values) for part in (preset.command if preset else ())],
        args=list(runtime.args)
        or [part.format(**values) for part in (preset.args if preset else ())],
        env=env,
        shutdown_delay_seconds=(
            DEFAULT_SHUTDOWN_DELAY_SECONDS
            if runtime.shutdown_delay_seconds is None
            else runtime.shutdown_delay_seconds
        ),
        drain_seconds=preset.drain_seconds if preset else DEFAULT_DRAIN_SECONDS,
        run_as_user=(
            preset.run_as_user
            if preset and runtime.image in ("", pinned_preset_image(preset, pins))
            else None
        ),
        startup_period_seconds=preset.startup_period_seconds if preset else 1,
    )


def pinned_preset_image(preset: RuntimePreset, pins: RevisionPins | None) -> str:
    """The image `preset` ran when the revision pinned to `pins` was created: never this
    operator's for a revision that exists, so that a new preset image does not change its pods."""
    if pins is None:
        return preset.image
    return pins.preset_image or UNPINNED_PRESET_IMAGES.get(preset.server, "")


# Startup probes give a model this long to load (LLM weights are slow) before liveness may kill it.
MODEL_LOAD_SECONDS = 30 * 60


def probes_for(
    protocol: Protocol, port: int, *, startup_period: int = 10, readiness_period: int = 5
) -> dict[str, dict[str, Any]]:
    """startupProbe, readinessProbe and livenessProbe of a server speaking `protocol`.

    The startup probe gives a model up to 30 minutes to load before the liveness probe may
    restart it; readiness then decides whether it gets traffic. Short periods make a pod Ready
    within a second or two of its server (the defaults are the pods of pod shape 1).
    """
    return {
        "startupProbe": {
            **_health_check(protocol, port, "live"),
            "periodSeconds": startup_period,
            "timeoutSeconds": 5,
            "failureThreshold": -(-MODEL_LOAD_SECONDS // startup_period),
        },
        "readinessProbe": {
            **_health_check(protocol, port, "ready"),
            "periodSeconds": readiness_period,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        # a server busy with a long inference answers late; give it a minute before a restart
        "livenessProbe": {
            **_health_check(protocol, port, "live"),
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
    }


def _health_check(protocol: Protocol, port: int, check: str) -> dict[str, Any]:
    """The handler of a probe: `check` is live or ready."""
    if protocol == Protocol.V2:
        return {"httpGet": {"path": f"/v2/health/{check}", "port": port}}
    if protocol == Protocol.OPENAI:
        return {"httpGet": {"path": "/health", "port": port}}
    return {"tcpSocket": {"port": port}}
