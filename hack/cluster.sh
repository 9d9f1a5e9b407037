#!/usr/bin/env bash
# The local control plane: real etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# built from Go modules (hack/build-tools.sh), and KWOK for simulated nodes. Everything binds to
# 127.0.0.1 and lives in .cluster/ (state, logs, pids, kubeconfig, bin links).
#
#   hack/cluster.sh up      build what is missing, start what is not running, wait until ready
#   hack/cluster.sh down    stop every process it started (by pid) and remove .cluster/
#   hack/cluster.sh env     print the line that points a shell at the cluster
#   hack/cluster.sh status  say which processes run
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# SLIPWAY_CLUSTER_DIR (with other ports) runs a second cluster beside the default one
dir=${SLIPWAY_CLUSTER_DIR:-$root/.cluster}
state="$dir/state"
pki="$dir/pki"
pids="$dir/pids"
logs="$dir/logs"
kubeconfig="$dir/kubeconfig"
# Ports are fixed per cluster directory so that `up` twice finds the same cluster; override them
# (with SLIPWAY_CLUSTER_DIR) to run two. A running cluster keeps the ports it started with.
if [ -f "$dir/ports.env" ]; then
  # shellcheck source=/dev/null
  source "$dir/ports.env"
fi
api_port=${api_port:-${SLIPWAY_API_PORT:-16443}}
etcd_port=${etcd_port:-${SLIPWAY_ETCD_PORT:-12379}}
etcd_peer_port=$((etcd_port + 1))
nodes=${SLIPWAY_NODES:-2}
# SLIPWAY_AUDIT=1: the API server writes an audit log of every write (.cluster/logs/audit.log;
# hack/audit-policy.yaml says which), for a request-by-request trace (python -m bench.trace)
audit=${SLIPWAY_AUDIT:-0}

log() { echo "[cluster] $*" >&2; }
# shellcheck source=pids.sh
source "$root/hack/pids.sh"

running() { # name -> 0 when the process its pid file names is alive and is the one we started
  pid_file_alive "$pids/$1.pid"
}

started_now=()

start() { # name cmd... : start in its own session, in the background, logging to .cluster/logs
  local name=$1
  shift
  if running "$name"; then return 0; fi
  # the log of a run that ended (a crash, a kill) stays beside the new one
  [ -f "$logs/$name.log" ] && mv "$logs/$name.log" "$logs/$name.previous.log"
  setsid "$@" >"$logs/$name.log" 2>&1 </dev/null &
  write_pid_file "$pids/$name.pid" $!
  started_now+=("$name")
  log "started $name (pid $!)"
}

wait_for() { # description seconds command...
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs)) name
  until "$@" >/dev/null 2>&1; do
    # what this `up` started must not have exited (what was down before it is started again
    # further on, in its turn)
    for name in "${started_now[@]}"; do
      if ! running "$name"; then
        log "$name exited while waiting for $what; its last log lines:"
        tail -n 20 "$logs/$name.log" >&2 || true
        return 1
      fi
    done
    if [ $SECONDS -ge $deadline ]; then
      log "timed out after ${secs}s waiting for $what; last log lines:"
      tail -n 20 "$logs"/*.log >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

make_pki() {
  [ -f "$pki/admin.crt" ] && return 0
  log "creating certificates"
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=slipway-local-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
      -subj "/O=system:masters/CN=slipway-admin" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out admin.crt -days 3650 -extfile admin.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

write_kubeconfig() {
  cat >"$kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: slipway-local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: slipway-admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: slipway-local
  context: {cluster: slipway-local, user: slipway-admin, namespace: default}
current-context: slipway-local
EOF
  mv "$kubeconfig.tmp" "$kubeconfig"
}

write_stages() { # KWOK's own default stages from the pinned module, plus our fault stages
  local src
  src="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
  {
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo "---"
      cat "$src/$f"
    done
    echo "---"
    # pods with a fault label are left to the fault stages
    awk '{print} /^    matchExpressions:$/ && !done {print "    - key: '"'"'.metadata.labels[\"slipway.test/fault\"]'"'"'"; print "      operator: DoesNotExist"; done=1}' \
      "$src/pod/fast/pod-ready.yaml"
    cat "$root/hack/kwok-fault-stages.yaml"
  } >"$dir/kwok-stages.yaml"
}

api_ready() {
  curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$api_port/readyz" 2>/dev/null | grep -q '^ok$'
}

nodes_ready() {
  local n
  n=$("$dir/bin/kubectl" --kubeconfig "$kubeconfig" get nodes --no-headers 2>/dev/null | grep -c ' Ready ' || true)
  [ "$n" -ge "$nodes" ]
}

up() {
  local t0=$SECONDS
  # shellcheck source=versions.env
  source "$root/hack/versions.env"
  local bin
  bin=$(bash "$root/hack/build-tools.sh")
  mkdir -p "$dir/bin" "$state" "$pids" "$logs"
  printf 'api_port=%s\netcd_port=%s\n' "$api_port" "$etcd_port" >"$dir/ports.env"
  for b in kubectl helm kwok glua; do ln -sfn "$bin/$b" "$dir/bin/$b"; done
  make_pki
  write_kubeconfig
  write_stages

  start etcd "$bin/etcd" --name slipway --data-dir "$state/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "slipway=http://127.0.0.1:$etcd_peer_port" \
    --listen-metrics-urls "" --quota-backend-bytes 4294967296 --unsafe-no-fsync \
    --log-level warn
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$etcd_port/health"

  local audit_flags=()
  if [ "$audit" = 1 ]; then
    audit_flags=(--audit-policy-file "$root/hack/audit-policy.yaml" --audit-log-path "$logs/audit.log"
      --audit-log-format json --audit-log-maxsize 0)
  fi
  # OwnerReferencesPermissionEnforcement (OpenShift's default): a child's blockOwnerDeletion needs
  # update on its owner's finalizers, so the chart's identity is tested against it
  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --authorization-mode RBAC \
    --enable-admission-plugins OwnerReferencesPermissionEnforcement \
    --endpoint-reconciler-type none \
    --kubelet-preferred-address-types InternalIP \
    --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
    --allow-privileged=true \
    --profiling=false \
    "${audit_flags[@]}" \
    --v=1
  wait_for kube-apiserver 90 api_ready

  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 \
    --leader-elect=false --use-service-account-credentials=false \
    --root-ca-file "$pki/ca.crt" --service-account-private-key-file "$pki/sa.key" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --controllers '*,-nodeipam' \
    --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 --concurrent-gc-syncs 20 \
    --kube-api-qps 200 --kube-api-burst 400 \
    --v=1

  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
    --kube-api-qps 200 --kube-api-burst 400 \
    --v=1

  start kwok "$bin/kwok" --kubeconfig "$kubeconfig" --config "$dir/kwok-stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip 10.0.0.1 --cidr 10.0.0.1/16 --node-lease-duration-seconds 40 \
    --server-address 127.0.0.1:0
  # what a kubelet does and KWOK does not: write a pod's status again when a write failed
  start pod-status-resync bash "$root/hack/pod-status-resync.sh" "$dir/bin/kubectl" "$kubeconfig" 30

  local i
  for i in $(seq 1 "$nodes"); do
    "$dir/bin/kubectl" --kubeconfig "$kubeconfig" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {node.alpha.kubernetes.io/ttl: "0", kwok.x-k8s.io/node: fake}
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    nvidia.com/gpu.present: "true"
    type: kwok
spec: {}
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "500", nvidia.com/gpu: "8"}
  capacity: {cpu: "64", memory: 256Gi, pods: "500", nvidia.com/gpu: "8"}
EOF
  done
  # Gateway API CRDs (from the pinned module), for traffic splitting through an HTTPRoute
  local gw
  gw="$(cd "$dir" && go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  "$dir/bin/kubectl" --kubeconfig "$kubeconfig" apply --server-side -f "$gw/config/crd/standard/" >/dev/null
  wait_for "$nodes Ready nodes" 60 nodes_ready
  wait_for "the default ServiceAccount" 60 "$dir/bin/kubectl" --kubeconfig "$kubeconfig" get serviceaccount default -n default
  # a real node beside the simulated ones (SLIPWAY_REAL_NODE=0: none)
  bash "$root/hack/realnode.sh" up
  log "ready in $((SECONDS - t0))s: $(env_line)"
}

down() {
  # the real node first: it undoes its host changes while the tools it needs are still linked
  local node_ok=0
  bash "$root/hack/realnode.sh" down || node_ok=$?
  if [ -d "$pids" ]; then
    local f pid name
    # the control plane in this order, then anything else we started (the demo's operator, a test
    # Prometheus) that recorded a pid here too; only processes that are still the ones recorded
    for f in "$pids"/{pod-status-resync,kwok,kube-scheduler,kube-controller-manager,kube-apiserver,etcd}.pid "$pids"/*.pid; do
      pid_file_alive "$f" || continue
      pid=$(cat "$f")
      # each was started with setsid: its pid is its process group, so children go too
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    local deadline=$((SECONDS + 15))
    for f in "$pids"/*.pid; do
      pid_file_alive "$f" || continue
      pid=$(cat "$f")
      while pid_file_alive "$f" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
      pid_file_alive "$f" || continue
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
  fi
  rm -rf "$dir"
  log "stopped and removed $dir"
  return "$node_ok"
}

env_line() {
  echo "export PATH=$dir/bin:\$PATH KUBECONFIG=$kubeconfig"
}

status() {
  local name
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler kwok pod-status-resync; do
    if running "$name"; then echo "$name: running (pid $(cat "$pids/$name.pid"))"; else echo "$name: stopped"; fi
  done
  bash "$root/hack/realnode.sh" status
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) env_line ;;
  status) status ;;
  restart)
    # stop one component and start it again (the reliability suite restarts etcd and the apiserver)
    name=${2:?usage: $0 restart etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kwok|pod-status-resync}
    if running "$name"; then
      pid=$(cat "$pids/$name.pid")
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
      while running "$name"; do sleep 0.1; done
    fi
    remove_pid_file "$pids/$name.pid"
    up >/dev/null
    ;;
  *)
    echo "usage: $0 up|down|env|status|restart NAME" >&2
    exit 2
    ;;
esac
