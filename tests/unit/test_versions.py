"""One version for everything a user installs: slipway.__version__ is the source; pyproject.toml
reads it, and the chart's version and appVersion must say the same (hack/dist.sh packages the
chart with it, and the chart's default image tag is its appVersion)."""

from __future__ import annotations

import re
import tomllib

import yaml

from slipway import DEFAULT_OPERATOR_IMAGE, __version__
from tests.conftest import ROOT

CHART = ROOT / "charts" / "slipway"


def test_the_python_package_takes_its_version_from_slipway_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())

    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "slipway.__version__"}


def test_the_chart_version_and_app_version_are_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())

    assert (chart["version"], chart["appVersion"]) == (__version__, __version__), (
        "charts/slipway/Chart.yaml drifted from operator/slipway/__init__.py: set version and "
        f"appVersion to {__version__}"
    )


def test_the_images_follow_the_version() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    assert values["image"]["tag"] == ""  # the chart's appVersion
    assert DEFAULT_OPERATOR_IMAGE.endswith(f":{__version__}")


def test_the_version_is_one_hack_dist_sh_can_read() -> None:
    init = (ROOT / "operator" / "slipway" / "__init__.py").read_text()

    assert re.search(rf'^__version__ = "{re.escape(__version__)}"$', init, re.MULTILINE)
    assert re.fullmatch(r"\d+\.\d+\.\d+([-.+][0-9A-Za-z.]+)?", __version__)  # SemVer, as Helm wants
