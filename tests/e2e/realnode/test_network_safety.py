"""No pod, Service or KWOK address ever routes out of the machine (REAL-NODE.md, network rules)."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT
from tests.e2e.realnode.conftest import RealDriver, iris

# addresses of this node's pods, of pods elsewhere, of Services and of KWOK's simulated pods
SAMPLES = ("10.244.0.20", "10.244.3.7", "10.244.255.254", "10.96.0.1", "10.96.77.7", "10.0.0.5")


def uplink() -> str:
    out = subprocess.run(["ip", "route", "show", "default"], capture_output=True, text=True).stdout
    words = out.split()
    return words[words.index("dev") + 1] if "dev" in words else ""


def test_no_pod_service_or_kwok_address_leaves_by_the_uplink(real_node: str) -> None:
    device = uplink()
    for address in SAMPLES:
        route = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)
        assert f"dev {device}" not in route.stdout, (address, route.stdout)


def test_setup_refuses_to_start_when_a_pod_address_would_leave(real_node: str) -> None:
    """A route that would send pod addresses out by the uplink (added here for a moment; no
    packet is sent) makes the real node's route check fail, naming the address."""
    gateway = subprocess.run(["ip", "route", "show", "default"], capture_output=True, text=True)
    via = gateway.stdout.split()[2]
    subprocess.run(["ip", "route", "add", "10.244.1.0/24", "via", via, "dev", uplink()], check=True)
    try:
        check = subprocess.run(
            ["bash", str(ROOT / "hack" / "realnode.sh"), "check-routes"],
            capture_output=True,
            text=True,
        )
    finally:
        subprocess.run(["ip", "route", "del", "10.244.1.0/24"], check=True)
    assert check.returncode != 0
    assert "10.244.1.1 would leave the machine" in check.stderr


def test_a_pod_has_no_route_but_its_bridge_and_the_services(rk: RealDriver) -> None:
    rk.apply(iris("1.0.0", replicas=1))
    rk.wait_phase("iris", "Ready", timeout=240)
    [pod] = rk.pods_ready_on_node("iris")
    routes = rk.cluster.kubectl(
        "exec", pod["metadata"]["name"], "-n", rk.ns, "-c", "server", "--", "cat", "/proc/net/route"
    ).stdout.splitlines()[1:]
    # /proc/net/route: destinations and masks in little-endian hex
    destinations = {(line.split()[1], line.split()[7]) for line in routes if line.strip()}
    assert destinations == {("0000F40A", "00FFFFFF"), ("0000600A", "0000FFFF")}, routes
