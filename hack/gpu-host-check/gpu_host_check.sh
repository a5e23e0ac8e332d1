#!/bin/sh
# The command run on the GPU machine (2 GPUs, no Docker) to prove the smoke payloads:
#   sh hack/gpu-host-check/gpu_host_check.sh
# Keeps NVLink multicast off, runs gpu_host_check.py (every level, emulated workers),
# leaves run.log, summary.json, host.txt and payload-logs.tar.gz in $OUT (default ./out),
# and prints the summary. Exit status: that of gpu_host_check.py.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
export KINDGPU_CHECK_DEADLINE_S="${KINDGPU_CHECK_DEADLINE_S:-450}"
OUT="${OUT:-$(pwd)/out}"
export OUT
mkdir -p "$OUT"
python3 "$(dirname "$0")/gpu_host_check.py" "$@" > "$OUT/run.log" 2>&1
rc=$?
sed -n '/^SUMMARY/,$p' "$OUT/run.log"
exit $rc
