"""Runtime presets, the user's overrides of them, and probes by protocol."""

from __future__ import annotations

from typing import Any

import pytest

from slipway.api import PRESET_FORMATS, Protocol, ServingSpec
from slipway.resources import PRESETS, probes_for, runtime_for
from slipway.resources.presets import MLSERVER_IMAGE, TRITON_IMAGE, VLLM_IMAGE, ServerRuntime


def runtime(format: str = "sklearn", model_name: str = "fraud", **runtime: Any) -> ServerRuntime:
    """The resolved server of a model of `format`, with `runtime` as spec.runtime."""
    serving = ServingSpec.model_validate(
        {
            "model": {"version": "2.1.0", "uri": "s3://models/m", "format": format},
            "runtime": runtime,
        }
    )
    return runtime_for(serving, model_name)


def env_of(server: ServerRuntime) -> dict[str, Any]:
    return {variable["name"]: variable.get("value") for variable in server.env}


def test_presets_cover_exactly_the_formats_the_api_declares() -> None:
    assert set(PRESETS) == set(PRESET_FORMATS)


@pytest.mark.parametrize(
    ("format", "server", "image", "protocol"),
    [
        ("sklearn", "MLServer", MLSERVER_IMAGE, Protocol.V2),
        ("xgboost", "MLServer", MLSERVER_IMAGE, Protocol.V2),
        ("lightgbm", "MLServer", MLSERVER_IMAGE, Protocol.V2),
        ("onnx", "Triton", TRITON_IMAGE, Protocol.V2),
        ("pytorch", "Triton", TRITON_IMAGE, Protocol.V2),
        ("tensorflow", "Triton", TRITON_IMAGE, Protocol.V2),
        ("tensorrt", "Triton", TRITON_IMAGE, Protocol.V2),
        ("huggingface", "vLLM", VLLM_IMAGE, Protocol.OPENAI),
    ],
)
def test_each_format_gets_its_server(
    format: str, server: str, image: str, protocol: Protocol
) -> None:
    preset = PRESETS[format]
    assert (preset.server, preset.image, preset.protocol) == (server, image, protocol)
    resolved = runtime(format)
    assert (resolved.image, resolved.protocol) == (image, protocol)


@pytest.mark.parametrize("format", PRESET_FORMATS)
def test_preset_images_are_pinned_to_a_version(format: str) -> None:
    name, _, tag = PRESETS[format].image.rpartition(":")
    assert "/" in name
    assert tag
    assert tag != "latest"


@pytest.mark.parametrize(
    ("format", "implementation"),
    [
        ("sklearn", "mlserver_sklearn.SKLearnModel"),
        ("xgboost", "mlserver_xgboost.XGBoostModel"),
        ("lightgbm", "mlserver_lightgbm.LightGBMModel"),
    ],
)
def test_mlserver_finds_the_model_through_its_environment(format: str, implementation: str) -> None:
    server = runtime(format, port=9000)
    assert {
        "MLSERVER_MODEL_URI": "/mnt/models",
        "MLSERVER_MODEL_NAME": "fraud",
        "MLSERVER_MODEL_VERSION": "2.1.0",
        "MLSERVER_MODEL_IMPLEMENTATION": implementation,
        "MLSERVER_HTTP_PORT": "9000",
    }.items() <= env_of(server).items()
    assert (server.command, server.args) == ([], [])


@pytest.mark.parametrize("format", ["onnx", "pytorch", "tensorflow", "tensorrt"])
def test_triton_reads_the_model_repository_and_listens_on_the_runtime_port(format: str) -> None:
    server = runtime(format, port=9000)
    assert server.command == ["tritonserver"]
    assert server.args == ["--model-repository=/mnt/models", "--http-port=9000"]
    assert server.port == 9000


def test_vllm_serves_the_model_directory_under_the_model_name() -> None:
    server = runtime("huggingface", model_name="llama", port=8000)
    assert server.args == [
        "--model",
        "/mnt/models",
        "--served-model-name",
        "llama",
        "--port",
        "8000",
    ]


def test_a_format_without_preset_runs_the_users_image_untouched() -> None:
    server = runtime("custom", image="example.com/my-server:1.0")
    assert server.image == "example.com/my-server:1.0"
    assert (server.command, server.args) == ([], [])
    assert server.protocol == Protocol.CUSTOM
    assert set(env_of(server)) == {
        "SLIPWAY_MODEL_DIR",
        "SLIPWAY_MODEL_NAME",
        "SLIPWAY_MODEL_VERSION",
    }


@pytest.mark.parametrize("format", [*PRESET_FORMATS, "custom"])
def test_every_server_gets_the_slipway_model_contract(format: str) -> None:
    env = env_of(runtime(format, image="example.com/server:1"))
    assert {
        "SLIPWAY_MODEL_DIR": "/mnt/models",
        "SLIPWAY_MODEL_NAME": "fraud",
        "SLIPWAY_MODEL_VERSION": "2.1.0",
    }.items() <= env.items()


def test_a_format_without_preset_and_without_image_names_the_missing_field() -> None:
    with pytest.raises(ValueError, match=r"spec\.runtime\.image is required.*'custom'"):
        runtime("custom")


def test_user_env_wins_by_name_and_comes_last() -> None:
    secret_ref = {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    server = runtime("sklearn", env=[{"name": "MLSERVER_HTTP_PORT", "value": "1234"}, secret_ref])
    names = [variable["name"] for variable in server.env]
    assert names.count("MLSERVER_HTTP_PORT") == 1
    assert server.env[-2:] == [{"name": "MLSERVER_HTTP_PORT", "value": "1234"}, secret_ref]


def test_user_args_and_command_replace_the_presets() -> None:
    server = runtime("onnx", command=["/bin/serve"], args=["--model-repository=/mnt/models/x"])
    assert server.command == ["/bin/serve"]
    assert server.args == ["--model-repository=/mnt/models/x"]


def test_a_user_image_replaces_only_the_preset_image() -> None:
    server = runtime("huggingface", image="docker.io/vllm/vllm-openai:v0.11.0")
    assert server.image == "docker.io/vllm/vllm-openai:v0.11.0"
    assert server.args[:2] == ["--model", "/mnt/models"]
    assert server.protocol == Protocol.OPENAI


def test_the_runtime_protocol_overrides_the_presets() -> None:
    assert runtime("sklearn", protocol="custom").protocol == Protocol.CUSTOM


@pytest.mark.parametrize(
    ("protocol", "ready", "live"),
    [
        (
            Protocol.V2,
            {"httpGet": {"path": "/v2/health/ready", "port": 8080}},
            {"httpGet": {"path": "/v2/health/live", "port": 8080}},
        ),
        (
            Protocol.OPENAI,
            {"httpGet": {"path": "/health", "port": 8080}},
            {"httpGet": {"path": "/health", "port": 8080}},
        ),
        (Protocol.CUSTOM, {"tcpSocket": {"port": 8080}}, {"tcpSocket": {"port": 8080}}),
    ],
)
def test_the_protocol_decides_the_probes(
    protocol: Protocol, ready: dict[str, Any], live: dict[str, Any]
) -> None:
    probes = probes_for(protocol, 8080)
    handlers = ("httpGet", "tcpSocket")
    assert {k: v for k, v in probes["readinessProbe"].items() if k in handlers} == ready
    assert {k: v for k, v in probes["livenessProbe"].items() if k in handlers} == live
    assert {k: v for k, v in probes["startupProbe"].items() if k in handlers} == live


@pytest.mark.parametrize("protocol", list(Protocol))
def test_a_slow_loading_model_is_not_killed_before_it_has_loaded(protocol: Protocol) -> None:
    startup = probes_for(protocol, 8080)["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60
