"""GPU clusters kindgpu did not make, reached through a kubeconfig alone (`invoke smoke --kubeconfig`,
the pytest plugin's `--kindgpu-kubeconfig`).

Such a cluster records no plan, so its nodes make one: every node offering allocatable
`nvidia.com/gpu` (and not cordoned) is a GPU worker with that many GPUs, their UUIDs unknown. The
smoke levels then pass when each node's pod sees exactly that many GPUs, no UUID shows on two
nodes, and a pod asking one GPU more than the largest node has stays Pending; the collective level
spans all of those nodes.

A cluster whose GPUs come through DRA offers no allocatable `nvidia.com/gpu`: there the
ResourceSlices of NVIDIA's driver (`gpu.nvidia.com`, kindgpu's simulated one alike) make the plan,
a worker per node publishing GPUs, with the UUIDs, product names and memory the slices give, and
smoke asks through claims (plan.dra).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from . import names, record, slices, spec as specs
from .errors import KindgpuError, Problem, SpecError
from .inventory import GPU, Inventory
from .kube import Kube, attempt, short_reason
from .payloads import levels
from .plan import Plan, WorkerPlan
from .simgpu.build import IMAGE_REPO
from .simgpu.manifest import APP_NAME
from .smoke import run_and_report
from .state import foreign_dir

PRODUCT_LABEL = "nvidia.com/gpu.product"  # set by NVIDIA's GPU feature discovery, where it runs
MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB, same


def kube_for(path):
    """The API of the cluster in `path` (its current context); an error with the fix if unusable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SpecError([Problem("--kubeconfig", f"{path} does not exist", "give the kubeconfig of the cluster")],
                        title="invalid task flags")
    return Kube(path)


def cluster_label(path):
    """A name for the cluster in `path`: its current context, made fit for a file name."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        doc = {}
    context = str(doc.get("current-context") or Path(path).stem) if isinstance(doc, dict) else Path(path).stem
    label = re.sub(r"[^a-z0-9]+", "-", context.lower()).strip("-")[:49].strip("-")
    return label or "cluster"


def offering_nodes(kube, offer):
    """(Nodes with an offer, as (name, offer(node), labels) in name order; cordoned ones' names)."""
    offering, cordoned = [], []
    for node in sorted(kube.nodes(), key=lambda n: n.metadata.name):
        offered = offer(node)
        if not offered:
            continue
        if node.spec.unschedulable:
            cordoned.append(node.metadata.name)
            continue
        offering.append((node.metadata.name, offered, dict(node.metadata.labels or {})))
    return offering, cordoned


def gpu_nodes(kube):
    """(Nodes offering nvidia.com/gpu, as (name, count, labels) in name order; cordoned ones' names)."""
    return offering_nodes(kube, lambda node: int((node.status.allocatable or {}).get(names.GPU_RESOURCE, "0") or 0))


def observed_plan(kube, name, doc=None):
    """The plan a cluster's nodes make: a worker per node offering GPUs, numbered in name order,
    with as many GPUs as it offers (UUID "": not known). Where no node offers any, the GPUs its
    nodes publish through DRA (dra_nodes), UUIDs known. doc: a spec for the smoke images."""
    offering, cordoned = gpu_nodes(kube)
    dra = not offering
    if dra:
        offering, cordoned_dra = dra_nodes(kube)
        cordoned = sorted({*cordoned, *cordoned_dra})
    if not offering:
        raise KindgpuError(
            f"no node of cluster {name} offers allocatable {names.GPU_RESOURCE} or publishes GPUs in a "
            f"ResourceSlice of {record.DRA_DRIVER}" + (f" (cordoned: {', '.join(cordoned)})" if cordoned else ""),
            "install NVIDIA's device plugin, GPU operator or DRA driver there, and wait for the nodes to offer "
            "their GPUs (kubectl get nodes -o custom-columns=NODE:.metadata.name,GPU:.status.allocatable."
            "nvidia\\.com/gpu; kubectl get resourceslices)")
    doc = dict(doc or specs.defaults())
    # kindgpu set none of its labels there, and smoke's check by GPU product judges recorded UUIDs.
    # What a node offers is its count already, time-sliced or not: nothing to multiply by replicas.
    doc.update(name=name, simulate=None, workers=len(offering), gpuFeatureLabels=False,
               devicePlugin={k: v for k, v in (doc.get("devicePlugin") or {}).items() if k != "sharing"})
    doc.pop("gpuAllocation", None)  # what the cluster does, not what a spec given says
    if dra:
        doc["gpuAllocation"] = "dra"  # smoke asks through claims
    workers, every_gpu = [], []
    for number, (node, gpus, labels) in enumerate(offering, start=1):
        if isinstance(gpus, int):  # a count: the device plugin's allocatable
            memory = labels.get(MEMORY_LABEL, "")
            gpus = tuple(GPU(index=i, uuid="", name=labels.get(PRODUCT_LABEL, ""), pci_bus_id="",
                             memory_mib=int(memory) if memory.isdigit() else 0, minor=None) for i in range(gpus))
        every_gpu += gpus
        workers.append(WorkerPlan(number, node, tuple(gpus), labels))
    return Plan(doc, "", Inventory(tuple(every_gpu)), tuple(workers))


def resource_slices(kube) -> list[dict]:
    """The cluster's ResourceSlices; none where the API has no resource.k8s.io/v1 (before Kubernetes
    1.34) or this kubeconfig may not list them."""
    from kubernetes.client.exceptions import ApiException

    try:
        return kube.resource_slices()
    except ApiException as err:
        if err.status in (401, 403, 404):
            return []
        raise


def dra_nodes(kube):
    """(Nodes publishing GPUs through DRA, as (name, GPUs, labels) in name order; cordoned ones' names)."""
    published = slices.dra_gpus(resource_slices(kube))
    return offering_nodes(kube, lambda node: published.get(node.metadata.name))


def forget(path, note) -> None:
    """`invoke down --kubeconfig FILE`: what kindgpu kept about that cluster goes; the cluster is not touched."""
    kept = foreign_dir(cluster_label(path))
    if kept.exists():
        shutil.rmtree(kept)
        note(f"removed {kept} (smoke reports); the cluster itself is not kindgpu's to delete")
    else:
        note(f"nothing kept for the cluster in {path}")


def reach(path, call):
    """call() against the cluster in `path`; one that does not answer is an error naming the file,
    with the command that checks it."""
    value, err = attempt(call, own_cluster=False)
    if err is not None:
        raise KindgpuError(f"cannot reach the cluster in {path}: {short_reason(err)}",
                           f"check it with `kubectl --kubeconfig {path} get nodes`") from err
    return value


def readable_record(kube):
    """The cluster's kindgpu record, if it has one this kubeconfig may read (None otherwise)."""
    from kubernetes.client.exceptions import ApiException

    try:
        return record.read(kube)
    except ApiException as err:
        if err.status in (401, 403):
            return None  # not allowed to read kube-system: no record for us
        raise


def simulated_plugin_image(kube, recorded) -> str:
    """The image kindgpu's simulated plugin runs in the cluster: every GPU node holds it, and its fake
    nvidia-smi answers the visibility level. Under DRA no such plugin runs, but its image is in every
    node (kindgpu's node image holds it for smoke, deviceplugin.smoke_image): the nodes list it."""
    if not recorded.dra:
        daemonset = kube.apps.read_namespaced_daemon_set(APP_NAME, names.SYSTEM_NAMESPACE)
        return daemonset.spec.template.spec.containers[0].image
    workers = {w.node for w in recorded.gpu_workers}
    for node in kube.nodes():
        if node.metadata.name not in workers:
            continue
        for held in node.status.images or []:
            # containerd names it in full: docker.io/kindgpu/sim-device-plugin:<tag>
            found = [n for n in held.names or [] if n.rsplit(":", 1)[0].removeprefix("docker.io/") == IMAGE_REPO]
            if found:
                return found[0]
    raise KindgpuError(f"no GPU node of {recorded.name} holds kindgpu's simulated smoke image ({IMAGE_REPO})",
                       "run `invoke up` for the cluster on the host that made it, or name an image: --image IMAGE")


def smoke(path, level, reporter, *, doc=None, image=None, junit=None, as_json=False, timeout=300):
    """`invoke smoke --kubeconfig FILE`: the level's Jobs on every node that offers GPUs. A kindgpu
    cluster of simulated GPUs (its record says so) runs what simulated GPUs can, in the image its nodes hold."""
    kube = kube_for(path)
    name = cluster_label(path)
    plan, recorded = reach(path, lambda: (observed_plan(kube, name, doc), readable_record(kube)))
    if recorded is not None and recorded.simulated:
        found = levels.problem(level, simulated=True)
        if found:
            raise SpecError([Problem("--level", *found)], title="invalid task flags")
        image = image or reach(path, lambda: simulated_plugin_image(kube, recorded))
    junit = junit or foreign_dir(name) / f"smoke-{level}-junit.xml"
    return run_and_report(kube, plan, level, reporter, junit, as_json=as_json, timeout=timeout,
                          foreign=True, image=image)
