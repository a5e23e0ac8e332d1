"""Simulated GPUs under DRA from the spec alone: `gpuAllocation: dra` (issue 24, phase 2).

`invoke up` with README's configs/dra.yaml (named per line) makes the cluster and deploys kindgpu's
simulated DRA plugin instead of the device plugin; a second `up` has nothing to do; `status` is healthy
with each worker's ResourceSlice devices equal to its assigned GPUs; `smoke` passes with claims. Then:
one ResourceSlice per GPU worker with exactly that worker's GPUs and NVIDIA's attribute names; a claim
for all of a worker's GPUs, pinned there, whose pod's fake nvidia-smi lists exactly them (and whose CDI
spec goes when the pod goes); a claim for more GPUs than any worker has stays unallocated, its pod
Pending; a CEL selector on productName lands on a worker with that product, and one on a product no
worker has stays Pending; README's "Testing DRA" example runs as written; a pod asking `nvidia.com/gpu: 1`
is served through the DeviceClass's extended-resource mapping; smoke's JUnit names its DRA checks (CEL on
productName, two pods sharing one ResourceClaim); `smoke --kubeconfig` with nothing but a copy of the
kubeconfig (no kind, no Docker) takes the plan from the ResourceSlices, UUIDs and all, and passes with
claims; the pytest plugin's gpu_cluster gets the plan through that kubeconfig and reuses the cluster
from its spec; a restarted worker is healthy after `up`; `down` removes it all.

Runs on the harness's default line (KINDGPU_NODE_IMAGE) and each of KINDGPU_NODE_IMAGES_EXTRA, one
cluster per line (dra-sim-<minor>), passed as --node-image (the environment's image outranks a spec
file's). Leaves the cluster's kind logs and what it saw under out/e2e/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from cluster_helpers import without_kind_or_docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from plugin_args import PLUGIN_ARGS  # noqa: E402

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("KINDGPU_ARTIFACTS", REPO / "out" / "e2e"))
NVIDIA = json.loads((REPO / "tests" / "testdata" / "dra" / "nvidia-gpu-device.json").read_text())
PRODUCT = "NVIDIA L4"
# README's spec: two GPU workers of unequal size, so "all of a worker's GPUs" differs per worker.
SPEC = REPO / "configs" / "dra.yaml"
IMAGES = [os.environ.get("KINDGPU_NODE_IMAGE", "")] + os.environ.get("KINDGPU_NODE_IMAGES_EXTRA", "").split()


def readme_example():
    """README's "Testing DRA" example: its ResourceClaimTemplate and Pod, as written."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Testing DRA"):]
    section = section[:section.index("\n## ", 1)]
    docs = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    assert [d["kind"] for d in docs] == ["ResourceClaimTemplate", "Pod"], docs
    return docs


def run(*argv, check=True, timeout=900, input=None, env=None):
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, input=input,
                            env={**os.environ, **(env or {})})
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
    from kindgpu import deviceplugin, plan as plans, spec as specs, versions

    kubernetes = versions.image_kubernetes(image)
    name = f"dra-sim-{kubernetes[1]}"
    root = tmp_path_factory.mktemp(name)
    before = os.environ.get("KINDGPU_STATE_DIR")
    os.environ["KINDGPU_STATE_DIR"] = str(root / "state")
    path = root / f"{name}.yaml"
    path.write_text(SPEC.read_text().replace("name: gpu-dra", f"name: {name}"))
    try:
        # The flag, since KINDGPU_NODE_IMAGE (the default line's) would win over the spec's nodeImage.
        up = invoke("up", "--config", str(path), "--node-image", image, timeout=1200)
        doc = specs.resolve(path, flags={"nodeImage": image})
        plan = plans.make_plan(doc, runtime=versions.Runtime(kubernetes=kubernetes))
        it = Cluster(name, plan, kubernetes, ARTIFACTS / name)
        it.path, it.image, it.up = path, image, up.stdout + up.stderr
        it.tag = deviceplugin.image(plan)  # the DRA plugin's: busybox and the fake nvidia-smi at /opt/kindgpu
        yield it
    finally:
        if request.session.testsfailed:
            where = ARTIFACTS / f"{name}-logs"
            run("kind", "export", "logs", where, "--name", name, check=False)
            print(f"kind logs of {name} kept in {where}")
        invoke("down", "--name", name, check=False)
        run("kind", "delete", "cluster", "--name", name, check=False)
        if before is None:
            os.environ.pop("KINDGPU_STATE_DIR", None)
        else:
            os.environ["KINDGPU_STATE_DIR"] = before


def up_again(cluster):
    return invoke("up", "--config", str(cluster.path), "--node-image", cluster.image, timeout=900)


def status(cluster):
    return json.loads(invoke("status", "--name", cluster.name, "--json").stdout)


def assert_healthy_with_slices_as_assigned(cluster):
    doc = status(cluster)
    assert doc["healthy"] and doc["gpuAllocation"] == "dra", doc["problems"]
    rows = {r["node"]: r for r in doc["nodes"]}
    for w in cluster.plan.workers:
        assert rows[w.node]["publishedGPUs"] == sorted(g.uuid for g in w.gpus), rows[w.node]
    return doc


def test_up_deploys_the_dra_plugin_and_a_second_up_has_nothing_to_do(cluster):
    from kindgpu import versions

    assert "device-plugin" in cluster.up, cluster.up
    kind_config = yaml.safe_load((cluster.plan.state.kind_config).read_text())
    assert kind_config.get("featureGates", {}) == versions.dra_feature_gates(cluster.kubernetes)
    daemonsets = {d["metadata"]["name"] for d in cluster.get("daemonsets", "-n", "kube-system")["items"]}
    assert "kindgpu-sim-dra-plugin" in daemonsets and "kindgpu-sim-device-plugin" not in daemonsets, daemonsets
    again = up_again(cluster)
    assert "Nothing to be done." in again.stdout, again.stdout


def test_status_is_healthy_and_each_slice_publishes_the_assigned_gpus(cluster):
    doc = assert_healthy_with_slices_as_assigned(cluster)
    cluster.keep("status.json", json.dumps(doc, indent=2))
    cluster.keep("status.txt", invoke("status", "--name", cluster.name).stdout)


def test_smoke_passes_with_claims(cluster):
    result = invoke("smoke", "--name", cluster.name, timeout=600)
    assert "PASS" in result.stdout, result.stdout
    cluster.keep("smoke.txt", result.stdout)
    junit = ET.parse(cluster.plan.state.junit("visibility")).getroot()
    names = [c.get("name") for c in junit.iter("testcase")]
    assert names and all(n.endswith("[dra]") for n in names), names
    # The DRA checks: a claim selecting the product in CEL, and two pods naming one ResourceClaim (on the
    # worker with the fewest GPUs).
    fewest = min(cluster.plan.gpu_workers, key=lambda w: len(w.gpus)).node
    assert {f"gpu-product-cel[{PRODUCT}][dra]", f"shared-claim[{fewest}][dra]"} <= set(names), names
    assert junit.get("failures") == "0"
    assert cluster.get("resourceclaims", "-n", "kindgpu-smoke")["items"] == []  # the shared claim went too


def test_nodes_run_the_line_and_the_device_class_is_nvidias(cluster):
    from kindgpu import versions

    kubelets = {n["status"]["nodeInfo"]["kubeletVersion"] for n in cluster.get("nodes")["items"]}
    assert kubelets == {versions.show(cluster.kubernetes)}
    cls = cluster.get("deviceclass", "gpu.nvidia.com")
    assert cls["spec"]["selectors"] == [{"cel": {"expression": NVIDIA["deviceClass"]["cel"]}}]
    # The API server keeps the extended-resource mapping only where DRAExtendedResource is on: by default
    # from 1.36; before, with the gate versions.dra_feature_gates names, which the kind config now carries.
    assert cls["spec"].get("extendedResourceName") == "nvidia.com/gpu", cls["spec"]
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


def test_the_readme_example_runs_as_written(cluster):
    template, example = readme_example()
    cluster.apply(template, example)
    name = example["metadata"]["name"]

    def printed():
        pod = cluster.get("pod", name)
        return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    pod = wait_for(f"README's pod {name} to end", printed)
    logs = cluster.kubectl("logs", name).stdout
    assert pod["status"]["phase"] == "Succeeded", logs
    # Only the first worker has two L4s: the pod sees exactly its GPUs.
    first = cluster.plan.gpu_workers[0]
    assert pod["spec"]["nodeName"] == first.node
    assert sorted(re.findall(r"UUID: (GPU-[0-9a-f-]+)", logs)) == sorted(g.uuid for g in first.gpus), logs
    assert all(f"GPU {i}: {PRODUCT} (UUID: " in logs for i in range(2)), logs
    cluster.keep("readme-example.txt", logs)
    cluster.kubectl("delete", "pod", name, "--wait=false")
    cluster.kubectl("delete", "resourceclaimtemplate", template["metadata"]["name"])


def test_a_pod_asking_nvidia_com_gpu_is_served_through_the_device_class_mapping(cluster):
    ask = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "asks-nvidia-gpu", "namespace": "default"},
           "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "show", "image": cluster.tag, "imagePullPolicy": "IfNotPresent",
                                    "command": ["/opt/kindgpu/busybox", "sh", "-c", SHOW],
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
    cluster.apply(ask)
    uuids, visible, logs = shown(cluster, "asks-nvidia-gpu")
    pod = cluster.get("pod", "asks-nvidia-gpu")
    worker = next(w for w in cluster.plan.gpu_workers if w.node == pod["spec"]["nodeName"])
    assert len(uuids) == 1 and uuids[0] in {g.uuid for g in worker.gpus} and visible == uuids[0], logs
    # Served by DRA: the scheduler made a claim for the extended resource.
    mapped = pod["status"].get("extendedResourceClaimStatus")
    assert mapped and mapped["requestMappings"][0]["resourceName"] == "nvidia.com/gpu", pod["status"]
    cluster.keep("extended-resource.yaml", yaml.safe_dump(mapped, sort_keys=False))
    cluster.kubectl("delete", "pod", "asks-nvidia-gpu", "--wait=false")


def test_smoke_through_a_kubeconfig_alone_takes_the_plan_from_the_resource_slices(cluster):
    """As on a cluster kindgpu did not make: no allocatable nvidia.com/gpu, so the gpu.nvidia.com slices say
    which node has which GPUs (UUIDs known), and smoke asks through claims, in the image the nodes hold."""
    given = cluster.plan.state.root.parent / f"{cluster.name}-given.kubeconfig"
    given.write_bytes(Path(cluster.plan.kubeconfig).read_bytes())
    result = invoke("smoke", "--kubeconfig", str(given), "--json", env=without_kind_or_docker(), check=False,
                    timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    cluster.keep("smoke-kubeconfig.json", result.stdout)
    assert doc["ok"], doc["message"]
    rows = {w["node"]: w for w in doc["workers"]}
    assert {n: sorted(w["expected"]) for n, w in rows.items()} == {
        w.node: sorted(g.uuid for g in w.gpus) for w in cluster.plan.gpu_workers}
    assert all(sorted(w["seen"]) == sorted(w["expected"]) for w in rows.values())
    assert doc["limitEnforced"]["ok"] and "cannot allocate all claims" in doc["limitEnforced"]["message"]
    assert {c["check"] for c in doc["checks"] if c["ok"]} == {"product-cel", "shared-claim"}, doc["checks"]
    junit = ET.parse(cluster.plan.state.root.parent / "foreign" / f"kind-{cluster.name}" /
                     "smoke-visibility-junit.xml").getroot()
    assert junit.get("failures") == "0" and all(c.get("name").endswith("[dra]") for c in junit.iter("testcase"))


USER_TESTS = '''
import json, os


def test_the_plan_says_which_worker_has_which_gpus(gpu_cluster):
    expected = json.loads(os.environ["KDRA_EXPECTED"])
    assert [[w.node, [g.uuid for g in w.gpus]] for w in gpu_cluster.plan.gpu_workers] == expected
    assert gpu_cluster.plan.dra and gpu_cluster.simulated


def test_the_client_reaches_the_cluster(gpu_cluster):
    assert len(gpu_cluster.core.list_node().items) == len(gpu_cluster.plan.workers) + 1
'''


def test_the_pytest_plugin_gets_a_dra_cluster_through_its_kubeconfig_and_from_its_spec(cluster, pytester,
                                                                                       monkeypatch):
    """Through the kubeconfig from where Docker cannot see the nodes: the plan from the slices, UUIDs
    known; from the spec: the cluster reused (Nothing to be done), kept."""
    pytester.makepyfile(test_users_suite=USER_TESTS)
    monkeypatch.setenv("KDRA_EXPECTED", json.dumps([[w.node, [g.uuid for g in w.gpus]]
                                                    for w in cluster.plan.gpu_workers]))
    monkeypatch.setenv("KINDGPU_NODE_IMAGE", cluster.image)  # the line's, which outranks the spec file
    with monkeypatch.context() as away:
        away.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        through = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-rs", "--kindgpu-kubeconfig",
                                                str(cluster.plan.kubeconfig), timeout=300)
    through.assert_outcomes(passed=2)
    before = run("docker", "inspect", "-f", "{{.Id}}", f"{cluster.name}-control-plane").stdout
    reused = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-rs", "-s", "--kindgpu-spec", str(cluster.path),
                                           "--kindgpu-keep", timeout=600)
    reused.assert_outcomes(passed=2)
    reused.stdout.fnmatch_lines(["*Nothing to be done.*"])
    assert run("docker", "inspect", "-f", "{{.Id}}", f"{cluster.name}-control-plane").stdout == before


def test_a_restarted_worker_is_healthy_again_after_up(cluster):
    worker = cluster.plan.gpu_workers[0].node
    run("docker", "restart", worker)
    up_again(cluster)
    assert_healthy_with_slices_as_assigned(cluster)
    smoke = invoke("smoke", "--name", cluster.name, timeout=600)
    assert "PASS" in smoke.stdout, smoke.stdout


def test_down_removes_the_cluster(cluster):
    invoke("down", "--name", cluster.name)
    assert cluster.name not in run("kind", "get", "clusters").stdout.split()
