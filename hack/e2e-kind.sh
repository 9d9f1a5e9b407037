#!/usr/bin/env bash
# make e2e-kind: the e2e suite against a kind cluster with Slipway installed by its Helm chart from
# an image built here, for users who have Docker and kind (this repository's CI has neither, so it
# never runs there). It creates the cluster, builds and loads the image, installs the Gateway API
# CRDs and the chart, then runs `pytest -m 'integration or e2e'` with SLIPWAY_TEST_EXISTING_CLUSTER=1
# and SLIPWAY_TEST_OPERATOR=external: the chart's in-cluster operator serves the tests instead of a
# local process. Tests that need KWOK's fault stages (slipway.test/fault) are skipped on kind.
#
#   SLIPWAY_KIND_CLUSTER  kind cluster name (default slipway-e2e)
#   SLIPWAY_KIND_KEEP=1   keep the cluster afterwards (default: delete it)
#   SLIPWAY_IMAGE         image to build and install (default slipway:e2e)
#   PYTEST_ARGS           extra pytest arguments (e.g. "-k canary -x")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=hack/versions.env
source hack/versions.env

cluster=${SLIPWAY_KIND_CLUSTER:-slipway-e2e}
image=${SLIPWAY_IMAGE:-slipway:e2e}
release=slipway
namespace=slipway-system
workdir=$(mktemp -d)
kubeconfig="$workdir/kubeconfig"
export KUBECONFIG="$kubeconfig"

log() { echo "[e2e-kind] $*" >&2; }

for tool in docker kind kubectl helm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "$tool is not on PATH: make e2e-kind needs Docker, kind, kubectl and helm"
    exit 1
  fi
done
if [ ! -x .venv/bin/pytest ]; then
  log "no .venv: run 'make install' first"
  exit 1
fi

cleanup() {
  local status=$?
  if [ "${SLIPWAY_KIND_KEEP:-0}" = 1 ]; then
    log "keeping kind cluster $cluster (KUBECONFIG=$kubeconfig); delete it with: kind delete cluster --name $cluster"
  else
    log "deleting kind cluster $cluster"
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    rm -rf "$workdir"
  fi
  exit "$status"
}
trap cleanup EXIT

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "reusing kind cluster $cluster"
  kind export kubeconfig --name "$cluster" --kubeconfig "$kubeconfig"
else
  log "creating kind cluster $cluster"
  kind create cluster --name "$cluster" --kubeconfig "$kubeconfig" --wait 120s
fi

log "building $image from the Dockerfile"
docker build -t "$image" .
log "loading $image into the kind nodes"
kind load docker-image "$image" --name "$cluster"

log "installing the Gateway API CRDs $GATEWAY_API_VERSION"
kubectl apply --server-side -f \
  "https://github.com/kubernetes-sigs/gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml"

log "installing the chart ($release in $namespace)"
helm upgrade --install "$release" charts/slipway -n "$namespace" --create-namespace \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never \
  --set logFormat=text --wait --timeout 180s
kubectl -n "$namespace" rollout status "deployment/$release" --timeout=180s

log "running the integration and e2e suites against it"
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of words on purpose
SLIPWAY_TEST_EXISTING_CLUSTER=1 \
  SLIPWAY_TEST_OPERATOR=external \
  SLIPWAY_TEST_OPERATOR_NAMESPACE="$namespace" \
  SLIPWAY_TEST_OPERATOR_NAME="$release" \
  .venv/bin/pytest -m 'integration or e2e' -q ${PYTEST_ARGS:-}
