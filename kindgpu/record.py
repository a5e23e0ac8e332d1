"""What a live cluster says about itself: the plan it was made from, which nodes are Ready, and
how many GPUs each worker offers (under DRA: which GPUs its ResourceSlice publishes).

The plan is recorded in the cluster, in the kube-system ConfigMap kindgpu-spec, when `up` has
made it. `status` and `smoke` read it back from there as a Plan.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from . import drift, faults, names, render, sharing, slices
from .errors import KindgpuError
from .kube import Kube
from .plan import Plan

if TYPE_CHECKING:
    from kubernetes.client import V1Node, V1NodeCondition

# yaml is imported where used, as everywhere in kindgpu: listing the tasks must not pay for it.


def spec_configmap(plan: Plan) -> dict:
    """The cluster's record of the spec and plan it was made from."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names.SPEC_CONFIGMAP, "namespace": names.SYSTEM_NAMESPACE,
                     "labels": {**names.MANAGED_BY, names.LABEL_OWNER: plan.name}},
        "data": {"spec.yaml": render.to_yaml(plan.spec), "spec.sha256": plan.spec_hash,
                 "plan.json": plan.to_json()},
    }


def read(kube: Kube) -> Plan | None:
    """The plan the cluster was made from; None before the cluster records it."""
    import yaml

    cm = kube.get("ConfigMap", names.SPEC_CONFIGMAP, names.SYSTEM_NAMESPACE)
    if cm is None:
        return None
    return Plan.from_dict(yaml.safe_load(cm.data["spec.yaml"]), json.loads(cm.data["plan.json"]))


def require(kube: Kube, name: str) -> Plan:
    """The plan the cluster was made from; an error when it records none."""
    plan = read(kube)
    if plan is None:
        raise KindgpuError(f"cluster {name} has no kindgpu record ({names.SYSTEM_NAMESPACE}/"
                           f"{names.SPEC_CONFIGMAP})", "finish it with `invoke up`")
    return plan


NOT_RECORDED = "the cluster does not record its spec yet"


def out_of_date(kube: Kube, plan: Plan) -> str:
    """What the cluster's record says otherwise than `plan` ("" when it matches): none yet, a field
    that `up` changes in place (drift.LIVE_FIELDS), or the labels of a new inventory."""
    import yaml

    cm = kube.get("ConfigMap", names.SPEC_CONFIGMAP, names.SYSTEM_NAMESPACE)
    if cm is None:
        return NOT_RECORDED
    recorded = yaml.safe_load(cm.data["spec.yaml"])
    if recorded != plan.spec:
        return f"the cluster records another spec ({', '.join(drift.changed_fields(recorded, plan.spec))} changed)"
    # plan.json itself: a plan read back (read) keeps only the workers' GPUs of the inventory.
    if json.loads(cm.data["plan.json"]) != json.loads(plan.to_json()):
        return "the cluster records an older plan"
    return ""


def ready_condition(node: V1Node) -> V1NodeCondition | None:
    """The Ready condition of a Kubernetes Node, or None before its kubelet reports one."""
    return next((c for c in node.status.conditions or [] if c.type == "Ready"), None)


def reported_ready(node: V1Node, started: datetime | None = None) -> bool:
    """Ready, as the node's kubelet reported after its container started at `started`. Until a
    restarted node's kubelet posts a fresh status, the API shows the Ready (and the GPUs offered)
    of the node from before the restart."""
    cond = ready_condition(node)
    return bool(cond and cond.status == "True" and (started is None or cond.last_heartbeat_time >= started))


def node_readiness(kube: Kube, plan: Plan, started: dict[str, datetime]) -> set[str]:
    """The plan's nodes that are not Ready yet; started: {name: when its container started}
    (nodes.start_times)."""
    expected = {plan.control_plane, *(w.node for w in plan.workers)}
    return expected - {n.metadata.name for n in kube.nodes() if reported_ready(n, started.get(n.metadata.name))}


def allocatable_gpus(kube: Kube, plan: Plan) -> dict[str, int]:
    """{node: allocatable GPUs} for the plan's workers (nvidia.com/gpu, or the shared resource)."""
    resource = sharing.of(plan.spec).resource
    found = {n.metadata.name: n for n in kube.nodes()}
    return {w.node: int((found[w.node].status.allocatable or {}).get(resource, "0"))
            if w.node in found else 0 for w in plan.workers}


def gpu_shortfall(kube: Kube, plan: Plan) -> list[str]:
    """A sentence for each worker that does not offer exactly its GPUs (× time-slicing replicas; a
    CPU-only worker must offer 0)."""
    have = allocatable_gpus(kube, plan)
    ts = sharing.of(plan.spec)
    shared = f" × {ts.replicas} replicas as {ts.resource}" if ts.shared else ""
    failed = faults.unhealthy_per_node(faults.read(kube))  # made to fail on purpose: offered no more
    return [f"{w.node} offers {have[w.node]} of {len(w.gpus) - failed.get(w.node, 0)}{shared} GPUs"
            + (f" ({failed[w.node]} made Unhealthy by `invoke fault`)" if w.node in failed else "")
            for w in plan.workers if have[w.node] != ts.allocatable(len(w.gpus) - failed.get(w.node, 0))]


DRA_DRIVER = slices.DRA_DRIVER


def published_gpus(found_slices: list[dict], driver: str = DRA_DRIVER) -> dict[str, list[str]]:
    """{node: sorted GPU UUIDs} of the driver's ResourceSlices (API dicts, each pool's newest generation,
    full GPUs only): what each worker publishes through DRA. A GPU without a uuid attribute counts as "?"."""
    return {node: sorted(g.uuid or "?" for g in gpus)
            for node, gpus in slices.dra_gpus(found_slices, driver, keep_empty=True).items()}


def dra_shortfall(kube: Kube, plan: Plan) -> list[str]:
    """A sentence for each worker whose ResourceSlice does not publish exactly its GPUs (the DRA
    counterpart of gpu_shortfall; a CPU-only worker must publish none)."""
    published = published_gpus(kube.resource_slices())
    short = []
    for w in plan.workers:
        want, have = sorted(g.uuid for g in w.gpus), published.get(w.node, [])
        if have != want:
            what = "no ResourceSlice" if w.node not in published else f"{len(have)} GPU(s) {', '.join(have)}"
            short.append(f"{w.node} publishes {what}, {len(want)} assigned" +
                         (f" ({', '.join(want)})" if have and want else ""))
    return short


def allocation_shortfall(kube: Kube, plan: Plan) -> list[str]:
    """What the workers' GPU offer lacks: ResourceSlices under DRA, allocatable GPUs otherwise."""
    return dra_shortfall(kube, plan) if plan.dra else gpu_shortfall(kube, plan)
