#!/usr/bin/env bash
# A real node beside the local control plane's KWOK nodes: containerd + runc + a CNI bridge +
# kubelet + kube-proxy (kubelet and kube-proxy from the pinned Kubernetes module), with images
# built on this machine (hack/images.sh). Started by `hack/cluster.sh up`, stopped by `down`.
#
#   hack/realnode.sh up      host network, containerd, images, kubelet, kube-proxy; wait for Ready
#   hack/realnode.sh down    stop them and undo every host change (checked against a snapshot)
#   hack/realnode.sh status  say what runs
#
# SLIPWAY_REAL_NODE=0 skips it (machines without root, clusters beside the default one).
#
# The node is named slipway-real-node, labelled and tainted slipway.test/node=real: only pods that
# ask for it (nodeSelector + toleration) land there. Its pods live on bridge slw0 (10.244.0.0/24,
# the host holds 10.244.0.1) and have no default route: they reach other pods, Services
# (10.96.0.0/16 through the host, where kube-proxy translates) and whatever listens on the host's
# bridge address, nothing else. The API server is on the bridge address too (a forwarder), for
# pods that talk to it through the `kubernetes` Service.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${SLIPWAY_CLUSTER_DIR:-$root/.cluster}
node_dir="$dir/realnode"
cache=${SLIPWAY_CACHE:-$HOME/.cache/slipway}
# Host-wide: one real node per machine. The lock names the cluster that owns it.
lock_dir=/run/slipway-realnode
NODE=slipway-real-node
BRIDGE=slw0
POD_SUBNET=10.244.0.0/24 POD_RANGE=10.244.0.0/16 BRIDGE_IP=10.244.0.1
SVC_RANGE=10.96.0.0/16 KWOK_RANGE=10.0.0.0/16
# what pods' DNS points at: nothing listens there, so a name never resolves and never leaves
POD_NAMESERVER=127.0.0.1
# containerd's registry traffic goes here (nothing listens): images are imported, never pulled
NO_REGISTRY=http://127.0.0.1:9
TAINT_KEY=slipway.test/node

log() { echo "[realnode] $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=pids.sh
source "$root/hack/pids.sh"
if [ -f "$dir/ports.env" ]; then
  # shellcheck source=/dev/null
  source "$dir/ports.env"
fi
api_port=${api_port:-16443}
kubeconfig="$dir/kubeconfig"
kc() { "$dir/bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }
ctr_() { ctr --address "$node_dir/containerd/containerd.sock" -n k8s.io "$@"; }

# Does the cluster at $1 still run its real node? (after a reboot or a restored snapshot the pid
# files remain and the numbers in them may name other processes: hack/pids.sh)
owner_alive() {
  local name
  for name in containerd kubelet kube-proxy; do
    pid_file_alive "$1/realnode/pids/$name.pid" && return 0
  done
  return 1
}

enabled() { [ "${SLIPWAY_REAL_NODE:-1}" != 0 ]; }

running() { pid_file_alive "$node_dir/pids/$1.pid"; }

start() { # name cmd...: in its own session, pid recorded (the process itself)
  local name=$1
  shift
  if running "$name"; then return 0; fi
  setsid "$@" >>"$node_dir/logs/$name.log" 2>&1 </dev/null &
  write_pid_file "$node_dir/pids/$name.pid" $!
  log "started $name (pid $!)"
}

stop() { # name: TERM, then KILL after 30 s (only the process we started, never a pid reused since)
  local f="$node_dir/pids/$1.pid" pid i
  [ -f "$f" ] || return 0
  if running "$1"; then
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 60); do running "$1" || break; sleep 0.5; done
    if running "$1"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  remove_pid_file "$f"
}

wait_for() { # what seconds command...
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      log "timed out after ${secs}s waiting for $what; last log lines:"
      tail -n 15 "$node_dir"/logs/*.log >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

# -- the host's network --------------------------------------------------------------------------

# The device the default route leaves by: nothing of ours may ever take it.
uplink() { ip route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}'; }

net_up() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip addr replace "$BRIDGE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # every pod address but this node's is unreachable; KWOK's simulated pod addresses too
  ip route replace unreachable "$POD_RANGE"
  ip route replace unreachable "$KWOK_RANGE"
  # Service addresses go onto the bridge: kube-proxy translates what it knows, the rest dies there
  ip route replace "$SVC_RANGE" dev "$BRIDGE" src "$BRIDGE_IP"
  # pods reach Services through the host (pod -> ClusterIP -> another pod is forwarded) ...
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw "net.ipv4.conf.$BRIDGE.send_redirects=0"
  # ... and nothing forwarded ever enters or leaves by another device than the bridge
  local ipt
  for ipt in iptables; do
    $ipt -C FORWARD -s "$POD_RANGE" ! -o "$BRIDGE" -j DROP -m comment --comment slipway-realnode 2>/dev/null \
      || $ipt -I FORWARD 1 -s "$POD_RANGE" ! -o "$BRIDGE" -j DROP -m comment --comment slipway-realnode
    $ipt -C FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -j DROP -m comment --comment slipway-realnode 2>/dev/null \
      || $ipt -I FORWARD 1 -o "$BRIDGE" ! -i "$BRIDGE" -j DROP -m comment --comment slipway-realnode
  done
  check_routes
}

check_routes() { # fail when a pod, Service or KWOK address would leave by the uplink
  local up a route
  up=$(uplink)
  [ -n "$up" ] || return 0
  for a in 10.244.0.20 10.244.0.250 10.244.1.1 10.244.255.254 10.96.0.1 10.96.200.7 10.0.0.5 10.0.255.1; do
    route=$(ip route get "$a" 2>&1 | head -n 1 || true)
    if grep -q "dev $up" <<<"$route"; then
      die "FATAL: $a would leave the machine by $up ($route); not starting the real node"
    fi
  done
}

net_down() {
  local ipt
  for ipt in iptables; do
    while $ipt -D FORWARD -s "$POD_RANGE" ! -o "$BRIDGE" -j DROP -m comment --comment slipway-realnode 2>/dev/null; do :; done
    while $ipt -D FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -j DROP -m comment --comment slipway-realnode 2>/dev/null; do :; done
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  ip route del unreachable "$POD_RANGE" 2>/dev/null || true
  ip route del unreachable "$KWOK_RANGE" 2>/dev/null || true
  ip route del "$SVC_RANGE" 2>/dev/null || true
}

# -- configuration files -------------------------------------------------------------------------

# Replace a file only when its content changes: kube-proxy exits when its config file is written.
put() { # path (content on stdin)
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

write_configs() {
  mkdir -p "$node_dir"/{containerd,cni/net.d,cni/ipam,kubelet/root,kubelet/pki,kubelet/pod-logs,kube-proxy}
  put "$node_dir/containerd/config.toml" <<EOF
version = 2
root = "$node_dir/containerd/root"
state = "$node_dir/containerd/state"
[grpc]
  address = "$node_dir/containerd/containerd.sock"
[ttrpc]
  address = "$node_dir/containerd/containerd.sock.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  disable_apparmor = true
  # this VM's bounding set has no CAP_SYS_RESOURCE: runc cannot raise oom_score_adj
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node_dir/cni/net.d"
    max_conf_num = 1
EOF
  # isGateway false and no default route: pods reach the bridge and, through the host, Services
  put "$node_dir/cni/net.d/10-slipway.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "slipway-real-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_SUBNET", "rangeStart": "10.244.0.10", "rangeEnd": "10.244.0.250"}]],
        "routes": [{"dst": "$SVC_RANGE", "gw": "$BRIDGE_IP"}],
        "dataDir": "$node_dir/cni/ipam"
      }
    }
  ]
}
EOF
  echo "nameserver $POD_NAMESERVER" | put "$node_dir/kubelet/resolv.conf"
  put "$node_dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# this machine: cgroup v1, no systemd
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$node_dir/containerd/containerd.sock
imageServiceEndpoint: unix://$node_dir/containerd/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization: {mode: AlwaysAllow}
podLogsDir: $node_dir/kubelet/pod-logs
resolvConf: $node_dir/kubelet/resolv.conf
clusterDomain: cluster.local
serializeImagePulls: false
# images are imported, never pulled: nothing may collect them
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "200Mi", nodefs.available: "1%", imagefs.available: "1%"}
maxPods: 60
registerNode: true
registerWithTaints:
- {key: $TAINT_KEY, value: real, effect: NoSchedule}
EOF
  put "$node_dir/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $kubeconfig}
mode: iptables
hostnameOverride: $NODE
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $POD_SUBNET
nodePortAddresses: ["$BRIDGE_IP/32"]
# leave the host's conntrack sysctls alone
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

# -- up and down ---------------------------------------------------------------------------------

import_images() { # what pods run; the python base is only what the others were built on
  local name ref tar t0=$SECONDS imported="$node_dir/images.imported"
  touch "$imported"
  while read -r name ref tar; do
    # a tarball's name is its content key: import again only what changed since
    grep -qxF "$tar" "$imported" && continue
    ctr_ images import "$tar" >/dev/null
    echo "$tar" >>"$imported"
  done < <(bash "$root/hack/images.sh" build pause operator mlserver)
  log "images imported in $((SECONDS - t0))s: $(ctr_ images ls -q | grep -v '^sha256:' | tr '\n' ' ')"
}

kubernetes_endpoints() { # the `kubernetes` Service reaches the API server on the bridge address
  kc apply --server-side --field-manager=slipway-realnode -f - >/dev/null <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes-slipway-real-node
  namespace: default
  labels:
    kubernetes.io/service-name: kubernetes
    endpointslice.kubernetes.io/managed-by: slipway-realnode
addressType: IPv4
endpoints:
- addresses: ["$BRIDGE_IP"]
  conditions: {ready: true}
ports:
- {name: https, port: $api_port, protocol: TCP}
EOF
}

node_ready() {
  kc get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True
}

up() {
  enabled || { log "skipped (SLIPWAY_REAL_NODE=0)"; return 0; }
  local t0=$SECONDS bin
  [ "$(id -u)" = 0 ] || die "the real node needs root (or set SLIPWAY_REAL_NODE=0)"
  [ -f "$kubeconfig" ] || die "no cluster at $dir (hack/cluster.sh up starts it)"
  mkdir -p "$lock_dir"
  bash "$root/hack/host-packages.sh"
  bin=$(bash "$root/hack/build-tools.sh")
  if [ -f "$lock_dir/owner" ] && [ "$(cat "$lock_dir/owner")" != "$dir" ]; then
    local owner
    owner=$(cat "$lock_dir/owner")
    if owner_alive "$owner"; then
      # one real node per machine (it owns host-wide names: the bridge, routes, iptables chains)
      log "skipped: the cluster at $owner has this machine's real node"
      return 0
    fi
    # its processes are gone (a reboot, a killed run, a machine restored from a snapshot) while
    # its host changes and lock stay: undo them as its own `down` would, then take the node
    log "the cluster at $owner had the real node and no longer runs: undoing what it left"
    SLIPWAY_CLUSTER_DIR=$owner SLIPWAY_REALNODE_BIN=$bin bash "$root/hack/realnode.sh" down \
      || die "could not undo what the cluster at $owner left on this host (above); not starting"
  fi
  mkdir -p "$node_dir/pids" "$node_dir/logs" "$lock_dir"
  if [ ! -f "$lock_dir/owner" ]; then
    # what the host looks like without us, to check `down` against
    python3 "$root/hack/hoststate.py" >"$lock_dir/host-before.json"
    echo "$dir" >"$lock_dir/owner"
  fi
  net_up
  write_configs
  HTTP_PROXY=$NO_REGISTRY HTTPS_PROXY=$NO_REGISTRY NO_PROXY=127.0.0.1,localhost \
    start containerd containerd --config "$node_dir/containerd/config.toml"
  wait_for containerd 30 ctr_ version
  import_images
  start kubelet "$bin/kubelet" --config "$node_dir/kubelet/config.yaml" --kubeconfig "$kubeconfig" \
    --root-dir "$node_dir/kubelet/root" --cert-dir "$node_dir/kubelet/pki" \
    --hostname-override "$NODE" --node-ip "$BRIDGE_IP" --node-labels "$TAINT_KEY=real" --v=1
  start kube-proxy "$bin/kube-proxy" --config "$node_dir/kube-proxy/config.yaml" --v=1
  start apiserver-forwarder socat "TCP-LISTEN:$api_port,bind=$BRIDGE_IP,fork,reuseaddr" "TCP:127.0.0.1:$api_port"
  kubernetes_endpoints
  wait_for "node $NODE Ready" 120 node_ready
  log "node $NODE Ready in $((SECONDS - t0))s"
}

down() {
  [ -d "$node_dir" ] || [ -f "$lock_dir/owner" ] || return 0
  if [ -f "$lock_dir/owner" ] && [ "$(cat "$lock_dir/owner")" != "$dir" ]; then
    return 0  # another cluster's node
  fi
  local bin=${SLIPWAY_REALNODE_BIN:-}
  [ -z "$bin" ] && [ -x "$dir/bin/kubectl" ] && bin=$(dirname "$(readlink -f "$dir/bin/kubectl")")
  stop apiserver-forwarder
  stop kube-proxy
  # kube-proxy's iptables and nftables rules
  if [ -n "$bin" ] && [ -x "$bin/kube-proxy" ]; then
    if [ -f "$node_dir/kube-proxy/config.yaml" ]; then
      "$bin/kube-proxy" --config "$node_dir/kube-proxy/config.yaml" --cleanup >/dev/null 2>&1 || true
    else
      "$bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
    fi
  fi
  stop kubelet
  if [ -S "$node_dir/containerd/containerd.sock" ]; then # whatever the kubelet left running
    local t
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" 2>/dev/null || true; done
    sleep 1
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks rm -f "$t" >/dev/null 2>&1 || true; done
    for t in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$t" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 -namespace k8s.io -address $node_dir/" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  # mounts: container root filesystems and shm, the kubelet's own bind mounts, network namespaces
  local m
  for m in $(findmnt -rn -o TARGET | grep "^$node_dir/" | sort -r); do umount -l "$m" 2>/dev/null || true; done
  for m in /run/netns/cni-*; do
    [ -e "$m" ] || continue
    umount -l "$m" 2>/dev/null || true
    rm -f "$m"
  done
  # cgroups of the pods (kubepods) and of ctr (k8s.io), deepest first
  local c
  for c in $(find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io -depth -type d 2>/dev/null); do
    rmdir "$c" 2>/dev/null || true
  done
  iptables_down
  net_down
  find /var/log/containers -maxdepth 1 -lname "$node_dir/*" -delete 2>/dev/null || true
  restore_host
  rm -rf "$node_dir"
  if [ -f "$lock_dir/host-before.json" ]; then
    local left
    if ! left=$(python3 "$root/hack/hoststate.py" diff "$lock_dir/host-before.json"); then
      log "the host is not as it was before the real node started:"
      echo "$left" >&2
      rm -rf "$lock_dir"
      return 1
    fi
  fi
  rm -rf "$lock_dir"
  log "stopped; the host is as it was"
}

iptables_down() { # the kubelet's own chains (KUBE-FIREWALL, canaries, hint), v4 and v6
  local ipt tbl ch
  for ipt in iptables ip6tables; do
    command -v $ipt >/dev/null || continue
    $ipt -D INPUT -j KUBE-FIREWALL 2>/dev/null || true
    $ipt -D OUTPUT -j KUBE-FIREWALL 2>/dev/null || true
    for tbl in filter nat mangle; do
      for ch in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT KUBE-PROXY-CANARY; do
        $ipt -t $tbl -F $ch 2>/dev/null && $ipt -t $tbl -X $ch 2>/dev/null || true
      done
    done
  done
}

# sysctls the kubelet, kube-proxy and we changed, and nftables tables that did not exist before
restore_host() {
  [ -f "$lock_dir/host-before.json" ] || return 0
  python3 - "$lock_dir/host-before.json" <<'PY'
import json, shutil, subprocess, sys
from pathlib import Path
before = json.loads(Path(sys.argv[1]).read_text())
# containers whose processes died with the machine (no containerd was there to delete them) leave
# runc state and shim sockets under /run/containerd; with no containerd running, runc deletes them
running = subprocess.run(["pgrep", "-f", "^containerd"], capture_output=True).returncode == 0
runc_root = Path("/run/containerd/runc")
if not before["run_containerd"] and not running and runc_root.is_dir():
    for ns in runc_root.iterdir():
        for state in ns.glob("*/state.json"):
            subprocess.run(["runc", "--root", str(ns), "delete", "--force", state.parent.name],
                           capture_output=True, check=False)
    if not any(p.is_dir() for p in runc_root.glob("*/*")):
        shutil.rmtree("/run/containerd", ignore_errors=True)
for name, value in before["sysctls"].items():
    path = Path("/proc/sys") / name.replace(".", "/")
    if value != "absent" and path.exists() and path.read_text().strip() != value:
        path.write_text(value + "\n")
# directories containerd and the CNI plugins create for sockets and network namespaces
for path, absent in (("/run/containerd", not before["run_containerd"]), ("/run/netns", before["netns"] == ["absent"])):
    top = Path(path)
    if absent and top.is_dir() and all(p.is_dir() for p in top.rglob("*")):
        for p in sorted(top.rglob("*"), reverse=True):
            p.rmdir()
        top.rmdir()
tables_before = {line for line in before["nftables"] if line.startswith("table ")}
listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
for line in listed.splitlines():
    if line.startswith("table ") and f"{line} {{" not in tables_before:
        family, name = line.split()[1:3]
        rules = subprocess.run(["nft", "list", "table", family, name], capture_output=True, text=True).stdout
        # only tables that hold no rule any more (chains with policies only)
        if not any(l.strip() and not l.strip().startswith(("table", "chain", "type", "}", "policy")) for l in rules.splitlines()):
            subprocess.run(["nft", "delete", "table", family, name], check=False)
PY
}

status() {
  local name
  for name in containerd kubelet kube-proxy apiserver-forwarder; do
    if running "$name"; then echo "$name: running (pid $(cat "$node_dir/pids/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  check-routes) check_routes ;;
  *)
    echo "usage: $0 up|down|status|check-routes" >&2
    exit 2
    ;;
esac
