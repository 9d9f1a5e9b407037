#!/usr/bin/env bash
# make demo: the local cluster (already up), the CRD, the operator in the background, a sample
# ModelDeployment that becomes Ready, then a new model version rolled out as a canary to promotion.
# On the real node the model is trained here, fetched from S3 and served by MLServer, and a V2
# inference request is answered before and after the canary. It returns when the rollout is done;
# the operator and the model store keep running (make cluster-down stops them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
eval "$(bash hack/cluster.sh env)"
# shellcheck source=pids.sh
source hack/pids.sh
ns=demo
pidfile=.cluster/pids/operator.pid
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Installing the ModelDeployment CRD"
kubectl apply --server-side --force-conflicts -f crds/serving.slipway.dev_modeldeployments.yaml >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/modeldeployments.serving.slipway.dev >/dev/null

metrics_port=${SLIPWAY_DEMO_METRICS_PORT:-18080}
if pid_file_alive "$pidfile"; then  # the very process it started, not a number reused since
  say "Slipway is already running (pid $(cat "$pidfile"))"
else
  say "Starting Slipway in the background (log: .cluster/operator.log)"
  setsid .venv/bin/slipway run --all-namespaces --metrics-port "$metrics_port" --metrics-address 127.0.0.1 \
    --liveness "http://127.0.0.1:$((metrics_port + 1))/healthz" \
    --kubeconfig "$KUBECONFIG" >.cluster/operator.log 2>&1 </dev/null &
  write_pid_file "$pidfile" $!  # `make cluster-down` stops it
  for _ in $(seq 1 60); do
    curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null && break
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "Slipway exited; the end of its log (.cluster/operator.log):" >&2
      tail -n 15 .cluster/operator.log >&2
      exit 1
    fi
    sleep 0.5
  done
fi

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns" >/dev/null
# a demo that ran before leaves its model at 1.1.0: start from the beginning
kubectl delete md iris -n "$ns" --ignore-not-found --wait=true >/dev/null

real=0
kubectl get node slipway-real-node >/dev/null 2>&1 && real=1
if [ "$real" = 1 ]; then
  say "Training the iris model (scikit-learn) and putting versions 1.0.0 and 1.1.0 in S3"
  store_pid=.cluster/pids/model-store.pid
  [ -f "$store_pid" ] && kill "$(cat "$store_pid")" 2>/dev/null || true
  mkdir -p .cluster/demo-models
  secret=$(.venv/bin/python -m tests.e2e.realnode.models --work .cluster/demo-models --pidfile "$store_pid")
  kubectl delete secret model-store -n "$ns" --ignore-not-found >/dev/null
  .venv/bin/python -c 'import json, sys; print(" ".join(f"--from-literal={k}={v}" for k, v in json.loads(sys.argv[1]).items()))' "$secret" \
    | xargs kubectl create secret generic model-store -n "$ns" >/dev/null
  echo "s3://models/iris/{1.0.0,1.1.0}/model.joblib in $(.venv/bin/python -c 'import json, sys; print(json.loads(sys.argv[1])["AWS_ENDPOINT_URL"])' "$secret")"
  # examples/sklearn-iris.yaml, on the real node: credentials for the store, small requests
  manifest=$(.venv/bin/python - <<'PY'
import json, yaml
md = yaml.safe_load(open("examples/sklearn-iris.yaml"))
md["spec"]["model"]["storage"] = {"secretName": "model-store"}
md["spec"]["resources"] = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
md["spec"]["template"] = {
    "nodeSelector": {"slipway.test/node": "real"},
    "tolerations": [{"key": "slipway.test/node", "operator": "Exists", "effect": "NoSchedule"}],
}
print(json.dumps(md))
PY
)
else
  say "No real node in this cluster (SLIPWAY_REAL_NODE=0 or not root): KWOK pods, nothing answers requests"
  manifest=$(cat examples/sklearn-iris.yaml)
fi

infer() { # the Service's cluster IP, through kube-proxy, as any client in the cluster would
  local ip
  ip=$(kubectl get svc iris -n "$ns" -o jsonpath='{.spec.clusterIP}')
  for _ in $(seq 1 30); do
    if curl -fsS -m 5 -X POST "http://$ip:8080/v2/models/iris-classifier/infer" -H 'Content-Type: application/json' \
      -d '{"inputs":[{"name":"input-0","shape":[3,4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2,5.9,3.0,4.2,1.5,6.7,3.0,5.2,2.3]}]}'; then
      echo
      return 0
    fi
    sleep 1
  done
  return 1
}

t0=$(date +%s%N)
say "Applying examples/sklearn-iris.yaml (version 1.0.0, 4 replicas)"
echo "$manifest" | kubectl apply -n "$ns" -f -
kubectl wait -n "$ns" md/iris --for=jsonpath='{.status.phase}'=Ready --timeout=300s >/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
printf 'Ready after %d.%03ds\n' $((ms / 1000)) $((ms % 1000))
kubectl get md -n "$ns"
echo
kubectl get deployments,services,pods -n "$ns" -l serving.slipway.dev/modeldeployment=iris -o wide
if [ "$real" = 1 ]; then
  say "A V2 inference request to Service iris: three flowers, classes 0, 1, 2"
  infer
fi

say "Rolling out version 1.1.0 as a canary: 25% → pause 5s → 50% → pause 5s → promoted"
kubectl patch md iris -n "$ns" --type merge -p '{"spec":{"model":{"version":"1.1.0","uri":"s3://models/iris/1.1.0"}}}'
last=""
for _ in $(seq 1 300); do
  line=$(kubectl get md iris -n "$ns" --no-headers 2>/dev/null || true)
  if [ "$line" != "$last" ]; then echo "$line"; last=$line; fi
  version=$(kubectl get md iris -n "$ns" -o jsonpath='{.status.stable.version}')
  phase=$(kubectl get md iris -n "$ns" -o jsonpath='{.status.phase}')
  if [ "$version" = "1.1.0" ] && [ "$phase" = "Ready" ]; then break; fi
  sleep 1
done
echo
kubectl get md -n "$ns"
if [ "$real" = 1 ]; then
  say "The same request after the canary: answered by model version 1.1.0"
  infer
fi
say "What happened (kubectl slipway status iris -n $ns; kubectl slipway history iris -n $ns)"
.venv/bin/kubectl-slipway -n "$ns" status iris
echo
.venv/bin/kubectl-slipway -n "$ns" history iris
say "Done. Point your shell at the cluster with: eval \"\$(make -s cluster-env)\"; make cluster-down stops it all"
