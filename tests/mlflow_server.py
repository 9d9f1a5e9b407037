"""A real MLflow tracking server on loopback, for the registry tests (issue 14).

MLflow is far too heavy for the project's own environment (and the operator speaks its REST API
directly), so it lives in a virtualenv of its own under ~/.cache/slipway, created from PyPI by the
first run on a machine (`python -m tests.mlflow_server install` does it ahead of time), like moto's
in tests/fetch_servers.py. The server keeps its registry in SQLite in a directory of the test's;
model versions point at artifacts wherever the test put them (the loopback S3 server, s3://...).
It exits by itself after a bounded lifetime.

`MlflowClient` is the few REST calls a team makes when it registers a model and moves an alias,
sent with the standard library (what `mlflow.MlflowClient` would send).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fetch_servers import CACHE, stop_process, wait_for_http

MLFLOW_REQUIREMENT = "mlflow==3.17.2"
LIFETIME = 1800  # seconds: a server outliving its test run stops by itself


def mlflow_python() -> Path:
    """The Python of the cached virtualenv with MLflow (created once per machine)."""
    venv = CACHE / ("mlflow-" + MLFLOW_REQUIREMENT.split("==")[1])
    python = venv / "bin" / "python"
    if python.exists():
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=venv.name + ".", dir=CACHE))
    print(f"installing {MLFLOW_REQUIREMENT} into {venv} (once per machine)", file=sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, timeout=120)
        subprocess.run(
            [str(building / "bin" / "python"), "-m", "pip", "install", "-q", MLFLOW_REQUIREMENT],
            check=True,
            timeout=1800,
        )
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    try:
        building.rename(venv)
    except OSError:  # another run finished first
        shutil.rmtree(building, ignore_errors=True)
    return python


@dataclass
class MlflowServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)

    def pause(self) -> None:
        """The registry stops answering (its process is stopped, its port stays taken)."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)


def free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def mlflow_server(work: Path, host: str = "127.0.0.1") -> Iterator[MlflowServer]:
    """`mlflow server` with a SQLite registry under `work`, on `host`."""
    python = mlflow_python()
    port = free_port(host)
    log = work / "mlflow.log"
    out = log.open("wb")
    process = subprocess.Popen(
        [
            "timeout", str(LIFETIME), str(python), "-m", "mlflow", "server",
            "--host", host, "--port", str(port),
            "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
            "--default-artifact-root", str(work / "artifacts"),
            "--workers", "1",
        ],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ALLOWED_HOSTS": "*"},
    )  # fmt: skip
    url = f"http://{host}:{port}"
    try:
        wait_for_http(f"{url}/health", process, timeout=180)
    except RuntimeError:
        stop_process(process)
        out.close()
        raise AssertionError(log.read_text()[-3000:]) from None
    server = MlflowServer(url=url, process=process, log=log)
    try:
        yield server
    finally:
        server.resume()
        server.stop()
        out.close()


class MlflowClient:
    """Register models, create versions and move aliases through MLflow's REST API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path}: {error.code} {error.read()[:500]!r}") from None

    def create_model(self, name: str) -> None:
        self._call("POST", "registered-models/create", {"name": name})

    def create_version(self, name: str, source: str) -> str:
        found = self._call("POST", "model-versions/create", {"name": name, "source": source})
        return str(found["model_version"]["version"])

    def create_run_version(self, name: str, path: str) -> str:
        """A version of `name` logged the usual way: from a run's artifacts (wherever the server
        keeps them)."""
        run = self._call("POST", "runs/create", {"experiment_id": "0"})["run"]["info"]
        source = f"{run['artifact_uri']}/{path}"
        body = {"name": name, "source": source, "run_id": run["run_id"]}
        return str(self._call("POST", "model-versions/create", body)["model_version"]["version"])

    def set_alias(self, name: str, alias: str, version: str) -> None:
        body = {"name": name, "alias": alias, "version": version}
        self._call("POST", "registered-models/alias", body)

    def delete_alias(self, name: str, alias: str) -> None:
        self._call("DELETE", "registered-models/alias", {"name": name, "alias": alias})


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server on loopback for a test module (import it to use it)."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


if __name__ == "__main__":
    if sys.argv[1:] == ["install"]:
        print(mlflow_python())
    else:
        raise SystemExit("usage: python -m tests.mlflow_server install")
