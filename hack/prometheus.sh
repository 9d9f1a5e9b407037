#!/usr/bin/env bash
# Prints the path of a Prometheus binary for the analysis tests: Debian's `prometheus` package,
# unpacked into the cache (not installed: no service is started, no root files change).
set -euo pipefail
cache=${SLIPWAY_CACHE:-$HOME/.cache/slipway}
version=${PROMETHEUS_DEB_VERSION:-2.42.0+ds-5+deb12u1}
dest="$cache/prometheus-$version"
bin="$dest/usr/bin/prometheus"
if [ ! -x "$bin" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (
    cd "$tmp"
    if ! apt-get download "prometheus=$version" >/dev/null 2>&1; then
      apt-get update -qq >/dev/null 2>&1 || true
      apt-get download "prometheus=$version" >/dev/null
    fi
    mkdir -p "$dest"
    dpkg-deb -x prometheus_*.deb "$dest"
  )
fi
echo "$bin"
