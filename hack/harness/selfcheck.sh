#!/bin/bash
# Real-cluster self check of the harness: create a 1 control-plane + 2 worker
# kind cluster from the harness node image (extraMounts + node labels like
# kindgpu's clusters use), check nodes/CoreDNS/pods/storage/mounts/labels,
# then delete it. Run after setup.sh. KEEP_CLUSTER=1 keeps the cluster.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ -f "$CACHE/env" ] || die "$CACHE/env missing: run hack/harness/setup.sh first"
. "$CACHE/env"
NAME="${SELFCHECK_CLUSTER:-harness-check}"
CTX="kind-$NAME"
T0=$SECONDS
WORK=$(mktemp -d)
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    log "selfcheck FAILED; diagnostics:"
    kubectl --context "$CTX" get nodes -o wide >&2 2>/dev/null || true
    kubectl --context "$CTX" get pods -A -o wide >&2 2>/dev/null || true
    kubectl --context "$CTX" get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -n 30 >&2 || true
  fi
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    local t=$SECONDS
    kind delete cluster --name "$NAME" >&2 || true
    log "phase 'delete-cluster' done in $((SECONDS - t))s"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

# Kubernetes 1.35+ refuses a cgroup v1 host unless the kubelet is told (kindgpu renders the same).
cgroup_patch=""
if [ "$(docker info --format '{{.CgroupVersion}}')" = 1 ]; then
  cgroup_patch=$'kubeadmConfigPatches:\n- |\n  kind: KubeletConfiguration\n  failCgroupV1: false'
fi
cat >"$WORK/kind.yaml" <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
$cgroup_patch
nodes:
- role: control-plane
- role: worker
  labels:
    gpu-worker: "1"
  extraMounts:
  - hostPath: /dev/null
    containerPath: /var/run/kindgpu/sim-gpus/GPU-test-1
- role: worker
  labels:
    gpu-worker: "1"
  extraMounts:
  - hostPath: /dev/null
    containerPath: /var/run/kindgpu/sim-gpus/GPU-test-2
YAML

kind delete cluster --name "$NAME" >/dev/null 2>&1 || true
phase create-cluster kind create cluster --name "$NAME" --image "$KINDGPU_NODE_IMAGE" \
  --config "$WORK/kind.yaml" --wait 180s >&2
k() { kubectl --context "$CTX" "$@"; }

phase nodes-ready k wait --for=condition=Ready nodes --all --timeout=180s >&2
phase coredns-ready k -n kube-system wait --for=condition=Ready pod -l k8s-app=kube-dns --timeout=180s >&2

# A test image built here (no registry): the slim rootfs, loaded with kind.
TEST_IMAGE="kindgpu-harness/selfcheck:1"
slim=$(docker images --format '{{.Repository}}:{{.Tag}}' 'kindgpu-harness/rootfs-slim' | head -n1)
[ -n "$slim" ] || die "no kindgpu-harness/rootfs-slim image"
docker tag "$slim" "$TEST_IMAGE"
phase kind-load kind load docker-image --name "$NAME" "$TEST_IMAGE" >&2

workers=$(k get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{.items[*].metadata.name}')
[ "$(wc -w <<<"$workers")" = 2 ] || die "expected 2 workers, got: $workers"
for w in $workers; do
  cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: check-$w
  labels: {app: selfcheck}
spec:
  nodeName: $w
  containers:
  - name: c
    image: $TEST_IMAGE
    imagePullPolicy: Never
    command: ["sh", "-c", "sleep 3600"]
---
YAML
done >"$WORK/pods.yaml"
cat >>"$WORK/pods.yaml" <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: check-pvc}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: check-storage}
spec:
  containers:
  - name: c
    image: $TEST_IMAGE
    imagePullPolicy: Never
    command: ["sh", "-c", "echo ok > /data/ok && sleep 3600"]
    volumeMounts: [{name: d, mountPath: /data}]
  volumes:
  - name: d
    persistentVolumeClaim: {claimName: check-pvc}
YAML
k apply -f "$WORK/pods.yaml" >&2
phase pods-running k wait --for=condition=Ready pod -l app=selfcheck --timeout=120s >&2
phase storage-pod-running k wait --for=condition=Ready pod/check-storage --timeout=180s >&2

# Cross-node pod traffic + CoreDNS + Services: each worker pod resolves the
# API service by name and opens a TCP connection to it (bash's /dev/tcp:
# the slim image has no nc/ping).
check_net() {
  local w
  for w in $workers; do
    k exec "check-$w" -- getent hosts kubernetes.default.svc.cluster.local >&2
    k exec "check-$w" -- timeout 10 bash -c 'exec 3<>/dev/tcp/kubernetes.default.svc.cluster.local/443 && echo "tcp to apiserver service ok"' >&2
  done
  # pod -> pod on the other node: kubelet's read-only port is off, so probe
  # the other pod's IP with ICMP-free TCP to a port nothing listens on:
  # "connection refused" proves the packet reached the pod's network stack.
  set -- $workers
  local ip2; ip2=$(k get pod "check-$2" -o jsonpath='{.status.podIP}')
  out=$(k exec "check-$1" -- timeout 10 bash -c "exec 3<>/dev/tcp/$ip2/9" 2>&1 || true)
  echo "pod check-$1 -> $ip2:9: $out" >&2
  grep -q 'Connection refused' <<<"$out" || die "no pod-to-pod traffic across nodes"
}
phase network check_net

check_node_setup() {
  local w n
  for w in $workers; do
    log "$w: $(docker exec "$w" ls /var/run/kindgpu/sim-gpus | tr '\n' ' ')"
    [[ "$(docker exec "$w" ls /var/run/kindgpu/sim-gpus)" == GPU-test-[12] ]] || die "extraMount missing in $w"
  done
  n=$(k get nodes -l gpu-worker=1 -o name | wc -l)
  [ "$n" = 2 ] || die "expected 2 nodes labelled gpu-worker=1, got $n"
  k get nodes -L gpu-worker >&2
  k get pods -A -o wide >&2
}
phase node-setup check_node_setup
log "selfcheck PASSED in $((SECONDS - T0))s (before cluster delete)"
