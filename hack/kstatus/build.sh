#!/usr/bin/env bash
# Builds hack/kstatus (kstatus's status.Compute, from sigs.k8s.io/cli-utils) into the tool cache,
# keyed by the cli-utils version and the program's own source, once per machine, as
# hack/build-tools.sh builds the other tools. Prints the binary's path on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${SLIPWAY_CACHE:-$HOME/.cache/slipway}
version=$(awk '$1 == "sigs.k8s.io/cli-utils" {print $2} $2 == "sigs.k8s.io/cli-utils" {print $3}' "$here/go.mod" | head -1)
source_hash=$(cat "$here/main.go" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-8)
bin="$cache/bin/kstatus-cli-utils-${version}-${source_hash}/kstatus"
if [ ! -x "$bin" ]; then
  echo "[kstatus] building kstatus (sigs.k8s.io/cli-utils $version)" >&2
  mkdir -p "$(dirname "$bin")"
  (cd "$here" && CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath" go build -ldflags "-s -w" -o "$bin.tmp" .)
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
