"""`make dist` (hack/dist.sh) and installing from what it makes: the wheel into a fresh virtualenv,
the chart from its repository index served over HTTP on loopback, with `helm install` against the
local cluster."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from slipway import __version__
from tests.conftest import ROOT, Cluster, wait_until
from tests.e2e.conftest import free_port
from tests.integration.test_chart import helm, installed  # noqa: F401  (fixture)

WHEEL = f"slipway-{__version__}-py3-none-any.whl"
SDIST = f"slipway-{__version__}.tar.gz"
CHART = f"slipway-{__version__}.tgz"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        ["bash", str(ROOT / "hack" / "dist.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_dist_holds_the_wheel_the_sdist_the_chart_its_index_and_checksums(dist: Path) -> None:
    names = {p.name for p in dist.iterdir()}
    assert names == {
        WHEEL,
        SDIST,
        CHART,
        "index.yaml",
        f"slipway-dashboard-{__version__}.json",
        "SHA256SUMS",
    }
    sums = dict(
        reversed(line.split("  ", 1)) for line in (dist / "SHA256SUMS").read_text().splitlines()
    )
    assert set(sums) == names - {"SHA256SUMS"}
    for name, digest in sums.items():
        assert hashlib.sha256((dist / name).read_bytes()).hexdigest() == digest, name

    [entry] = yaml.safe_load((dist / "index.yaml").read_text())["entries"]["slipway"]
    assert (entry["version"], entry["appVersion"], entry["urls"]) == (
        __version__,
        __version__,
        [CHART],
    )
    with zipfile.ZipFile(dist / WHEEL) as wheel:
        metadata = wheel.read(f"slipway-{__version__}.dist-info/METADATA").decode()
        assert f"Version: {__version__}\n" in metadata
        assert "slipway/py.typed" in wheel.namelist()


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed (its dependencies pinned by constraints.txt)."""
    path = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    proc = subprocess.run(
        [
            str(path / "bin" / "pip"),
            "install",
            "--quiet",
            "-c",
            str(ROOT / "constraints.txt"),
            str(dist / WHEEL),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    return path


def test_the_wheel_installs_slipway_and_the_kubectl_plugin(venv: Path) -> None:
    version = subprocess.run(
        [str(venv / "bin" / "slipway"), "--version"], capture_output=True, text=True, timeout=60
    )
    plugin = subprocess.run(
        [str(venv / "bin" / "kubectl-slipway"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import slipway; print(slipway.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=venv,
    )

    assert (version.returncode, version.stdout.strip()) == (0, f"slipway {__version__}")
    assert plugin.returncode == 0, plugin.stderr
    for command in ("status", "promote", "abort", "retry", "pause", "resume", "undo", "history"):
        assert command in plugin.stdout
    assert where.stdout.startswith(str(venv)), where.stdout  # the wheel's copy, not the source


@pytest.fixture
def chart_repository(dist: Path) -> Iterator[str]:
    """dist/ served over HTTP on loopback, as a chart repository is."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=dist,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("the chart repository", lambda: _answers(f"{url}/index.yaml"), timeout=30)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_the_packaged_chart_installs_from_the_repository_index(
    cluster: Cluster,
    crds: None,
    namespace: str,
    chart_repository: str,
    installed: list[tuple[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    helm_home = [
        *("--repository-config", str(tmp_path / "repositories.yaml")),
        *("--repository-cache", str(tmp_path / "cache")),
    ]
    repo = f"slipway-{uuid.uuid4().hex[:6]}"
    helm(cluster, "repo", "add", repo, chart_repository, *helm_home)
    found = helm(cluster, "search", "repo", repo, "--output", "yaml", *helm_home).stdout
    assert yaml.safe_load(found) == [
        {
            "name": f"{repo}/slipway",
            "version": __version__,
            "app_version": __version__,
            "description": yaml.safe_load((ROOT / "charts/slipway/Chart.yaml").read_text())[
                "description"
            ],
        }
    ]

    release = f"dist-{uuid.uuid4().hex[:6]}"
    installed.append((release, namespace))
    helm(
        cluster,
        "install",
        release,
        f"{repo}/slipway",
        "--version",
        __version__,
        "-n",
        namespace,
        *helm_home,
    )

    listed = yaml.safe_load(helm(cluster, "list", "-n", namespace, "-o", "yaml").stdout)
    assert [(r["name"], r["chart"], r["app_version"], r["status"]) for r in listed] == [
        (release, f"slipway-{__version__}", __version__, "deployed")
    ]
    fullname = f"{release}-slipway"
    deployment = yaml.safe_load(
        cluster.kubectl("get", "deployment", fullname, "-n", namespace, "-o", "yaml").stdout
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/slipway-dev/slipway:{__version__}"
    cluster.kubectl("get", "serviceaccount", fullname, "-n", namespace)
    cluster.kubectl("get", "service", f"{fullname}-metrics", "-n", namespace)
    cluster.kubectl("get", "clusterrole", fullname)
