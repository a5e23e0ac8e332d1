#!/usr/bin/env bash
# kindgpu GPU-host test rig ONLY (never part of the product): the real-mode run on a GPU machine
# staged by stage.sh. Each phase prints what it ran and keeps every command's output under
# $RIG_RUNS/<phase>/ (default /var/tmp/kindgpu-runs); with $OUT set (the device tool brings back at
# most 8 files from it), they are also packed into $OUT/runs.tgz.
#
#   bash hack/gpu-host/rig.sh PHASE...   # probe torch-image gpu1 compute collective dra dra-fault multi layout:WxG scale restart cpu bench load down
set -uo pipefail
cd "$(dirname "$0")/../.."
. hack/gpu-host/versions.sh
# shellcheck disable=SC1091
[ -f "$RIG_ROOT/env" ] && . "$RIG_ROOT/env"
RUNS=${RIG_RUNS:-/var/tmp/kindgpu-runs}
# NVLink multicast stays off in every process started here (it can put a shared host's GPUs out of
# service); the specs' smoke.env sets the same in the smoke pods.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
SPECS=hack/gpu-host/specs
FAILED=0

# rec NAME CMD...: run CMD, keep "$ CMD", its output and exit code in NAME.txt, echo a summary.
rec() {
  local name=$1 file t0 rc; shift
  file=$RUNS/$PHASE/$name.txt
  mkdir -p "$(dirname "$file")"
  t0=$EPOCHREALTIME
  { printf '$ %s\n' "$*"; "$@" 2>&1; } >"$file"
  rc=$?
  awk -v rc="$rc" -v t0="$t0" -v t1="$EPOCHREALTIME" 'BEGIN { printf "# exit %s, %.1f s\n", rc, t1 - t0 }' >>"$file"
  echo "== $PHASE/$name: exit $rc ($(tail -n 1 "$file"))"
  [ "$rc" = 0 ] || { FAILED=1; tail -n 25 "$file"; }
  return "$rc"
}
inv() { python3 -m invoke "$@"; }
sh_in() { docker exec "$1" sh -c "$2"; }

probe() {
  rec host sh -c 'uname -r; nproc; free -g | head -2; df -h / /var | tail -n 2'
  rec nvidia-smi sh -c 'nvidia-smi -L; nvidia-smi --query-gpu=index,uuid,name,pci.bus_id,memory.total --format=csv'
  rec devices sh -c 'ls -l /dev/nvidia*; cat /proc/driver/nvidia/params | grep -i ModifyDeviceFiles; cat /proc/driver/nvidia/gpus/*/information'
  rec torch python3 -c 'import sys, torch; print(sys.executable, sys.version.split()[0], torch.__version__, torch.__file__, torch.cuda.is_available())'
  rec toolkit sh -c 'nvidia-ctk --version; nvidia-container-runtime --version'
}

# The compute and collective levels' image, from this machine's own Python and PyTorch (no
# gigabytes carried): its interpreter, standard library, site directories and shared libraries.
torch_image() {
  local list=/var/tmp/kindgpu-torch-paths bin site missing tries said module=${RIG_PYTHON_ROOTS:-torch}
  module=${module%% *}
  # The rig's own PYTHONPATH (kindgpu's dependencies) stays out: torch's come from its environment.
  py() { env -u PYTHONPATH python3 "$@"; }
  py hack/gpu-host/torch_paths.py | sed 's|^/||' >"$list"
  bin=$(dirname "$(py -c 'import sys; print(sys.executable)')")
  # Its site directories, named: the interpreter in the image need not find them by itself (a
  # distribution's site.py may look for Debian's dist-packages instead).
  site=$(py -c 'import sys; print(":".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))')
  for tries in 1 2 3 4; do
    docker rmi -f "$SMOKE_PYTORCH_IMAGE" >/dev/null 2>&1
    echo "$(wc -l <"$list") paths; python3 in $bin"
    tar -C / -c --exclude='usr/lib/x86_64-linux-gnu/dri' bin lib lib64 sbin -T "$list" \
      | docker import --change "ENV PATH=$bin:$CUDA_PATH" --change "ENV LD_LIBRARY_PATH=$CUDA_LD_LIBRARY_PATH" \
        --change "ENV PYTHONPATH=$site" --change "ENV NVIDIA_VISIBLE_DEVICES=all" --change 'CMD ["python3"]' \
        - "$SMOKE_PYTORCH_IMAGE" >/dev/null \
      || { echo "tar | docker import failed"; return 1; }
    said=$(docker run --rm --network none --entrypoint python3 "$SMOKE_PYTORCH_IMAGE" -c \
      "import $module; print('imported', $module.__name__)" 2>&1)
    echo "$said" | tail -n 3
    if echo "$said" | grep -q "^imported "; then docker image ls "$SMOKE_PYTORCH_IMAGE"; return 0; fi
    missing=$(echo "$said" | sed -n "s/.*No module named '\([^'.]*\).*/\1/p")
    [ -n "$missing" ] || return 1
    # What the metadata did not name: take the module from where this Python finds it.
    py -c "import os, $missing as m; f = m.__file__; print(os.path.dirname(f) if f.endswith('__init__.py') else f)" \
      | sed 's|^/||' >>"$list"
  done
  return 1
}

plugin_pod() { kubectl --kubeconfig "$1" -n kube-system get pods -l name=nvidia-device-plugin-ds -o name | head -n 1; }
kubeconfig() { python3 -c "from kindgpu.state import StateDir; print(StateDir.of('$1').kubeconfig)"; }

# One GPU worker, real mode: preflight, up, status, the plugin's NVML path and params mask, smoke.
gpu1() {
  local spec=$SPECS/one-gpu.yaml kc
  rec preflight inv preflight --config "$spec" --json
  rec up inv up --config "$spec"
  kc=$(kubeconfig rig)
  rec up-again inv up --config "$spec"
  rec status inv status --config "$spec" --json
  rec plugin-env kubectl --kubeconfig "$kc" -n kube-system get ds nvidia-device-plugin-daemonset \
    -o jsonpath='{range .spec.template.spec.containers[0].env[*]}{.name}={.value}{"\n"}{end}'
  rec plugin-params kubectl --kubeconfig "$kc" -n kube-system exec "$(plugin_pod "$kc")" -- \
    sh -c 'grep ModifyDeviceFiles /proc/driver/nvidia/params; ls /dev/nvidia*'
  rec plugin-log kubectl --kubeconfig "$kc" -n kube-system logs "$(plugin_pod "$kc")" --tail 40
  rec worker-devices sh_in rig-worker 'ls -l /dev/nvidia*; grep ModifyDeviceFiles /proc/driver/nvidia/params'
  rec allocatable kubectl --kubeconfig "$kc" get nodes \
    -o custom-columns='NODE:.metadata.name,GPU:.status.allocatable.nvidia\.com/gpu'
  rec smoke-visibility inv smoke --config "$spec" --json
  rec smoke-compute inv smoke --config "$spec" --level compute --json
}

compute() {
  rec smoke-compute inv smoke --config "$SPECS/one-gpu.yaml" --level compute --json
}

# One worker: NCCL in one pod (nNodes 1); across workers is the multi-GPU machines' run.
collective() {
  rec smoke-collective inv smoke --config "$SPECS/one-gpu.yaml" --level collective --json
}

# One GPU worker under DRA: NVIDIA's DRA driver publishes its GPU; smoke asks through claims; a pod asking
# nvidia.com/gpu: 1 is served through the DeviceClass's extended-resource mapping.
dra() {
  local spec=$SPECS/one-gpu-dra.yaml kc pod
  rec down-before inv down --config "$SPECS/one-gpu.yaml"
  rec up inv up --config "$spec"
  kc=$(kubeconfig rig)
  rec up-again inv up --config "$spec"
  rec status inv status --config "$spec" --json
  rec resourceslices kubectl --kubeconfig "$kc" get resourceslices -o yaml
  rec deviceclass kubectl --kubeconfig "$kc" get deviceclass gpu.nvidia.com -o yaml
  pod=$(kubectl --kubeconfig "$kc" -n kube-system get pods -l app.kubernetes.io/name=nvidia-dra-driver-gpu-kubelet-plugin -o name | head -n 1)
  rec plugin-params kubectl --kubeconfig "$kc" -n kube-system exec "$pod" -- sh -c 'grep ModifyDeviceFiles /proc/driver/nvidia/params; ls /dev/nvidia*'
  rec plugin-log kubectl --kubeconfig "$kc" -n kube-system logs "$pod" --tail 60
  rec smoke-visibility inv smoke --config "$spec" --json
  if docker image inspect "$SMOKE_PYTORCH_IMAGE" >/dev/null 2>&1; then
    rec smoke-compute inv smoke --config "$spec" --level compute --json
  fi
  rec claim-pod sh -c "kubectl --kubeconfig $kc apply -f hack/gpu-host/specs/dra-claim-pod.yaml && \
    kubectl --kubeconfig $kc wait --for=jsonpath='{.status.phase}'=Succeeded pod/sees-one-gpu --timeout=180s; \
    kubectl --kubeconfig $kc logs sees-one-gpu; kubectl --kubeconfig $kc get resourceclaims -o yaml"
  rec extended-resource-pod sh -c "kubectl --kubeconfig $kc apply -f hack/gpu-host/specs/extended-resource-pod.yaml && \
    kubectl --kubeconfig $kc wait --for=jsonpath='{.status.phase}'=Succeeded pod/asks-nvidia-com-gpu --timeout=180s; \
    kubectl --kubeconfig $kc logs asks-nvidia-com-gpu; \
    kubectl --kubeconfig $kc get pod asks-nvidia-com-gpu -o jsonpath='{.status.extendedResourceClaimStatus}{\"\\n\"}'; \
    kubectl --kubeconfig $kc get resourceclaims -o wide"
  rec cleanup kubectl --kubeconfig "$kc" delete -f hack/gpu-host/specs/dra-claim-pod.yaml \
    -f hack/gpu-host/specs/extended-resource-pod.yaml --wait=false
}

# After dra: the real GPU's faults through the API. A DeviceTaintRule (NoExecute) evicts the pod holding the
# GPU and keeps a new claim Pending until heal; a removed /dev/nvidiaM is NOT healthy until heal puts it back.
dra_fault() {
  local spec=$SPECS/one-gpu-dra.yaml kc
  kc=$(kubeconfig rig)
  rec holder sh -c "kubectl --kubeconfig $kc apply -f $SPECS/dra-holder-pod.yaml && \
    kubectl --kubeconfig $kc wait --for=condition=Ready pod/holds-gpu --timeout=120s && kubectl --kubeconfig $kc logs holds-gpu"
  rec fault inv fault --config "$spec" --worker 1 --index 0 --effect NoExecute --json
  rec rule kubectl --kubeconfig "$kc" get devicetaintrules -o yaml
  rec evicted sh -c "kubectl --kubeconfig $kc wait --for=delete pod/holds-gpu --timeout=120s; \
    kubectl --kubeconfig $kc get events --field-selector involvedObject.name=holds-gpu"
  rec status-faulted sh -c "python3 -m invoke status --config $spec --json; echo status exit \$?; true"
  rec pending sh -c "kubectl --kubeconfig $kc apply -f $SPECS/dra-waiting-pod.yaml && sleep 15 && \
    kubectl --kubeconfig $kc get pod waits-for-gpu -o wide && kubectl --kubeconfig $kc get resourceclaims"
  rec heal inv heal --config "$spec" --json
  rec after-heal sh -c "kubectl --kubeconfig $kc get devicetaintrules; \
    kubectl --kubeconfig $kc wait --for=jsonpath='{.status.phase}'=Succeeded pod/waits-for-gpu --timeout=120s && \
    kubectl --kubeconfig $kc logs waits-for-gpu"
  rec remove-device inv fault --config "$spec" --worker 1 --index 0 --remove-device --json
  rec removed sh -c "docker exec rig-worker sh -c 'ls -l /dev/nvidia*'; python3 -m invoke status --config $spec --json; echo status exit \$?; true"
  rec heal-device inv heal --config "$spec" --json
  rec restored sh -c "docker exec rig-worker sh -c 'ls -l /dev/nvidia*'"
  rec status-healed inv status --config "$spec" --json
  rec cleanup kubectl --kubeconfig "$kc" delete -f "$SPECS/dra-holder-pod.yaml" -f "$SPECS/dra-waiting-pod.yaml" --wait=false
}

# Several GPUs (the multi-GPU machines): every worker layout the machine's GPUs allow, each made,
# checked at every smoke level and deleted. `scale` times `up` for 1, 2, 4, 8 workers against bare kind.
multi() {
  local n
  n=$(nvidia-smi -L | grep -c '^GPU ')
  [ "$n" -ge 2 ] || { echo "multi: $n GPU(s) here, 2 or more needed"; FAILED=1; return; }
  layout "$n" 1
  [ "$n" -ge 8 ] && layout 2 4
  [ "$n" -ge 4 ] && layout 1 4  # NCCL between 4 GPUs inside one pod
  layout 2 1
}

# layout WORKERS GPUS: preflight, up, status, each worker's device nodes, smoke at every level, down.
layout() {
  local tag=$1x$2 spec=$SPECS/one-gpu.yaml level
  rec "preflight-$tag" inv preflight --config "$spec" --workers "$1" --gpus "$2" --json
  rec "up-$tag" inv up --config "$spec" --workers "$1" --gpus "$2"
  rec "status-$tag" inv status --config "$spec" --json
  rec "worker-devices-$tag" sh -c 'for node in $(docker ps --format "{{.Names}}" | grep "^rig-worker" | sort); do
    echo "== $node"; docker exec "$node" sh -c "ls -l /dev/nvidia[0-9]*"; done'
  for level in visibility compute collective; do
    rec "smoke-$level-$tag" inv smoke --config "$spec" --level "$level" --json
  done
  rec "down-$tag" inv down --config "$spec"
}

scale() {
  local n w
  n=$(nvidia-smi -L | grep -c '^GPU ')
  for w in 1 2 4 8; do
    [ "$w" -le "$n" ] || break
    bare_and_up "$w" "-$w"
    rec "down-$w" inv down --config "$SPECS/one-gpu.yaml"
  done
}

# `docker restart` of the GPU worker: isolation and the plugin come back with `invoke up`.
restart() {
  local spec=$SPECS/one-gpu.yaml
  rec docker-restart docker restart rig-worker
  rec up-dry-run inv up --config "$spec" --dry-run
  rec up inv up --config "$spec"
  rec status inv status --config "$spec" --json
  rec smoke-visibility inv smoke --config "$spec" --json
}

# One GPU worker and one CPU-only worker.
cpu() {
  local spec=$SPECS/gpu-and-cpu.yaml kc
  rec down-before inv down --config "$SPECS/one-gpu.yaml"
  rec up inv up --config "$spec"
  kc=$(kubeconfig rig)
  rec labels kubectl --kubeconfig "$kc" get nodes --show-labels
  rec cpu-worker-devices sh_in rig-worker2 'ls /dev/nvidia[0-9]* 2>&1; true'
  rec gpu-worker-devices sh_in rig-worker 'ls /dev/nvidia[0-9]* 2>&1; true'
  rec plugin-pods kubectl --kubeconfig "$kc" -n kube-system get pods -l name=nvidia-device-plugin-ds -o wide
  rec status inv status --config "$spec" --json
  rec smoke-visibility inv smoke --config "$spec" --json
}

# bare_and_up WORKERS SUFFIX: bare `kind create cluster` with the config kindgpu renders (WORKERS
# workers of 1 GPU), deleted, then `invoke up` of the same.
bare_and_up() {
  local spec=$SPECS/one-gpu.yaml cfg=/tmp/kindgpu-bench-kind.yaml
  rec "config$2" inv config --config "$spec" --workers "$1" --gpus 1
  sed -e 's/^name: rig$/name: rig-bare/' "$(python3 -c "from kindgpu.state import StateDir; print(StateDir.of('rig').kind_config)")" >"$cfg"
  rec "kind-create$2" kind create cluster --config "$cfg" --image "$KINDGPU_NODE_IMAGE" --kubeconfig /tmp/kindgpu-bench-kc
  rec "kind-delete$2" kind delete cluster --name rig-bare
  rec "up$2" inv up --config "$spec" --workers "$1" --gpus 1
}

bench() {
  rec down-before inv down --config "$SPECS/gpu-and-cpu.yaml"
  bare_and_up 1 ""
}

# The rig's PyTorch image (torch-image makes it) into 1, 2, 4 and 8 workers (one GPU worker, the
# others CPU-only): invoke load against kind load docker-image, the disk's dd speed in the same run
# (bench/run.py --cases load; its table in load/benchmarks.latest.md). RIG_LOAD_WORKERS: fewer.
load() {
  rec down-before inv down --config "$SPECS/one-gpu.yaml"
  rec bench env KINDGPU_BENCH_NAME=rig-load python3 bench/run.py --cases load --runs 1 --load-real \
    --load-image "$SMOKE_PYTORCH_IMAGE" --load-workers "${RIG_LOAD_WORKERS:-1,2,4,8}" --out "$RUNS/load/benchmarks.md"
}

down() {
  rec down inv down --config "$SPECS/one-gpu.yaml"
  rec containers docker ps -a --format '{{.Names}} {{.Status}}'
  rec networks docker network ls --format '{{.Name}}'
  rec state sh -c "ls -la $(python3 -c "from kindgpu.state import StateDir; print(StateDir.of('rig').root)") 2>&1; true"
}

for PHASE in "$@"; do
  echo "=== phase $PHASE"
  case "$PHASE" in
    torch-image) rec build torch_image ;;
    layout:*)
      [[ $PHASE =~ ^layout:([1-9][0-9]*)x([1-9][0-9]*)$ ]] || { echo "layout:WORKERSxGPUS, e.g. layout:8x1"; exit 2; }
      layout "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" ;;
    dra-fault) dra_fault ;;
    probe|gpu1|compute|collective|dra|multi|scale|restart|cpu|bench|load|down) "$PHASE" ;;
    *) echo "unknown phase $PHASE"; exit 2 ;;
  esac
  [ -n "${OUT:-}" ] && tar -C "$RUNS" -czf "$OUT/runs.tgz" .
done
exit "$FAILED"
