#!/usr/bin/env bash
# Prints the path of prometheus-operator's PodMonitor CRD (monitoring.coreos.com/v1), for the tests
# of the PodMonitors Slipway creates: the file of the pinned release, from its Go module (the
# module proxy is the only network the project uses; the module cache keeps it for next time).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
module="github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION"
dir=$(cd "${TMPDIR:-/tmp}" && go mod download -json "$module" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
crd="$dir/example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml"
[ -f "$crd" ] || { echo "no PodMonitor CRD in $module" >&2; exit 1; }
echo "$crd"
