#!/usr/bin/env bash
# The part of a kubelet that KWOK lacks: retrying a pod status update that failed.
#
# KWOK plays a pod's stages when the pod changes, and gives up on a stage whose patch fails with
# anything but connection-refused, a timeout, 429 or 503. While etcd restarts the API server
# answers some writes with a 500 ("error reading from server: EOF"); a pod whose pod-ready stage
# failed that way stays Pending on its node for good, where a kubelet would have written its
# status again at its next sync (every 10 s). So every PERIOD seconds (30 by default) this touches each pod that has
# sat Pending on a node for longer than PERIOD (an annotation, which is a change KWOK watches), and
# KWOK plays its stages again. On a healthy cluster no pod is Pending on a node that long, and it
# writes nothing.
#
#   hack/pod-status-resync.sh KUBECTL KUBECONFIG [PERIOD]     (hack/cluster.sh starts it)
set -u
kubectl=$1
kubeconfig=$2
period=${3:-30}

while :; do
  sleep "$period"
  now=$(date +%s)
  "$kubectl" --kubeconfig "$kubeconfig" get pods --all-namespaces --field-selector status.phase=Pending \
    -o jsonpath='{range .items[?(@.spec.nodeName)]}{.metadata.namespace} {.metadata.name} {.metadata.creationTimestamp} {.metadata.deletionTimestamp}{"\n"}{end}' \
    2>/dev/null |
    while read -r namespace name created deleting; do
      [ -z "$deleting" ] || continue
      age=$((now - $(date -d "$created" +%s)))
      [ "$age" -gt "$period" ] || continue
      if "$kubectl" --kubeconfig "$kubeconfig" annotate pod -n "$namespace" "$name" --overwrite \
        "slipway.test/status-resync=$now" >/dev/null 2>&1; then
        echo "$(date -u +%FT%T) $namespace/$name: Pending on its node for ${age}s; touched it so that KWOK plays its stages again"
      fi
    done
done
