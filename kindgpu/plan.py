"""GPU allocation: which of the host's GPUs each worker gets, from a validated spec."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import gfd, kind, names, nodes, sharing, spec as specs, versions
from .errors import KindgpuError, Problem, SpecError
from .inventory import GPU, Inventory, read_host_inventory, simulated_inventory
from .state import StateDir


@dataclass(frozen=True)
class WorkerPlan:
    number: int | None  # 1-based among GPU workers, as in the gpu-worker label; None: CPU-only
    node: str  # the name kind gives this node (config order, CPU-only workers included)
    gpus: tuple[GPU, ...]
    labels: dict

    @property
    def cpu_only(self) -> bool:
        return not self.gpus

    def to_dict(self) -> dict:
        return {
            "number": self.number,
            "node": self.node,
            "cpuOnly": self.cpu_only,
            "gpus": [g.to_dict() for g in self.gpus],
            "labels": dict(self.labels),
        }


@dataclass(frozen=True)
class Plan:
    spec: dict  # normalized spec, defaults filled in
    spec_hash: str
    inventory: Inventory
    workers: tuple[WorkerPlan, ...]
    runtime: versions.Runtime = versions.Runtime()  # the node image's Kubernetes, the host's cgroups

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def simulated(self) -> bool:
        return bool(self.spec.get("simulate"))

    @property
    def dra(self) -> bool:
        """Whether pods get GPUs through DRA (spec `gpuAllocation: dra`) rather than the device plugin."""
        return self.spec.get("gpuAllocation") == "dra"

    @property
    def gpu_workers(self) -> tuple[WorkerPlan, ...]:
        return tuple(w for w in self.workers if not w.cpu_only)

    def warnings(self) -> list[Problem]:
        """What a valid plan asks for at the user's risk, or does because of this host; config and up print them."""
        return specs.warnings(self.spec) + self.runtime.warnings()

    @property
    def control_plane(self) -> str:
        return f"{self.name}-control-plane"

    @property
    def state(self) -> StateDir:
        return StateDir.of(self.name)

    @property
    def kubeconfig(self) -> Path:
        """The cluster's own kubeconfig (kind.own_kubeconfig)."""
        return kind.own_kubeconfig(self.spec)

    def to_dict(self) -> dict:
        """What plan.json holds: in the state directory, in every node, in the cluster's record."""
        return {
            "cluster": self.name,
            "simulated": self.simulated,
            "specHash": self.spec_hash,
            "stateDir": str(self.state.root),
            "kubeconfig": str(self.kubeconfig),
            "hostGPUs": len(self.inventory.gpus),
            "workers": [w.to_dict() for w in self.workers],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, spec: dict, doc: dict) -> Plan:
        """The plan that to_dict() wrote, made with `spec`.

        plan.json keeps only the host's GPU count, so the inventory of a plan read back holds the
        workers' GPUs alone.
        """
        workers = tuple(WorkerPlan(w["number"], w["node"], tuple(GPU(**g) for g in w["gpus"]), dict(w["labels"]))
                        for w in doc["workers"])
        gpus = tuple(sorted({g for w in workers for g in w.gpus}, key=lambda g: g.index))
        return cls(spec, doc["specHash"], Inventory(gpus, simulated=doc["simulated"]), workers)


def kind_node_name(cluster: str, role: str, ordinal: int) -> str:
    """kind names nodes per role in config order: worker, worker2, ..., worker10."""
    return f"{cluster}-{role}{ordinal if ordinal > 1 else ''}"


def load_inventory(doc: dict) -> Inventory:
    """The simulated inventory, or the host's real one."""
    sim = doc.get("simulate")
    if sim:
        return simulated_inventory(sim["gpus"], cluster=doc["name"], product=sim["product"],
                                   memory_mib=sim["memoryMiB"])
    try:
        return read_host_inventory()
    except KindgpuError as err:
        raise KindgpuError(f"cannot read this host's GPUs: {err}",
                           "run `invoke preflight` to see what is missing, or try kindgpu without "
                           "GPUs: --simulate 8") from err


def gpu_label_value(gpus: Iterable[GPU]) -> str:
    """The seed's gpu-ids label, legal: indices joined with '_' (label values cannot hold commas)."""
    return "_".join(str(g.index) for g in gpus)


def make_plan(doc: dict, inventory: Inventory | None = None, runtime: versions.Runtime | None = None) -> Plan:
    """Validate the spec and allocate; SpecError lists every problem.

    What needs no host is checked first (spec.check), so a bad spec exits 2 on any host;
    only a spec that passes is checked against the host's GPUs (nvidia-smi, or simulated).
    inventory and runtime are this host's unless given.
    """
    specs.check(doc)
    return allocate_plan(doc, inventory, runtime)


def allocate_plan(doc: dict, inventory: Inventory | None = None, runtime: versions.Runtime | None = None) -> Plan:
    """The plan of a spec already validated (spec.resolve or spec.check did it): the host's GPUs
    (or `inventory`) given to the workers, on this host's runtime (or `runtime`); SpecError lists
    every problem with them."""
    inventory = inventory or load_inventory(doc)
    runtime = runtime or versions.observe(doc["nodeImage"], nodes.docker_client_or_none())
    assignments, problems = allocate(doc, inventory)
    if not problems and not inventory.simulated:
        problems = held_by_other_clusters(doc["name"], assignments, nodes.docker_client_or_none())
    problems += specs.gpu_allocation_problems(doc, runtime.kubernetes)  # the image itself may say what its tag does not
    if problems:
        raise SpecError(problems)
    workers = doc["workers"]
    worker_specs = workers if isinstance(workers, list) else [{}] * len(assignments)
    plans = []
    gpu_workers = 0
    for ordinal, (gpus, wspec) in enumerate(zip(assignments, worker_specs), start=1):
        node = kind_node_name(doc["name"], "worker", ordinal)
        if not gpus:
            plans.append(WorkerPlan(None, node, (), cpu_worker_labels(doc, wspec)))
            continue
        # gpu-worker counts GPU workers only (1..N, as setup.sh had it); kind's node names
        # count every worker, so a CPU-only worker in between makes them differ.
        gpu_workers += 1
        labels = {**doc.get("labels", {}), **wspec.get("labels", {})}
        labels.update(
            {
                names.LABEL_GPU_WORKER: str(gpu_workers),
                names.LABEL_GPU_IDS: gpu_label_value(gpus),
                names.LABEL_GPU_PRESENT: "true",
                names.LABEL_OWNER: doc["name"],
            }
        )
        if gfd.enabled(doc):
            ts = sharing.of(doc)
            labels.update(gfd.node_labels(gpus, inventory, replicas=ts.replicas, renamed=ts.renamed))
        plans.append(WorkerPlan(gpu_workers, node, tuple(gpus), labels))
    return Plan(doc, specs.spec_hash(doc), inventory, tuple(plans), runtime)


def held_by_other_clusters(cluster: str, assignments: list[list[GPU]], client) -> list[Problem]:
    """A real GPU goes to one kindgpu cluster on a host: two would see (and isolate) the same device."""
    held = nodes.real_gpus_of_other_clusters(client, cluster) if client is not None else {}
    problems = []
    for w, gpus in enumerate(assignments):
        for gpu in gpus:
            if gpu.uuid in held:
                other = held[gpu.uuid]
                problems.append(Problem(
                    f"workers[{w}]", f"GPU {gpu.index} ({gpu.uuid}) is given to kindgpu cluster {other!r} on this host",
                    f"give this cluster other GPUs (workers: [{{gpus: [...]}}]), or `invoke down --name {other}`; "
                    "to share GPUs between pods, time-slice them in one cluster (devicePlugin.sharing)"))
    return problems


def cpu_worker_labels(doc: dict, wspec: dict) -> dict:
    """A CPU-only worker: its own labels, no GPU labels (so no device plugin lands there) and
    not the spec's top-level labels, which are for GPU workers."""
    return {**wspec.get("labels", {}), names.LABEL_CPU_ONLY: "true", names.LABEL_OWNER: doc["name"]}


def allocate(doc: dict, inventory: Inventory) -> tuple[list[list[GPU]], list[Problem]]:
    """Per-worker GPU lists and the problems found: contiguous by default, or explicit refs."""
    host = len(inventory.gpus)
    where = "simulated host" if inventory.simulated else "host"
    if host == 0:
        return [], [Problem("workers", f"this {where} has no GPUs", "try --simulate 8")]
    workers = doc["workers"]
    if isinstance(workers, int):
        per = doc["gpusPerWorker"]
        if workers * per > host:
            return [], [Problem(
                "workers × gpusPerWorker",
                f"{workers} × {per} = {workers * per} GPUs requested, but the {where} has {host}",
                "lower --workers or --gpus" + (", or raise --simulate" if inventory.simulated else ""))]
        ordered = inventory.gpus
        return [list(ordered[i * per:(i + 1) * per]) for i in range(workers)], []

    problems, owner, assignments = [], {}, []
    for w, worker in enumerate(workers):
        gpus = []
        for g, ref in enumerate(worker["gpus"]):
            path = f"workers[{w}].gpus[{g}]"
            gpu = inventory.by_uuid(ref) if isinstance(ref, str) else inventory.by_index(ref)
            if gpu is None:
                known = ", ".join(str(x.index) for x in inventory.gpus)
                kind = "UUID" if isinstance(ref, str) else "index"
                problems.append(Problem(path, f"GPU {kind} {ref} is not on this {where}",
                                        f"use one of the {where}'s GPU indices: {known}"))
                continue
            if gpu.uuid in owner:
                problems.append(Problem(path, f"GPU {gpu.index} ({gpu.uuid}) is already given to "
                                              f"{owner[gpu.uuid]}", "GPU sets must be disjoint"))
                continue
            owner[gpu.uuid] = f"workers[{w}]"
            gpus.append(gpu)
        assignments.append(gpus)
    # Listed GPUs that all exist and are disjoint cannot outnumber the host's.
    return assignments, problems
