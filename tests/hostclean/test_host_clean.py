"""`make cluster-down` leaves the host as it found it (issue 11, section 1).

The real node changes the host: a bridge, routes, sysctls, iptables and nftables rules, cgroups,
mounts, network namespaces, processes. `hack/realnode.sh up` records the host before the first
change (hack/hoststate.py) and `down` undoes everything, then compares. This test runs the
cluster's `down` and fails on anything left behind. It stops the cluster, so it runs only when
asked to (SLIPWAY_HOSTCLEAN=1, which `make test` sets for its last step).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT


def test_cluster_down_leaves_the_host_as_it_found_it() -> None:
    if os.environ.get("SLIPWAY_HOSTCLEAN") != "1":
        pytest.skip(
            "stops the local cluster: runs as the last step of `make test` (SLIPWAY_HOSTCLEAN=1)"
        )
    cluster_dir = os.environ.get("SLIPWAY_CLUSTER_DIR", str(ROOT / ".cluster"))
    owner_file = "/run/slipway-realnode/owner"
    # the machine's real node may belong to another cluster (then this one has none to undo)
    owner = Path(owner_file).read_text().strip() if os.path.exists(owner_file) else ""
    had_real_node = os.path.realpath(owner) == os.path.realpath(cluster_dir) if owner else False
    proc = subprocess.run(
        ["bash", str(ROOT / "hack" / "cluster.sh"), "down"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    if had_real_node:
        assert "the host is as it was" in proc.stderr, proc.stderr
    # every process of the cluster and its node names the cluster's directory in its arguments
    leftover = subprocess.run(["pgrep", "-fa", cluster_dir], capture_output=True, text=True)
    assert not leftover.stdout.strip(), leftover.stdout
    if had_real_node:
        assert not os.path.exists("/run/slipway-realnode")
