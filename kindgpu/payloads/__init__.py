"""Smoke-test payloads: the scripts the smoke Jobs run in pods, their commands and env.

The smoke task mounts the files of :func:`configmap_data` from a ConfigMap at
:data:`MOUNT_DIR`, runs :func:`command` for the level in one pod per GPU worker
(pinned to it, requesting all its GPUs) with :func:`env` set, then hands each
pod's log to :mod:`kindgpu.payloads.judge`. A CPU-only worker's pod asks for no
GPU and runs the visibility payload with ``expect_none``: it must see none.

Levels (their table, and the one level check: levels.py):

visibility
    ``sh visibility.sh``: nvidia-smi lists the GPUs the pod sees (CUDA base
    image, no python). Pass iff they are exactly the worker's assigned UUIDs.
compute
    ``python3 compute.py``: a float64 matrix product on every visible GPU,
    checked against a CPU reference, timed per GPU (PyTorch image).
collective
    ``python3 collective.py``: launches torchrun (one process per visible GPU);
    all ranks of all workers do an NCCL all-reduce whose sum is checked, and
    report nccl-tests' bus bandwidth. Needs :func:`collective_env` and the
    /dev/shm volume of :func:`pod_volumes`.

Stdlib only: imported by the smoke task on hosts without torch.
"""

from __future__ import annotations

from pathlib import Path

from . import levels
from .levels import COLLECTIVE, COMPUTE, DEFAULT_LEVEL, LEVELS, RESULT_TAG, VISIBILITY, get

__all__ = ["DEFAULT_LEVEL", "LEVELS", "RESULT_TAG"]  # the level table's, for the payloads' callers

MOUNT_DIR = "/kindgpu/payloads"  # where the ConfigMap is mounted in the pod

PAYLOAD_DIR = Path(__file__).resolve().parent
SCRIPTS = {name: level.script for name, level in levels.BY_NAME.items()}

DEFAULT_MASTER_PORT = 29500
DEFAULT_TIMEOUT_S = 300  # collective: NCCL / rendezvous timeout inside the payload

# The NCCL settings that keep ranks in different pods apart. kind nodes are
# containers of one host: they share its boot id (part of NCCL's host hash), so
# without a per-pod NCCL_HOSTID, NCCL could take two pods for one host and try
# P2P (CUDA IPC) or SHM between them, which cannot work across containers.
# With distinct host ids NCCL counts one "node" per pod and connects pods
# through NET/Socket on the pod network; GPUs inside one pod still use P2P/SHM.
# Seen on 2 x H200 (NCCL 2.28.9, two processes of one host, one GPU each):
# without these, "nNodes 1" and P2P/CUMEM between the two "pods"; with them,
# "nNodes 2" and NET/Socket/0 (tests/testdata/payloads/h200x2). Pods in kind
# also differ in hostname, which NCCL hashes too; NCCL_HOSTID keeps the
# separation from depending on that.
NCCL_ISOLATION_KEYS = ("NCCL_HOSTID", "NCCL_SOCKET_IFNAME", "NCCL_IB_DISABLE")

# Always set: NVLink SHARP / multicast is off (it needs all GPUs in one
# container and can wedge shared GPUs); INFO logs let the judge see transports.
NCCL_SAFETY_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "NCCL_MNNVL_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}

SHM_VOLUME_NAME = "kindgpu-dshm"


def payload_files() -> dict[str, Path]:
    """ConfigMap key (file name) -> the payload file in this package, for every level."""
    return {name: PAYLOAD_DIR / name for name in SCRIPTS.values()}


def configmap_data() -> dict[str, str]:
    """The ConfigMap's data: file name -> script text (mounted at MOUNT_DIR)."""
    return {name: path.read_text() for name, path in payload_files().items()}


def script_path(level) -> str:
    """Where the level's script is inside the pod."""
    return f"{MOUNT_DIR}/{get(level).script}"


def command(level) -> list[str]:
    """The container command for a level. ConfigMap files are not executable: run via sh/python3."""
    path = script_path(level)
    return ["sh", path] if path.endswith(".sh") else ["python3", path]


def _base_env(level, worker_name):
    return {
        "KINDGPU_LEVEL": level,
        "KINDGPU_WORKER": str(worker_name),
        "PYTHONUNBUFFERED": "1",
    }


def visibility_env(worker_name, expected_uuids=(), expect_none=False) -> dict[str, str]:
    """Env for level 1. The payload also compares itself with KINDGPU_EXPECTED_UUIDS (exit 1 on mismatch).

    expect_none: a CPU-only worker's pod, given no GPU: the payload passes only if it sees none.
    """
    if expect_none and expected_uuids:
        raise ValueError("a pod expected to see no GPU has no expected UUIDs")
    env = _base_env(VISIBILITY.name, worker_name)
    if expected_uuids:
        env["KINDGPU_EXPECTED_UUIDS"] = ",".join(expected_uuids)
    if expect_none:
        env["KINDGPU_EXPECT_NONE"] = "1"
    return env


def compute_env(worker_name, gpu_count=None, expected_uuids=()) -> dict[str, str]:
    """Env for level 2. With gpu_count the payload fails when it sees another number of GPUs."""
    env = _base_env(COMPUTE.name, worker_name)
    if gpu_count is not None:
        env["KINDGPU_EXPECTED_GPUS"] = str(int(gpu_count))
    if expected_uuids:
        env["KINDGPU_EXPECTED_UUIDS"] = ",".join(expected_uuids)
    return env


def collective_env(
    rank,
    world_size,
    master_addr,
    master_port=DEFAULT_MASTER_PORT,
    worker_name="",
    *,
    gpu_counts=1,
    socket_ifname="eth0",
    timeout_s=DEFAULT_TIMEOUT_S,
    nccl_debug="INFO",
) -> dict[str, str]:
    """Env for level 3 in the pod of worker `rank` (0-based) of `world_size` workers.

    rank/world_size count pods; the payload runs one NCCL rank per GPU of its
    pod, so it needs every pod's GPU count: gpu_counts is a list of them in
    worker-rank order, or one int when all workers have that many.
    master_addr is the DNS name of the rank-0 pod (or its Service), which hosts
    the rendezvous on master_port. socket_ifname is the pod network interface
    (eth0 in kind pods).
    """
    rank, world_size = int(rank), int(world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"collective rank {rank} is outside 0..{world_size - 1}")
    counts = [int(gpu_counts)] * world_size if isinstance(gpu_counts, int) else [int(c) for c in gpu_counts]
    if len(counts) != world_size or min(counts) < 1:
        raise ValueError(f"gpu_counts must give {world_size} positive GPU counts, got {gpu_counts!r}")
    worker_name = str(worker_name or f"worker-{rank}")
    env = _base_env(COLLECTIVE.name, worker_name)
    env.update(
        {
            "MASTER_ADDR": str(master_addr),
            "MASTER_PORT": str(int(master_port)),
            "KINDGPU_NODE_RANK": str(rank),
            "KINDGPU_NNODES": str(world_size),
            "KINDGPU_EXPECTED_GPUS": str(counts[rank]),
            "KINDGPU_RANK_OFFSET": str(sum(counts[:rank])),
            "KINDGPU_WORLD_RANKS": str(sum(counts)),
            "KINDGPU_TIMEOUT_S": str(int(timeout_s)),
            # One NCCL "host" per pod, whatever the hostnames and the shared boot id say.
            "NCCL_HOSTID": f"kindgpu-{worker_name}",
            # Bootstrap and NET/Socket on the pod network, not lo or a bridge.
            "NCCL_SOCKET_IFNAME": socket_ifname,
            # Pods have no RDMA devices: go straight to sockets.
            "NCCL_IB_DISABLE": "1",
            "NCCL_DEBUG": nccl_debug,
        }
    )
    env.update(NCCL_SAFETY_ENV)
    return env


def env(level, *, worker_name, gpu_uuids=(), rank=0, world_size=1, gpu_counts=None, master_addr=None,
        master_port=DEFAULT_MASTER_PORT, socket_ifname="eth0") -> dict[str, str]:
    """The env for any level; gpu_uuids are the worker's assigned GPUs.

    collective also needs rank, world_size, master_addr and gpu_counts (every
    worker's GPU count in rank order; default: all like this one).
    """
    chosen = get(level)
    if chosen is VISIBILITY:
        return visibility_env(worker_name, gpu_uuids)
    if chosen is COMPUTE:
        return compute_env(worker_name, len(gpu_uuids) or None, gpu_uuids)
    if master_addr is None:
        raise ValueError("the collective level needs master_addr (the rank-0 pod's DNS name)")
    if gpu_counts is None:
        gpu_counts = len(gpu_uuids) or 1
    return collective_env(rank, world_size, master_addr, master_port, worker_name,
                          gpu_counts=gpu_counts, socket_ifname=socket_ifname)


def pod_volumes(level) -> tuple[list[dict], list[dict]]:
    """(volumes, volumeMounts) a level's pod needs, as Kubernetes API dicts.

    Every level mounts nothing but the ConfigMap (the Job builder adds that);
    collective adds a memory-backed /dev/shm, since NCCL's SHM transport and
    proxies between GPUs of one pod outgrow the runtime's 64 MiB default.
    """
    if not get(level).shared_memory:
        return [], []
    volumes = [{"name": SHM_VOLUME_NAME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]
    mounts = [{"name": SHM_VOLUME_NAME, "mountPath": "/dev/shm"}]
    return volumes, mounts
