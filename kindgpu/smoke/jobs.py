"""The smoke run's Kubernetes objects, as plain dicts: the level's Job per worker, the CPU-only
workers' Jobs, the over-ask pod, the checks' Jobs, the payloads' ConfigMap and the collective's
Service; under `gpuAllocation: dra` the ResourceClaimTemplates the pods ask GPUs through instead of
`nvidia.com/gpu` limits (at every level: compute and collective too), and the checks' claims (a
template selecting by productName in CEL, one ResourceClaim two pods share). Pure: a plan in,
manifests out (smoke.run creates them)."""

from __future__ import annotations

from .. import deviceplugin, names, payloads, sharing
from ..payloads import levels
from .checks import CHECK_LABEL, PRODUCT_LABEL, cel_selector

NAMESPACE = "kindgpu-smoke"
SERVICE = "smoke"  # headless: collective pods find rank 0 at w0.smoke.<namespace>
RUN_LABEL = "kindgpu.dev/smoke-run"
WORKER_LABEL = "kindgpu.dev/worker"  # the worker a smoke pod is for: its gpu-worker number, or cpuN
PENDING_LABEL = "kindgpu.dev/expect-pending"  # pods that must never be scheduled
VISIBILITY = levels.VISIBILITY.name  # what CPU-only workers and the checks' pods run, at every level
DEVICE_CLASS = "gpu.nvidia.com"  # simdra.manifest.DEVICE_CLASS: NVIDIA's DeviceClass for full GPUs
CLAIM = "gpus"  # the pod's name for its claim, which its container uses


def image_for(plan, level):
    """The level's image; for simulated GPUs their plugin's, whose fake nvidia-smi answers like the real one."""
    return levels.image(plan.spec, level, deviceplugin.smoke_image(plan) if plan.simulated else None)


def claim_template_name(run_id, key):
    """The ResourceClaimTemplate a DRA smoke pod asks its GPUs through: per GPU worker (w1, ...), the
    over-ask's (overask), one GPU's (one: CPU-only workers' asks and the checks) and a check's own
    (product-cel-N); also the shared-claim check's ResourceClaim (shared-claim-1)."""
    return f"smoke-{run_id}-{key}"


def claim_spec(count, cel=None):
    """A claim's spec: exactly `count` GPUs of NVIDIA's DeviceClass, those a CEL expression selects."""
    exactly = {"deviceClassName": DEVICE_CLASS, "allocationMode": "ExactCount", "count": count}
    if cel:
        exactly["selectors"] = [{"cel": {"expression": cel}}]
    return {"devices": {"requests": [{"name": CLAIM, "exactly": exactly}]}}


def claim_template(run_id, key, count, cel=None):
    """A ResourceClaimTemplate for exactly `count` GPUs of NVIDIA's DeviceClass."""
    labels = {RUN_LABEL: run_id, **names.MANAGED_BY}
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": claim_template_name(run_id, key), "namespace": NAMESPACE, "labels": labels},
            "spec": {"spec": claim_spec(count, cel)}}


def resource_claim(run_id, key, count):
    """A ResourceClaim (not a template): every pod that names it shares what it was allocated."""
    labels = {RUN_LABEL: run_id, **names.MANAGED_BY}
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": claim_template_name(run_id, key), "namespace": NAMESPACE, "labels": labels},
            "spec": claim_spec(count)}


def claim_templates(run_id, plan):
    """Under DRA, every template the run's pods ask through (created before them): all of each GPU
    worker's GPUs, one GPU more than the largest worker has, and one GPU."""
    _, asked = overask_worker(plan)
    return [*(claim_template(run_id, f"w{w.number}", len(w.gpus)) for w in plan.gpu_workers),
            claim_template(run_id, "overask", asked), claim_template(run_id, "one", 1)]


def job(run_id, level, image, worker, rank, gpu_counts, gpus=None, extra_env=None, time_slicing=None, dra=False):
    """One Job pinned to one GPU worker, asking for its GPUs (or `gpus` of them).

    gpu_counts: every GPU worker's GPU count in rank order (the collective level numbers its ranks);
    extra_env: the spec's smoke.env, added after kindgpu's own variables; time_slicing: the
    cluster's (sharing.TimeSlicing): all its GPUs are then GPUs × replicas of its resource.
    """
    ts = time_slicing or sharing.TimeSlicing()
    count = ts.allocatable(len(worker.gpus)) if gpus is None else gpus
    uuids = [g.uuid for g in worker.gpus if g.uuid]  # none known on a cluster kindgpu did not make
    env = payloads.env(level, worker_name=worker.node, gpu_uuids=uuids, rank=rank,
                       world_size=len(gpu_counts), gpu_counts=gpu_counts,
                       master_addr=f"w0.{SERVICE}.{NAMESPACE}.svc.cluster.local")
    env.update(extra_env or {})
    name = f"smoke-{run_id}-w{worker.number}" + ("-overask" if gpus is not None else "")
    claim = None
    if dra:  # the worker's template asks all its GPUs; the over-ask's one more than the largest worker has
        claim = claim_template_name(run_id, "overask" if gpus is not None else f"w{worker.number}")
    return pinned_job(run_id, name, level, image, worker.node, str(worker.number), env, count,
                      hostname=f"w{rank}", pending=gpus is not None, resource=ts.resource, claim=claim)


def cpu_key(position):
    """What names a CPU-only worker's smoke pods: cpu1, cpu2, ... (it has no gpu-worker number)."""
    return f"cpu{position}"


def cpu_workers(workers) -> dict:
    """{cpu_key: worker} of the CPU-only workers, in plan order. WorkerPlan.cpu_only is told by the
    GPUs, so older records (no cpuOnly) read the same."""
    return {cpu_key(i): w for i, w in enumerate((w for w in workers if w.cpu_only), 1)}


def cpu_jobs(run_id, image, worker, key, extra_env=None, resource=names.GPU_RESOURCE, dra=False):
    """A CPU-only worker's two Jobs: the visibility payload with no GPU limit, which must see no
    GPU, and a pod asking for 1 GPU, which must stay Pending (the worker offers none; under DRA
    it publishes none)."""
    env = {**payloads.visibility_env(worker.node, expect_none=True), **(extra_env or {})}
    name = f"smoke-{run_id}-{key}"
    return [pinned_job(run_id, name, VISIBILITY, image, worker.node, key, env, None, hostname=key),
            pinned_job(run_id, f"{name}-gpuask", VISIBILITY, image, worker.node, key, env, 1,
                       hostname=key, pending=True, resource=resource,
                       claim=claim_template_name(run_id, "one") if dra else None)]


def pinned_job(run_id, name, level, image, node, worker_key, env, gpus, *, hostname, pending=False,
               resource=names.GPU_RESOURCE, claim=None, shared_claim=None):
    """A Job whose one pod runs the level's payload on `node`; gpus=None sets no GPU limit.
    claim: under DRA, the ResourceClaimTemplate the pod gets its GPUs through (no limit then);
    shared_claim: the ResourceClaim it gets them through instead, which other pods name too."""
    volumes, mounts = payloads.pod_volumes(level)
    labels = {RUN_LABEL: run_id, **names.MANAGED_BY}
    pod_labels = {**labels, WORKER_LABEL: worker_key, **({PENDING_LABEL: "true"} if pending else {})}
    container = {
        "name": "payload",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": payloads.command(level),
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "volumeMounts": [{"name": "payloads", "mountPath": payloads.MOUNT_DIR}, *mounts],
    }
    pod_claims = {}
    if claim or shared_claim:
        container["resources"] = {"claims": [{"name": CLAIM}]}
        source = {"resourceClaimName": shared_claim} if shared_claim else {"resourceClaimTemplateName": claim}
        pod_claims = {"resourceClaims": [{"name": CLAIM, **source}]}
    elif gpus is not None:
        container["resources"] = {"limits": {resource: str(gpus)}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "hostname": hostname,
                    "subdomain": SERVICE,
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "tolerations": [names.GPU_TOLERATION],
                    # Payloads never call the API server: no token or service variables to make per pod.
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [container],
                    **pod_claims,
                    "volumes": [{"name": "payloads", "configMap": {"name": f"smoke-{run_id}"}}, *volumes],
                },
            },
        },
    }


def check_claims(run_id, check):
    """The claims a check's pods ask through, made before them: under DRA, the product-cel check's
    template (1 GPU of its product, in CEL) and the shared-claim check's one ResourceClaim."""
    if check.kind == "product-cel":
        return [claim_template(run_id, check.key, 1, cel_selector(check.subject))]
    if check.kind == "shared-claim":
        return [resource_claim(run_id, check.key, 1)]
    return []


def check_jobs(run_id, image, check, resource, extra_env=None, dra=False):
    """The Jobs of one checks.Check: a product check's pod placed by the product alone (its label,
    or its claim's CEL), the shared checks' pods pinned to their worker; 1 GPU each (under DRA, a
    claim for one; the shared-claim check's pods all name one ResourceClaim)."""
    env = {**payloads.visibility_env(f"{check.kind}-check"), **(extra_env or {})}
    template = claim_template_name(run_id, check.key if check.kind == "product-cel" else "one") if dra else None
    shared = claim_template_name(run_id, check.key) if check.kind == "shared-claim" else None
    jobs = []
    for i in range(1, check.pods + 1):
        node = None if check.by_product else check.subject
        job = pinned_job(run_id, f"smoke-{run_id}-{check.key}-{i}", VISIBILITY, image, node, check.key, env, 1,
                         hostname=f"{check.key}-{i}", resource=resource, claim=None if shared else template,
                         shared_claim=shared)
        pod = job["spec"]["template"]
        pod["metadata"]["labels"][CHECK_LABEL] = check.key
        if check.kind == "product":
            pod["spec"]["nodeSelector"] = {PRODUCT_LABEL: check.subject}
        elif check.kind == "product-cel":
            del pod["spec"]["nodeSelector"]  # the claim's selector alone places it
        jobs.append(job)
    return jobs


def support_objects(run_id, level):
    """The payloads' ConfigMap; for the collective level, the Service its ranks meet through."""
    labels = {RUN_LABEL: run_id, **names.MANAGED_BY}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": f"smoke-{run_id}", "namespace": NAMESPACE, "labels": labels},
                 "data": payloads.configmap_data()}
    if not levels.get(level).rendezvous:
        return [configmap]
    return [
        configmap,
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels},
         "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                  "selector": {RUN_LABEL: run_id}, "ports": [{"name": "rdzv", "port": 29500}]}},
    ]


def level_jobs(run_id, plan, level, image, cpu_image):
    """Every worker's Job: the level's on each GPU worker (its rank among them), the two of each
    CPU-only worker (in cpu_image), and the over-ask pod. They start at once."""
    ts = sharing.of(plan.spec)  # an older record has none: not shared
    counts = [len(w.gpus) for w in plan.gpu_workers]
    extra_env = plan.spec["smoke"].get("env", {})
    found = [job(run_id, level, image, worker, rank, counts, extra_env=extra_env, time_slicing=ts, dra=plan.dra)
             for rank, worker in enumerate(plan.gpu_workers)]
    found += [j for key, w in cpu_workers(plan.workers).items()
              for j in cpu_jobs(run_id, cpu_image, w, key, extra_env=extra_env, resource=ts.resource, dra=plan.dra)]
    return [*found, overask_job(run_id, plan, image)]


def overask_worker(plan):
    """The worker offering the most, and one GPU more than it offers (× replicas when shared)."""
    worker = max(plan.gpu_workers, key=lambda w: len(w.gpus))
    return worker, sharing.of(plan.spec).allocatable(len(worker.gpus)) + 1


def overask_job(run_id, plan, image):
    worker, asked = overask_worker(plan)
    return job(run_id, VISIBILITY, image, worker, 0, [asked], gpus=asked,
               extra_env=plan.spec["smoke"].get("env", {}), time_slicing=sharing.of(plan.spec), dra=plan.dra)


def pending_checks(plan):
    """(worker key, node, GPUs asked, GPUs it has): the over-ask pod first, then each CPU-only worker's."""
    worker, asked = overask_worker(plan)
    return [(str(worker.number), worker.node, asked, asked - 1),
            *((key, w.node, 1, 0) for key, w in cpu_workers(plan.workers).items())]
