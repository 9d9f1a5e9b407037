#!/usr/bin/env python3
"""What the real node may change on the host, as JSON: to compare before `up` and after `down`.

    hack/hoststate.py                  print the host's state now
    hack/hoststate.py diff BEFORE.json print what differs from BEFORE (nothing: exit 0)

Covers what a kubelet, kube-proxy, containerd, runc and the CNI bridge touch: links, addresses,
routes, iptables and nftables rules, the sysctls they set, mounts, network namespaces, cgroups,
/var/log/containers links, and processes of those programs. Plain Python 3 (no venv): it runs
before the project's virtualenv exists.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

SYSCTLS = (
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv4.conf.all.send_redirects",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
)
PROGRAMS = ("containerd", "containerd-shim", "kubelet", "kube-proxy", "runc", "socat", "pause")


def run(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def sysctl(name: str) -> str:
    path = Path("/proc/sys") / name.replace(".", "/")
    try:
        return path.read_text().strip()
    except OSError:
        return "absent"


def rules(command: str) -> list[str]:
    """iptables-save without counters and comments of the dump itself."""
    lines = []
    for line in run(command).splitlines():
        if line.startswith("#"):
            continue
        lines.append(re.sub(r"\[\d+:\d+\]", "", line).rstrip())
    return lines


def nft_ruleset() -> list[str]:
    # handles and counters change with every rule written; the rules themselves do not
    text = run("nft", "list", "ruleset")
    return [
        re.sub(r"counter packets \d+ bytes \d+ ", "", line.rstrip()) for line in text.splitlines()
    ]


def mounts() -> list[str]:
    result = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            result.append(f"{parts[1]} {parts[2]}")
    return sorted(result)


def cgroups() -> list[str]:
    found = []
    root = Path("/sys/fs/cgroup")
    for hierarchy in sorted(root.iterdir()) if root.is_dir() else ():
        for name in ("kubepods", "kubepods.slice", "k8s.io", "system.slice"):
            if (hierarchy / name).exists():
                found.append(f"{hierarchy.name}/{name}")
    return found


def processes() -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            comm = (proc / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith(PROGRAMS):
            found.append(comm)
    return sorted(found)


def links() -> list[str]:
    names = (line.split(":")[1].strip() for line in run("ip", "-o", "link", "show").splitlines())
    return sorted(name.split("@")[0] for name in names)


def container_logs() -> list[str]:
    directory = Path("/var/log/containers")
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def state() -> dict[str, Any]:
    return {
        "links": links(),
        "addresses": sorted(run("ip", "-o", "addr", "show").splitlines()),
        "routes": sorted(run("ip", "route", "show", "table", "all").splitlines()),
        "iptables": rules("iptables-save"),
        "ip6tables": rules("ip6tables-save"),
        "nftables": nft_ruleset(),
        "sysctls": {name: sysctl(name) for name in SYSCTLS},
        "mounts": mounts(),
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else ["absent"],
        "cgroups": cgroups(),
        "processes": processes(),
        "container_logs": container_logs(),
        "run_containerd": os.path.exists("/run/containerd"),
    }


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list):
            gone = [x for x in old if x not in new]
            added = [x for x in new if x not in old]
            out += [f"{key}: left behind: {x}" for x in added]
            out += [f"{key}: missing now: {x}" for x in gone]
            if not gone and not added:
                out.append(f"{key}: order or count changed")
        else:
            out.append(f"{key}: was {old!r}, is {new!r}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "diff":
        before = json.loads(Path(argv[1]).read_text())
        problems = diff(before, state())
        print("\n".join(problems))
        return 1 if problems else 0
    json.dump(state(), sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
