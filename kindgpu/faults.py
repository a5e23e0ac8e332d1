"""Faults kindgpu injects on purpose (`invoke fault`, `invoke heal`), so a scheduler or operator can be
tested against a GPU that fails or a worker that dies, and the cluster put back afterwards.

A fault is recorded in the cluster (ConfigMap kube-system/kindgpu-faults), so `status` and a later
`heal` know it and `down` needs nothing special. A new kind of fault goes here: how it is made, how it
is undone, what status says about it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from . import names, versions
from .errors import KindgpuError, Problem, SpecError
from .kube import Kube
from .nodes import Node
from .plan import Plan
from .simdra import manifest as simdra
from .simgpu.manifest import SHARE_DIR

FAULTS_CONFIGMAP = "kindgpu-faults"
# The simulated plugin's own (simgpu/plugin.py runs alone in its image; a test keeps the two equal).
FAULTS_FILE = "faults.json"
APPLICATION_XIDS = frozenset({13, 31, 43, 45, 68, 109})
DEFAULT_XID = 79  # "GPU has fallen off the bus": NVIDIA's plugin marks the GPU unhealthy
GPU = "gpu"
WORKER_DOWN = "worker-down"
DEVICE_REMOVED = "device-removed"
NODE_FAULTS = f"{SHARE_DIR}/{FAULTS_FILE}"  # what the simulated plugin reads, in each worker
# What the fake nvidia-smi reads in a pod (`nvidia-smi -q`): "<uuid> <xid>" per line, in a directory of the
# share directory both simulated plugins mount into GPU containers (simgpu/plugin.py, simdra/gpus.go).
HEALTH_DIR = "health"
XIDS_FILE = "xids"

# Under DRA a GPU fault is a device taint, as NVIDIA's DRA driver makes one (kubernetes-sigs/dra-driver-nvidia-gpu,
# main after v25.12.0, cmd/gpu-kubelet-plugin/device_health.go: TaintKeyXID, the Xid as value, NoSchedule, or
# None for the application Xids it skips). v25.12.0 itself has no taints: it leaves an unhealthy GPU out of its
# ResourceSlice (driver.go), as the simulated plugin does where Kubernetes has no device taints (versions).
TAINT_KEY = simdra.DRIVER + "/xid"
EFFECTS = ("NoSchedule", "NoExecute", "None")
# Fault.via, under DRA: how the fault shows.
VIA_SLICE = "slice"  # the simulated DRA plugin taints the device in its ResourceSlice
VIA_WITHDRAWN = "withdrawn"  # the simulated DRA plugin leaves the device out of its ResourceSlice
VIA_RULE = "rule"  # a DeviceTaintRule kindgpu makes through the API, real GPUs or simulated
RULE_PLURAL = "devicetaintrules"
RULE_PREFIX = "kindgpu-fault-"
NVIDIA_MAJOR = 195  # /dev/nvidia[0-9]* and /dev/nvidiactl: the NVIDIA driver's fixed character major


@dataclass(frozen=True)
class Fault:
    kind: str  # GPU, WORKER_DOWN or DEVICE_REMOVED
    node: str
    gpu: str = ""  # the GPU's UUID (GPU and device faults)
    xid: int = 0
    via: str = ""  # under DRA: VIA_SLICE, VIA_WITHDRAWN or VIA_RULE; "" under the device plugin
    effect: str = ""  # the taint's effect (VIA_SLICE, VIA_RULE)
    device: str = ""  # the GPU's DRA device name (gpu-<minor>), or the device node a DEVICE_REMOVED took away
    rule: str = ""  # VIA_RULE: the DeviceTaintRule's name and apiVersion
    api: str = ""
    devnum: str = ""  # DEVICE_REMOVED: "<major>:<minor>:<octal mode>" of the node taken away, to make it again

    def describe(self) -> str:
        if self.kind == DEVICE_REMOVED:
            return (f"{self.device} (GPU {self.gpu}) removed from {self.node} by `invoke fault --remove-device`: "
                    "pods given that GPU cannot start" + (", and the plugin no longer offers it"
                                                           if simulated_device(self.device) else ""))
        if self.kind == WORKER_DOWN:
            return f"{self.node} stopped by `invoke fault --down`"
        taint = f"{TAINT_KEY}={self.xid}:{self.effect}"
        if self.via == VIA_SLICE:
            effect = f"tainted {taint} in its ResourceSlice"
        elif self.via == VIA_WITHDRAWN:
            effect = ("left out of its ResourceSlice (no device taints on this Kubernetes)" if fatal(self.xid)
                      else "an application error, left in its ResourceSlice")
        elif self.via == VIA_RULE:
            effect = f"DeviceTaintRule {self.rule} ({taint})"
        else:
            effect = "Unhealthy" if fatal(self.xid) else "an application error, left healthy"
        where = f" ({self.device})" if self.device else ""
        return f"GPU {self.gpu}{where} on {self.node}: Xid {self.xid} ({effect}), injected by `invoke fault`"


def fatal(xid: int) -> bool:
    """Whether NVIDIA's plugins take the GPU out of service for this Xid (not an application's)."""
    return xid not in APPLICATION_XIDS


def simulated_device(path: str) -> bool:
    """A simulated GPU's "device node": its file in the sim-gpus directory, which the plugins read."""
    return path.startswith(names.SIM_DEVICE_MOUNT_DIR + "/")


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


def withheld(faults: list[Fault]) -> dict[str, set[str]]:
    """{node: UUIDs} of the GPUs a node's plugin offers (or publishes) no more because of a fault: kubelet
    offers that many fewer, a ResourceSlice lists them no more. A tainted device is still published."""
    found: dict[str, set[str]] = {}
    for f in faults:
        if ((f.kind == GPU and f.via in ("", VIA_WITHDRAWN) and fatal(f.xid))
                or (f.kind == DEVICE_REMOVED and simulated_device(f.device))):
            found.setdefault(f.node, set()).add(f.gpu)
    return found


def unhealthy_per_node(faults: list[Fault]) -> dict[str, int]:
    """How many GPUs each node has made Unhealthy (or unseen) on purpose: kubelet offers that many fewer."""
    return {node: len(uuids) for node, uuids in withheld(faults).items()}


def out_of_service(faults: list[Fault]) -> list[Fault]:
    """The faults that keep a GPU from new pods: what smoke cannot pass with."""
    return [f for f in faults if f.kind == DEVICE_REMOVED
            or (f.kind == GPU and (f.effect in ("NoSchedule", "NoExecute") if f.via in (VIA_SLICE, VIA_RULE)
                                   else fatal(f.xid)))]


def dra_device_name(gpu) -> str:
    """NVIDIA's name of a full GPU in a ResourceSlice, gpu-<minor>, as the simulated DRA plugin publishes it."""
    return f"gpu-{simdra.describe(gpu)['minor']}"


def find_gpu(plan: Plan, *, gpu: str | None, worker: int | None, index: int | None):
    """The (worker, GPU) named by UUID or by worker (numbered as kind names them: 1 is <name>-worker, as
    `invoke load --workers`) and the GPU's place on it (0-based)."""
    if gpu:
        found = [(w, g) for w in plan.gpu_workers for g in w.gpus if g.uuid == gpu]
        if not found:
            raise SpecError([Problem("--gpu", f"{gpu} is not a GPU of {plan.name}",
                                     "`invoke status --json` lists each worker's UUIDs")], title="invalid task flags")
        return found[0]
    workers = {n: w for n, w in enumerate(plan.workers, start=1)}
    if worker not in workers or index is None or not 0 <= index < len(workers[worker].gpus):
        raise SpecError([Problem("--worker/--index", f"no GPU {index} on worker {worker} of {plan.name}",
                                 f"its workers: {', '.join(f'{n} ({len(w.gpus)} GPUs)' for n, w in workers.items())}; "
                                 "--index counts from 0")], title="invalid task flags")
    return workers[worker], workers[worker].gpus[index]


def gpu_fault(plan: Plan, *, gpu: str | None, worker: int | None, index: int | None, xid: int,
              effect: str | None = None, via_api: bool = False, kubernetes: versions.Version | None = None) -> Fault:
    """The GPU fault asked for. Under the device plugin: an Xid the simulated plugin reports (simulated GPUs
    only). Under DRA: a device taint, made by the simulated DRA plugin in its ResourceSlice (simulated GPUs,
    Kubernetes with device taints; before, it leaves the GPU out) or, on real GPUs or with via_api, a
    DeviceTaintRule (rule_api then says which apiVersion, or refuses). effect: the taint's; NVIDIA's when None.
    kubernetes: the cluster's version (the API server's), when the plan does not know it."""
    kubernetes = kubernetes or plan.runtime.kubernetes
    if not plan.dra and (effect or via_api):
        raise SpecError([Problem("--effect/--via-api", "device taints are DRA's: this cluster's GPUs go through "
                                 "the device plugin", "leave them out (the GPU is reported Unhealthy), or make "
                                 "the cluster with gpuAllocation: dra")], title="invalid task flags")
    if not plan.simulated and not plan.dra:
        raise KindgpuError(
            "a real GPU cannot be made to fail safely, and under the device plugin NVIDIA's plugin reads a GPU's "
            "health from the driver alone, so kindgpu cannot mark it Unhealthy",
            "on real GPUs, `invoke fault --worker N --down` stops a worker; GPU faults need simulated GPUs "
            "(--simulate N) or gpuAllocation: dra (a DeviceTaintRule)")
    owner, found = find_gpu(plan, gpu=gpu, worker=worker, index=index)
    if not plan.dra:
        return Fault(GPU, owner.node, found.uuid, xid)
    effect = effect or ("NoSchedule" if fatal(xid) else "None")
    device = dra_device_name(found)
    if via_api or not plan.simulated:
        return Fault(GPU, owner.node, found.uuid, xid, VIA_RULE, effect, device, rule_name(owner.node, device))
    if versions.dra_device_taints(kubernetes):
        return Fault(GPU, owner.node, found.uuid, xid, VIA_SLICE, effect, device)
    if effect != ("NoSchedule" if fatal(xid) else "None"):
        raise SpecError([Problem("--effect", f"Kubernetes {versions.show(kubernetes)} has no device "
                                 f"taints in ResourceSlices (gate {versions.DRA_DEVICE_TAINTS_GATE}, on from "
                                 f"1.{versions.DRA_DEVICE_TAINTS_ON_FROM[1]}): the failed GPU is left out of its "
                                 "slice, as NVIDIA's driver v25.12.0 does, with no effect to choose",
                                 "leave --effect out, or use a node image of 1.36 or newer")],
                        title="invalid task flags")
    return Fault(GPU, owner.node, found.uuid, xid, VIA_WITHDRAWN, "", device)


def rule_name(node: str, device: str) -> str:
    return f"{RULE_PREFIX}{node}-{device}"


def rule_api(served: list[str], kubernetes: versions.Version | None) -> str:
    """The apiVersion to make a DeviceTaintRule in: the newest the API server serves; KindgpuError naming
    the version and what turns it on when it serves none (before 1.37, by default)."""
    for api in ("resource.k8s.io/v1", "resource.k8s.io/v1beta2", "resource.k8s.io/v1alpha3"):
        if api in served:
            return api
    raise KindgpuError(f"the API server serves no DeviceTaintRule: "
                       f"{versions.device_taint_rules_off(kubernetes) or 'resource.k8s.io/v1 is turned off'}",
                       "use a node image of Kubernetes 1.37 or newer; on simulated GPUs, leave --via-api out "
                       "(the simulated DRA plugin taints the device in its ResourceSlice)")


def taint_rule(fault: Fault, api: str, cluster: str) -> dict:
    """The DeviceTaintRule of a GPU fault: NVIDIA's taint on one device, selected by driver, pool (the node's
    name, as NVIDIA's driver names its pools) and device name. The same in every apiVersion that serves it."""
    return {"apiVersion": api, "kind": "DeviceTaintRule",
            "metadata": {"name": fault.rule, "labels": {**names.MANAGED_BY, names.LABEL_OWNER: cluster}},
            "spec": {"deviceSelector": {"driver": simdra.DRIVER, "pool": fault.node, "device": fault.device},
                     "taint": {"key": TAINT_KEY, "value": str(fault.xid), "effect": fault.effect}}}


def sim_dra_node_file(faults: list[Fault], node: str) -> str:
    """The simulated DRA plugin's faults file for one worker: {uuid: {"xid": N, "effect": E}}; an empty effect
    means: leave the device out of the ResourceSlice (VIA_WITHDRAWN). Faults made by a rule are the API's."""
    return json.dumps({f.gpu: {"xid": f.xid, "effect": f.effect} for f in faults
                       if f.kind == GPU and f.node == node and f.via in (VIA_SLICE, VIA_WITHDRAWN)}, sort_keys=True)


def node_file(faults: list[Fault], node: str) -> str:
    """The simulated device plugin's faults file for one worker: {uuid: xid}."""
    return json.dumps({f.gpu: f.xid for f in faults if f.kind == GPU and f.node == node and not f.via},
                      sort_keys=True)


def xids_file(faults: list[Fault], node: str) -> str:
    """What the fake nvidia-smi shows in `nvidia-smi -q` on one worker: "<uuid> <xid>" per GPU given an Xid
    there by the plugin (not by a DeviceTaintRule, which is the API's alone, as on real GPUs)."""
    return "".join(f"{f.gpu} {f.xid}\n" for f in faults
                   if f.kind == GPU and f.node == node and f.via != VIA_RULE)


def share_dir(dra: bool) -> str:
    """The share directory of the simulated plugin a cluster runs, on each worker."""
    return simdra.SHARE_DIR if dra else SHARE_DIR


def put_node_file(node: Node, faults: list[Fault], *, dra: bool = False) -> None:
    """Write the plugin's faults file and nvidia-smi's Xids, each atomically, inside the worker (UUIDs,
    numbers and effect names only: nothing to quote)."""
    share = share_dir(dra)
    plugin = sim_dra_node_file(faults, node.name) if dra else node_file(faults, node.name)
    health = f"{share}/{HEALTH_DIR}"
    node.sh(f"mkdir -p {health} && printf '%s' '{plugin}' > {share}/{FAULTS_FILE}.new "
            f"&& mv {share}/{FAULTS_FILE}.new {share}/{FAULTS_FILE} "
            f"&& printf '%s' '{xids_file(faults, node.name)}' > {health}/{XIDS_FILE}.new "
            f"&& mv {health}/{XIDS_FILE}.new {health}/{XIDS_FILE}")


def device_path(plan: Plan, gpu) -> str:
    """The device node of a GPU in its worker: /dev/nvidia<minor>, or a simulated GPU's file in sim-gpus
    (a bind mount of /dev/null, which the simulated plugins read as the GPU)."""
    if plan.simulated:
        return f"{names.SIM_DEVICE_MOUNT_DIR}/{gpu.uuid}"
    return f"/dev/nvidia{gpu.minor}"


def remove_device(node: Node, plan: Plan, worker: int | None, index: int | None) -> Fault:
    """Take a GPU's device node away inside its worker, recording what it was (major:minor:mode)."""
    owner, gpu = find_gpu(plan, gpu=None, worker=worker, index=index)
    path = device_path(plan, gpu)
    seen = node.sh(f"stat -c '%t %T %a' {path} 2>/dev/null || true").stdout.split()
    if len(seen) != 3:
        raise KindgpuError(f"{owner.node} has no {path} to remove", "`invoke heal`, or `invoke up`, puts it back")
    devnum = f"{int(seen[0], 16)}:{int(seen[1], 16)}:{seen[2]}"
    # A simulated GPU's file is a bind mount: unmount it, then remove the mount point.
    node.sh(f"{'umount ' + path + ' && ' if plan.simulated else ''}rm -f {path}")
    return Fault(DEVICE_REMOVED, owner.node, gpu.uuid, device=path, devnum=devnum)


def restore_device(node: Node, path: str, devnum: str = "") -> None:
    """Put a device node back: a simulated GPU's file as Docker made it (a bind mount of /dev/null), a real
    GPU's with mknod, as it was recorded or as the NVIDIA driver makes them (195:<minor>, mode 666)."""
    if simulated_device(path):
        node.sh(f"[ -e {path} ] || touch {path}; mountpoint -q {path} || mount --bind /dev/null {path}")
        return
    major, minor, mode = (devnum.split(":") if devnum
                          else (str(NVIDIA_MAJOR), path.removeprefix("/dev/nvidia"), "666"))
    node.sh(f"[ -c {path} ] || mknod -m {mode} {path} c {major} {minor}")
