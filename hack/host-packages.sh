#!/usr/bin/env bash
# The host packages the real node needs, from Debian's archive (the machine's own mirror):
# containerd and runc (the container runtime), the CNI plugins (bridge, host-local), iptables and
# nftables, conntrack (kube-proxy), debootstrap and buildah (images built here with no registry and no
# Docker engine), socat (the API server on the bridge address, for pods). Needs root, as the real
# node does; does nothing when everything is installed already.
set -euo pipefail
packages=(containerd runc containernetworking-plugins iptables nftables conntrack debootstrap buildah socat)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "[host-packages] missing ${missing[*]}; installing them needs root (or set SLIPWAY_REAL_NODE=0)" >&2
  exit 1
fi
echo "[host-packages] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts containerd as a service where an init system runs; the real node runs its own
# containerd with its own socket and state, so a packaged one (if any started) is left alone.
