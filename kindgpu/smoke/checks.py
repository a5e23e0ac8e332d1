"""Smoke's checks of what schedulers read: a pod that selects its worker by GPU product, and pods
that share a time-sliced GPU; under DRA, a claim that selects by product in CEL and pods that
share one claim. Pure: a plan, or plain node names, labels and UUIDs, in; checks and verdicts out;
smoke.jobs makes their Jobs (and claims) and smoke.run hands their pods' logs back.

product       one pod per product the GPU workers carry (nvidia.com/gpu.product), placed by that
              label alone, asking 1 GPU: it must land on a worker with that product and see one of
              its GPUs. Skipped when the cluster does not set the feature labels.
shared        with time-slicing, two pods pinned to one worker, asking 1 GPU (a replica) each: each
              must see one of its GPUs; seeing the same one is time-slicing at work, and said so.
product-cel   under DRA, one pod per GPU product (NVIDIA's productName attribute), asking 1 GPU
              through a claim whose CEL selector names that product, with no nodeSelector: it
              must land on a worker with that product and see one of its GPUs of that product.
shared-claim  under DRA, two pods pinned to one worker that reference one ResourceClaim for 1 GPU:
              each must see exactly one GPU of the worker, and both the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import gfd, sharing
from ..payloads import judge
from ..record import DRA_DRIVER  # NVIDIA's DRA driver, whose attributes the CEL selector reads

CHECK_LABEL = "kindgpu.dev/smoke-check"  # on these pods only: the check they belong to
PRODUCT_LABEL = "nvidia.com/gpu.product"


@dataclass
class Check:
    kind: str  # "product", "shared", "product-cel" or "shared-claim"
    subject: str  # the product, or the node
    key: str  # CHECK_LABEL's value: product-1, shared-1, product-cel-1, shared-claim-1, ...
    allowed: dict[str, list[str]]  # node -> the GPU UUIDs a pod of this check may see there
    pods: int  # how many pods it runs
    replicas: int = 1
    jobs: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Its JUnit test case."""
        return f"{NAMES[self.kind]}[{self.subject}]"

    @property
    def by_product(self) -> bool:
        """Placed by its product alone (a node label, or CEL on the claim), not pinned to a worker."""
        return self.kind in ("product", "product-cel")


NAMES = {"product": "gpu-product-selector", "shared": "time-slicing", "product-cel": "gpu-product-cel",
         "shared-claim": "shared-claim"}


def for_plan(plan) -> list[Check]:
    """The checks for this cluster: by product (when it sets the feature labels and records them),
    with time-slicing two pods sharing a worker's GPU, and under DRA by product in CEL and two pods
    sharing one claim."""
    gpu_workers = [(w.node, w.labels, [g.uuid for g in w.gpus]) for w in plan.gpu_workers]
    found = shared_check(gpu_workers, sharing.of(plan.spec).replicas)
    if gfd.enabled(plan.spec):
        found = product_checks(gpu_workers) + found
    if plan.dra:
        found += cel_product_checks([(w.node, w.gpus) for w in plan.gpu_workers])
        found += shared_claim_check(gpu_workers)
    return found


def cel_product_checks(gpu_workers) -> list[Check]:
    """gpu_workers: (node, GPUs) of each GPU worker; a check per product name its GPUs have."""
    allowed: dict[str, dict[str, list[str]]] = {}
    for node, gpus in gpu_workers:
        for gpu in gpus:
            if gpu.name and gpu.uuid:
                allowed.setdefault(gpu.name, {}).setdefault(node, []).append(gpu.uuid)
    return [Check("product-cel", product, f"product-cel-{i}", allowed[product], 1)
            for i, product in enumerate(sorted(allowed), 1)]


def cel_selector(product: str) -> str:
    """The CEL expression that picks a GPU of NVIDIA's driver by its productName attribute."""
    quoted = product.replace("\\", "\\\\").replace("'", "\\'")
    return f"device.attributes['{DRA_DRIVER}'].productName == '{quoted}'"


def shared_claim_check(gpu_workers) -> list[Check]:
    """Two pods referencing one claim for 1 GPU, on the GPU worker with the fewest GPUs (the same worker
    the time-slicing check would take)."""
    if not gpu_workers:
        return []
    node, _, uuids = min(gpu_workers, key=lambda w: len(w[2]))
    return [Check("shared-claim", node, "shared-claim-1", {node: list(uuids)}, 2)]


def product_targets(workers) -> dict[str, list[str]]:
    """{product label: nodes carrying it} of the GPU workers; workers: (node, labels) pairs."""
    targets: dict[str, list[str]] = {}
    for node, labels in workers:
        if labels.get(PRODUCT_LABEL):
            targets.setdefault(labels[PRODUCT_LABEL], []).append(node)
    return targets


def product_checks(gpu_workers) -> list[Check]:
    """gpu_workers: (node, labels, GPU UUIDs) of each GPU worker, as the cluster records them."""
    uuids = {node: list(u) for node, _, u in gpu_workers}
    targets = product_targets((node, labels) for node, labels, _ in gpu_workers)
    return [Check("product", product, f"product-{i}", {n: uuids[n] for n in nodes}, 1)
            for i, (product, nodes) in enumerate(sorted(targets.items()), 1)]


def shared_check(gpu_workers, replicas) -> list[Check]:
    """Two pods on the GPU worker with the fewest GPUs (there they must share, with one)."""
    if replicas <= 1 or not gpu_workers:
        return []
    node, _, uuids = min(gpu_workers, key=lambda w: len(w[2]))
    return [Check("shared", node, "shared-1", {node: list(uuids)}, 2, replicas)]


def verdict(check: Check, pods) -> dict:
    """The row for one check; pods: (node or None, phase, log or None) of each of its pods."""
    problems = []
    if len(pods) != check.pods:
        problems.append(f"{len(pods)} pod(s), expected {check.pods}")
    for node, phase, _ in pods:
        if node is None:
            problems.append("a pod was not scheduled")
        elif node not in check.allowed:
            problems.append(f"a pod landed on {node}, which has no {check.subject}" if check.by_product
                            else f"a pod landed on {node}, not {check.subject}")
        elif phase != "Succeeded":
            problems.append(f"a pod on {node} ended {phase}")
    nodes = sorted({n for n, _, _ in pods if n})
    if problems:
        return row(check, False, f"{check.name}: " + "; ".join(problems), nodes, [])
    if check.kind == "shared":
        v = judge.judge_shared([log or "" for _, _, log in pods], check.allowed[check.subject], check.replicas,
                               check.subject)
        return row(check, v.ok, v.message, nodes, v.details.get("uuids", []))
    if check.kind == "shared-claim":
        v = judge.judge_shared_claim([log or "" for _, _, log in pods], check.allowed[check.subject], check.subject)
        return row(check, v.ok, v.message, nodes, v.details.get("uuids", []))
    (node, _, log), = pods
    v = judge.judge_some_of(log or "", check.allowed[node], 1, node, f"product {check.subject}")
    selecting = f"{PRODUCT_LABEL}={check.subject}" if check.kind == "product" else cel_selector(check.subject)
    message = (f"a pod selecting {selecting} ran on {node} and {v.message.split(': ', 1)[1]}"
               if v.ok else v.message)
    return row(check, v.ok, message, nodes, v.details.get("uuids", []))


def row(check, ok, message, nodes, uuids):
    return {"check": check.kind, "name": check.name, "subject": check.subject, "ok": ok, "message": message,
            "nodes": nodes, "uuids": uuids}
