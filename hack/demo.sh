#!/usr/bin/env bash
# make demo: the local cluster (already up), the CRD, the operator in the background, a sample
# ModelDeployment that becomes Ready, then a new model version rolled out as a canary to promotion.
# It returns when the rollout is done; the operator keeps running (make cluster-down stops it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
eval "$(bash hack/cluster.sh env)"
ns=demo
pidfile=.cluster/pids/operator.pid
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Installing the ModelDeployment CRD"
kubectl apply --server-side --force-conflicts -f crds/serving.slipway.dev_modeldeployments.yaml >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/modeldeployments.serving.slipway.dev >/dev/null

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  say "Slipway is already running (pid $(cat "$pidfile"))"
else
  say "Starting Slipway in the background (log: .cluster/operator.log)"
  setsid .venv/bin/slipway run --all-namespaces --metrics-port 18080 --liveness http://127.0.0.1:18081/healthz \
    --kubeconfig "$KUBECONFIG" >.cluster/operator.log 2>&1 </dev/null &
  echo $! >"$pidfile"
fi

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns" >/dev/null
# a demo that ran before leaves its model at 1.1.0: start from the beginning
kubectl delete md iris -n "$ns" --ignore-not-found --wait=true >/dev/null
t0=$(date +%s%N)
say "Applying examples/sklearn-iris.yaml (version 1.0.0, 4 replicas)"
kubectl apply -n "$ns" -f examples/sklearn-iris.yaml
kubectl wait -n "$ns" md/iris --for=jsonpath='{.status.phase}'=Ready --timeout=120s >/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
printf 'Ready after %d.%03ds\n' $((ms / 1000)) $((ms % 1000))
kubectl get md -n "$ns"
echo
kubectl get deployments,services,pods -n "$ns" -l serving.slipway.dev/modeldeployment=iris

say "Rolling out version 1.1.0 as a canary: 25% → pause 5s → 50% → pause 5s → promoted"
kubectl patch md iris -n "$ns" --type merge -p '{"spec":{"model":{"version":"1.1.0","uri":"s3://models/iris/1.1.0"}}}'
last=""
for _ in $(seq 1 120); do
  line=$(kubectl get md iris -n "$ns" --no-headers 2>/dev/null || true)
  if [ "$line" != "$last" ]; then echo "$line"; last=$line; fi
  version=$(kubectl get md iris -n "$ns" -o jsonpath='{.status.stable.version}')
  phase=$(kubectl get md iris -n "$ns" -o jsonpath='{.status.phase}')
  if [ "$version" = "1.1.0" ] && [ "$phase" = "Ready" ]; then break; fi
  sleep 1
done
echo
kubectl get md -n "$ns"
say "What happened (kubectl slipway status iris -n $ns; kubectl slipway history iris -n $ns)"
.venv/bin/kubectl-slipway -n "$ns" status iris
echo
.venv/bin/kubectl-slipway -n "$ns" history iris
say "Done. Point your shell at the cluster with: eval \"\$(make -s cluster-env)\"; make cluster-down stops it all"
