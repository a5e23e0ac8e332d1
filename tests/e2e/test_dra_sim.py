"""Simulated GPUs under DRA on a real kind cluster (issue 24, phase 1).

A kindgpu cluster with simulated GPUs is made as today (`invoke up`, the device plugin beside), then
kindgpu's simulated DRA plugin is built, loaded into the nodes (`invoke load`) and its rendered
manifests applied. Then: one ResourceSlice per GPU worker with exactly that worker's GPUs and NVIDIA's
attribute names; a claim for all of a worker's GPUs, pinned there, whose pod's fake nvidia-smi lists
exactly them (and whose CDI spec goes when the pod goes); a claim for more GPUs than any worker has stays
unallocated, its pod Pending; a CEL selector on productName lands on a worker with that product, and one
on a product no worker has stays Pending.

Runs on the harness's default line (KINDGPU_NODE_IMAGE) and each of KINDGPU_NODE_IMAGES_EXTRA, one
cluster per line (dra-sim-<minor>). Leaves the cluster's kind logs and what it saw under out/e2e/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("KINDGPU_ARTIFACTS", REPO / "out" / "e2e"))
NVIDIA = json.loads((REPO / "tests" / "testdata" / "dra" / "nvidia-gpu-device.json").read_text())
PRODUCT = "NVIDIA L4"
# Two GPU workers of unequal size, so "all of a worker's GPUs" differs per worker.
SPEC = """apiVersion: kindgpu.dev/v1alpha1
kind: GPUCluster
name: {name}
nodeImage: {image}
simulate: {{gpus: 3, product: {product}, memoryMiB: 23034}}
workers:
  - gpus: [0, 1]
  - gpus: [2]
"""
IMAGES = [os.environ.get("KINDGPU_NODE_IMAGE", "")] + os.environ.get("KINDGPU_NODE_IMAGES_EXTRA", "").split()


def run(*argv, check=True, timeout=900, input=None):
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def invoke(*args, **kwargs):
    result = run(sys.executable, "-m", "invoke", *args, **kwargs)
    print(f"$ invoke {' '.join(args)}\n{result.stdout}{result.stderr}")
    return result


class Cluster:
    def __init__(self, name, plan, kubernetes, where):
        self.name, self.plan, self.kubernetes, self.where = name, plan, kubernetes, where

    def kubectl(self, *args, check=True, input=None):
        return run("kubectl", "--kubeconfig", self.plan.kubeconfig, *args, check=check, input=input, timeout=120)

    def get(self, *args):
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, *objects):
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))

    def keep(self, name, text):
        self.where.mkdir(parents=True, exist_ok=True)
        (self.where / name).write_text(text)
        print(f"--- {name}\n{text}")


def wait_for(what, probe, timeout=180, every=2):
    """probe() until it returns something true; fail with what it saw last."""
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        seen = probe()
        if seen:
            return seen
        time.sleep(every)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module", params=IMAGES, ids=lambda image: image.split(":")[-1][:7] or "none")
def cluster(request, harness, tmp_path_factory):
    image = request.param
    if not image:
        pytest.fail("KINDGPU_NODE_IMAGE is not set: source /var/cache/kindgpu-harness/env first")
    from kindgpu import plan as plans, spec as specs, versions
    from kindgpu.simdra import build, manifest

    kubernetes = versions.image_kubernetes(image)
    name = f"dra-sim-{kubernetes[1]}"
    root = tmp_path_factory.mktemp(name)
    before = os.environ.get("KINDGPU_STATE_DIR")
    os.environ["KINDGPU_STATE_DIR"] = str(root / "state")
    path = root / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, image=image, product=json.dumps(PRODUCT)))
    try:
        # The flag, since KINDGPU_NODE_IMAGE (the default line's) would win over the spec's nodeImage.
        invoke("up", "--config", str(path), "--node-image", image, timeout=1200)
        import docker

        tag = build.ensure_image(docker.from_env())
        invoke("load", tag, "--config", str(path))
        doc = specs.resolve(path, flags={"nodeImage": image})
        plan = plans.make_plan(doc, runtime=versions.Runtime(kubernetes=kubernetes))
        it = Cluster(name, plan, kubernetes, ARTIFACTS / name)
        gpus = [g for w in plan.gpu_workers for g in w.gpus]
        it.apply(*manifest.sim_dra_objects(tag, gpus, kubernetes))
        it.tag = tag
        yield it
    finally:
        if request.session.testsfailed:
            where = ARTIFACTS / f"{name}-logs"
            run("kind", "export", "logs", where, "--name", name, check=False)
            print(f"kind logs of {name} kept in {where}")
        invoke("down", "--config", str(path), check=False)
        run("kind", "delete", "cluster", "--name", name, check=False)
        if before is None:
            os.environ.pop("KINDGPU_STATE_DIR", None)
        else:
            os.environ["KINDGPU_STATE_DIR"] = before


def test_nodes_run_the_line_and_the_device_class_is_nvidias(cluster):
    from kindgpu import versions

    kubelets = {n["status"]["nodeInfo"]["kubeletVersion"] for n in cluster.get("nodes")["items"]}
    assert kubelets == {versions.show(cluster.kubernetes)}
    cls = cluster.get("deviceclass", "gpu.nvidia.com")
    assert cls["spec"]["selectors"] == [{"cel": {"expression": NVIDIA["deviceClass"]["cel"]}}]
    # The API server keeps the extended-resource mapping only where DRAExtendedResource is on: by default
    # from 1.36; before, only with the gates versions.dra_feature_gates names (not in the kind config yet).
    kept = cls["spec"].get("extendedResourceName")
    assert kept == (None if versions.dra_feature_gates(cluster.kubernetes) else "nvidia.com/gpu"), cls["spec"]
    cluster.keep("deviceclass.yaml", yaml.safe_dump(cls["spec"], sort_keys=False))


def slices(cluster):
    return [s for s in cluster.get("resourceslices")["items"] if s["spec"]["driver"] == "gpu.nvidia.com"]


def test_one_resource_slice_per_gpu_worker_with_exactly_its_gpus(cluster):
    workers = {w.node: w for w in cluster.plan.gpu_workers}

    def from_every_worker():
        found = slices(cluster)
        return found if {s["spec"]["nodeName"] for s in found} == set(workers) else None

    published = wait_for("a ResourceSlice from every GPU worker", from_every_worker)
    assert len(published) == len(workers), [s["metadata"]["name"] for s in published]
    names = set(NVIDIA["attributes"])
    for piece in published:
        node = piece["spec"]["nodeName"]
        assert piece["spec"]["pool"]["name"] == node
        devices = piece["spec"]["devices"]
        assert sorted(d["attributes"]["uuid"]["string"] for d in devices) == sorted(g.uuid for g in workers[node].gpus)
        assert sorted(d["name"] for d in devices) == sorted(f"gpu-{g.minor}" for g in workers[node].gpus)
        for device in devices:
            assert set(device["attributes"]) == names, device
            assert device["attributes"]["productName"]["string"] == PRODUCT
            assert device["attributes"]["type"]["string"] == "gpu"
            assert device["capacity"]["memory"]["value"] == "23034Mi"
    first = next(s for s in published if s["spec"]["nodeName"] == cluster.plan.gpu_workers[0].node)
    cluster.keep("resourceslice.yaml", cluster.kubectl("get", "resourceslice", first["metadata"]["name"],
                                                       "-o", "yaml").stdout)


def claim_template(name, count, cel=None):
    exactly = {"deviceClassName": "gpu.nvidia.com", "allocationMode": "ExactCount", "count": count}
    if cel:
        exactly["selectors"] = [{"cel": {"expression": cel}}]
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"spec": {"devices": {"requests": [{"name": "gpus", "exactly": exactly}]}}}}


SHOW = ("/usr/bin/nvidia-smi --query-gpu=uuid --format=csv,noheader; echo VISIBLE=$NVIDIA_VISIBLE_DEVICES; "
        "echo DONE; exec /opt/kindgpu/busybox sleep 3600")


def pod(cluster, name, template, node=None):
    spec = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "resourceClaims": [{"name": "gpus", "resourceClaimTemplateName": template}],
        "containers": [{"name": "show", "image": cluster.tag, "imagePullPolicy": "IfNotPresent",
                        "command": ["/opt/kindgpu/busybox", "sh", "-c", SHOW],
                        "resources": {"claims": [{"name": "gpus"}]}}],
    }
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def shown(cluster, name):
    """What the pod's fake nvidia-smi printed (its UUIDs) and its NVIDIA_VISIBLE_DEVICES, once it has."""
    def printed():
        logs = cluster.kubectl("logs", name, check=False).stdout
        return logs if "DONE" in logs else None

    logs = wait_for(f"pod {name} to print its GPUs", printed)
    lines = logs.splitlines()
    visible = next(line for line in lines if line.startswith("VISIBLE="))
    return [line for line in lines if line.startswith("GPU-")], visible.removeprefix("VISIBLE="), logs


def claim_of(cluster, pod_name):
    status = cluster.get("pod", pod_name)["status"]
    claim = status["resourceClaimStatuses"][0]["resourceClaimName"]
    return cluster.get("resourceclaim", claim)


def unschedulable(cluster, name):
    def why():
        conditions = cluster.get("pod", name)["status"].get("conditions", [])
        scheduled = next((c for c in conditions if c["type"] == "PodScheduled"), None)
        return scheduled if scheduled and scheduled.get("reason") == "Unschedulable" else None

    return wait_for(f"the scheduler to find pod {name} unschedulable", why, timeout=120)


def cdi_specs(node):
    out = run("docker", "exec", node, "sh", "-c", "ls /var/run/cdi; true").stdout.split()
    return [f for f in out if f.startswith("k8s.gpu.nvidia.com-claim_")]


def test_a_claim_for_all_of_a_workers_gpus_shows_exactly_them(cluster):
    for i, worker in enumerate(cluster.plan.gpu_workers):
        template, name = f"all-gpus-{i}", f"all-gpus-{i}"
        cluster.apply(claim_template(template, len(worker.gpus)), pod(cluster, name, template, worker.node))
        uuids, visible, logs = shown(cluster, name)
        assert sorted(uuids) == sorted(g.uuid for g in worker.gpus), logs
        assert sorted(visible.split(",")) == sorted(g.uuid for g in worker.gpus), logs
        claim = claim_of(cluster, name)
        results = claim["status"]["allocation"]["devices"]["results"]
        assert {(r["driver"], r["pool"]) for r in results} == {("gpu.nvidia.com", worker.node)}
        assert sorted(r["device"] for r in results) == sorted(f"gpu-{g.minor}" for g in worker.gpus)
        # Prepared through CDI: a spec in the node while the pod runs, gone once the pod is.
        assert any(claim["metadata"]["uid"] in f for f in cdi_specs(worker.node)), cdi_specs(worker.node)
        if i == 0:
            cluster.keep("claim-allocation.yaml", yaml.safe_dump(claim["status"], sort_keys=False))
            cluster.keep("pod-nvidia-smi.txt", logs)
        cluster.kubectl("delete", "pod", name, "--wait=true")
        wait_for(f"the CDI spec of claim {claim['metadata']['uid']} to go",
                 lambda node=worker.node, uid=claim["metadata"]["uid"]: not any(uid in f for f in cdi_specs(node)),
                 timeout=60)


def test_a_claim_for_more_gpus_than_any_worker_has_stays_unallocated(cluster):
    most = max(len(w.gpus) for w in cluster.plan.gpu_workers)
    cluster.apply(claim_template("too-many", most + 1), pod(cluster, "too-many", "too-many"))
    condition = unschedulable(cluster, "too-many")
    assert cluster.get("pod", "too-many")["status"]["phase"] == "Pending"
    claim = claim_of(cluster, "too-many")
    assert "allocation" not in claim.get("status", {}), claim["status"]
    cluster.keep("too-many.txt", json.dumps(condition, indent=2))
    cluster.kubectl("delete", "pod", "too-many", "--wait=false")


def test_a_cel_selector_on_product_name_lands_on_a_worker_with_that_product(cluster):
    cel = f"device.attributes['gpu.nvidia.com'].productName == '{PRODUCT}'"
    cluster.apply(claim_template("by-product", 1, cel), pod(cluster, "by-product", "by-product"))
    uuids, _, logs = shown(cluster, "by-product")
    node = cluster.get("pod", "by-product")["spec"]["nodeName"]
    worker = next(w for w in cluster.plan.gpu_workers if w.node == node)
    assert len(uuids) == 1 and uuids[0] in {g.uuid for g in worker.gpus if g.name == PRODUCT}, logs
    cluster.kubectl("delete", "pod", "by-product", "--wait=false")

    other = "device.attributes['gpu.nvidia.com'].productName == 'NVIDIA H200'"
    cluster.apply(claim_template("no-such-product", 1, other), pod(cluster, "no-such-product", "no-such-product"))
    unschedulable(cluster, "no-such-product")
    cluster.kubectl("delete", "pod", "no-such-product", "--wait=false")
