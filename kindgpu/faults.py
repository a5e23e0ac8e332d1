"""Faults kindgpu injects on purpose (`invoke fault`, `invoke heal`), so a scheduler or operator can be
tested against a GPU that fails or a worker that dies, and the cluster put back afterwards.

A fault is recorded in the cluster (ConfigMap kube-system/kindgpu-faults), so `status` and a later
`heal` know it and `down` needs nothing special. A new kind of fault goes here: how it is made, how it
is undone, what status says about it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from . import names
from .errors import KindgpuError, Problem, SpecError
from .kube import Kube
from .nodes import Node
from .plan import Plan
from .simgpu.manifest import SHARE_DIR

FAULTS_CONFIGMAP = "kindgpu-faults"
# The simulated plugin's own (simgpu/plugin.py runs alone in its image; a test keeps the two equal).
FAULTS_FILE = "faults.json"
APPLICATION_XIDS = frozenset({13, 31, 43, 45, 68, 109})
DEFAULT_XID = 79  # "GPU has fallen off the bus": NVIDIA's plugin marks the GPU unhealthy
GPU = "gpu"
WORKER_DOWN = "worker-down"
NODE_FAULTS = f"{SHARE_DIR}/{FAULTS_FILE}"  # what the simulated plugin reads, in each worker


@dataclass(frozen=True)
class Fault:
    kind: str  # GPU or WORKER_DOWN
    node: str
    gpu: str = ""  # the GPU's UUID (GPU faults)
    xid: int = 0

    def describe(self) -> str:
        if self.kind == GPU:
            effect = "Unhealthy" if self.xid not in APPLICATION_XIDS else "an application error, left healthy"
            return f"GPU {self.gpu} on {self.node}: Xid {self.xid} ({effect}), injected by `invoke fault`"
        return f"{self.node} stopped by `invoke fault --down`"


def read(kube: Kube) -> list[Fault]:
    """The faults kindgpu injected in this cluster and has not healed."""
    cm = kube.get("ConfigMap", FAULTS_CONFIGMAP, names.SYSTEM_NAMESPACE)
    if cm is None:
        return []
    return [Fault(**f) for f in json.loads((cm.data or {}).get("faults.json") or "[]")]


def write(kube: Kube, cluster: str, faults: list[Fault]) -> None:
    if not faults:
        kube.delete("ConfigMap", FAULTS_CONFIGMAP, names.SYSTEM_NAMESPACE)
        return
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": FAULTS_CONFIGMAP, "namespace": names.SYSTEM_NAMESPACE,
                             "labels": {**names.MANAGED_BY, names.LABEL_OWNER: cluster}},
                "data": {"faults.json": json.dumps([asdict(f) for f in faults], indent=1)}})


def unhealthy_per_node(faults: list[Fault]) -> dict[str, int]:
    """How many GPUs each node has made Unhealthy on purpose: kubelet offers that many fewer."""
    counts: dict[str, int] = {}
    for f in faults:
        if f.kind == GPU and f.xid not in APPLICATION_XIDS:
            counts[f.node] = counts.get(f.node, 0) + 1
    return counts


def gpu_fault(plan: Plan, *, gpu: str | None, worker: int | None, index: int | None, xid: int) -> Fault:
    """The fault asked for, named by UUID or by worker (numbered as kind names them: 1 is <name>-worker,
    as `invoke load --workers`) and the GPU's place on it (0-based)."""
    if not plan.simulated:
        raise KindgpuError(
            "a real GPU cannot be made to fail safely, and under the device plugin NVIDIA's plugin reads a GPU's "
            "health from the driver alone, so kindgpu cannot mark it Unhealthy",
            "on real GPUs, `invoke fault --worker N --down` stops a worker; GPU faults need simulated GPUs "
            "(--simulate N)")
    if plan.dra:
        raise KindgpuError("under DRA a failed GPU is a device taint, which `invoke fault` does not make yet",
                           "`invoke fault --worker N --down` stops a worker; GPU faults work under "
                           "gpuAllocation: devicePlugin")
    if gpu:
        found = [(w, g) for w in plan.gpu_workers for g in w.gpus if g.uuid == gpu]
        if not found:
            raise SpecError([Problem("--gpu", f"{gpu} is not a GPU of {plan.name}",
                                     "`invoke status --json` lists each worker's UUIDs")], title="invalid task flags")
        (owner, _), = found
        return Fault(GPU, owner.node, gpu, xid)
    workers = {n: w for n, w in enumerate(plan.workers, start=1)}
    if worker not in workers or index is None or not 0 <= index < len(workers[worker].gpus):
        raise SpecError([Problem("--worker/--index", f"no GPU {index} on worker {worker} of {plan.name}",
                                 f"its workers: {', '.join(f'{n} ({len(w.gpus)} GPUs)' for n, w in workers.items())}; "
                                 "--index counts from 0")], title="invalid task flags")
    owner = workers[worker]
    return Fault(GPU, owner.node, owner.gpus[index].uuid, xid)


def node_file(faults: list[Fault], node: str) -> str:
    """The simulated plugin's faults file for one worker: {uuid: xid}."""
    return json.dumps({f.gpu: f.xid for f in faults if f.kind == GPU and f.node == node}, sort_keys=True)


def put_node_file(node: Node, faults: list[Fault]) -> None:
    """Write it atomically inside the worker (UUIDs and numbers only: nothing to quote)."""
    node.sh(f"mkdir -p {SHARE_DIR} && printf '%s' '{node_file(faults, node.name)}' > {NODE_FAULTS}.new "
            f"&& mv {NODE_FAULTS}.new {NODE_FAULTS}")
