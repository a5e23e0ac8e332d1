"""What a live cluster says about itself: the plan it was made from, which nodes are Ready, and
how many GPUs each worker offers.

The plan is recorded in the cluster, in the kube-system ConfigMap kindgpu-spec, when `up` has
made it. `status` and `smoke` read it back from there as a Plan.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from . import names, render
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
                     "labels": {"app.kubernetes.io/managed-by": "kindgpu", names.LABEL_OWNER: plan.name}},
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


def ready_condition(node: V1Node) -> V1NodeCondition | None:
    """The Ready condition of a Kubernetes Node, or None before its kubelet reports one."""
    return next((c for c in node.status.conditions or [] if c.type == "Ready"), None)


def node_readiness(kube: Kube, plan: Plan, since: dict[str, datetime] | None = None) -> set[str]:
    """The plan's nodes that are not Ready yet.

    A node restarted at `since[name]` must report again after that time. Until its kubelet posts
    a fresh status, the API still shows the Ready of the node from before the restart.
    """
    expected = {plan.control_plane, *(w.node for w in plan.workers)}
    ready = set()
    for node in kube.nodes():
        cond = ready_condition(node)
        restarted = since and node.metadata.name in since
        if cond and cond.status == "True" and (not restarted or cond.last_heartbeat_time >= since[node.metadata.name]):
            ready.add(node.metadata.name)
    return expected - ready


def allocatable_gpus(kube: Kube, plan: Plan) -> dict[str, int]:
    """{node: allocatable nvidia.com/gpu} for the plan's workers."""
    found = {n.metadata.name: n for n in kube.nodes()}
    return {w.node: int((found[w.node].status.allocatable or {}).get(names.GPU_RESOURCE, "0"))
            if w.node in found else 0 for w in plan.workers}


def gpu_shortfall(kube: Kube, plan: Plan) -> list[str]:
    """A sentence for each worker that does not offer exactly its GPUs (a CPU-only worker must offer 0)."""
    have = allocatable_gpus(kube, plan)
    return [f"{w.node} offers {have[w.node]} of {len(w.gpus)} GPUs" for w in plan.workers
            if have[w.node] != len(w.gpus)]
