"""GPU feature labels and time-slicing on a real kind cluster with simulated GPUs (2 workers × 1 GPU).

The tests run in file order and share one cluster: labels as GFD makes them and repaired after a
manual change, smoke's product selector, then time-slicing with 4 replicas changed in place
(allocatable 4 per worker, 8 one-GPU pods Running at once, smoke's shared verdict), and back to 1.
"""

import json
import os
import subprocess
import time

import pytest

from cluster_helpers import cluster_from_spec, docker, invoke, kind_kube

CLUSTER = "kgfd"
WORKERS = (f"{CLUSTER}-worker", f"{CLUSTER}-worker2")
PLUGIN_SELECTOR = "app.kubernetes.io/name=kindgpu-sim-device-plugin"
NAMESPACE = "kgfd-e2e"


def spec_text(replicas=None):
    sharing = f"\ndevicePlugin: {{sharing: {{timeSlicing: {{replicas: {replicas}}}}}}}" if replicas else ""
    return f"""apiVersion: kindgpu.dev/v1alpha1
kind: GPUCluster
name: {CLUSTER}
simulate: {{gpus: 2}}
workers: 2
gpusPerWorker: 1{sharing}
"""


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory, harness, request):
    """The spec, a state dir of its own, and cleanup whatever happens."""
    with cluster_from_spec(tmp_path_factory.mktemp("kindgpu-kgfd"), CLUSTER, spec_text(), request) as path:
        yield path


def kube():
    return kind_kube(CLUSTER)


def labels():
    return {n.metadata.name: n.metadata.labels for n in kube().nodes()}


def allocatable():
    return {n.metadata.name: n.status.allocatable.get("nvidia.com/gpu") for n in kube().nodes()
            if n.metadata.name in WORKERS}


def plugin_pods():
    return {p.metadata.name: p.spec.node_name for p in kube().core.list_namespaced_pod(
        "kube-system", label_selector=PLUGIN_SELECTOR).items}


def kubectl(*args, check=True):
    kubeconfig = os.path.join(os.environ["KINDGPU_STATE_DIR"], CLUSTER, "kubeconfig")
    result = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], capture_output=True, text=True)
    assert not check or result.returncode == 0, result.stderr
    return result


def expect_gfd_labels(replicas, product):
    for node in WORKERS:
        have = labels()[node]
        assert {k: have.get(k) for k in (
            "nvidia.com/gpu.count", "nvidia.com/gpu.product", "nvidia.com/gpu.memory", "nvidia.com/gpu.family",
            "nvidia.com/gpu.compute.major", "nvidia.com/gpu.compute.minor", "nvidia.com/gpu.replicas",
            "nvidia.com/gpu.sharing-strategy", "nvidia.com/mig.capable")} == {
            "nvidia.com/gpu.count": "1", "nvidia.com/gpu.product": product, "nvidia.com/gpu.memory": "143771",
            "nvidia.com/gpu.family": "hopper", "nvidia.com/gpu.compute.major": "9",
            "nvidia.com/gpu.compute.minor": "0", "nvidia.com/gpu.replicas": str(replicas),
            "nvidia.com/gpu.sharing-strategy": "time-slicing" if replicas > 1 else "none",
            "nvidia.com/mig.capable": "true"}, node


def test_up_puts_gfds_labels_on_every_gpu_worker(spec_file):
    result = invoke("up", "--config", str(spec_file), check=True)
    assert "✓ create" in result.stdout and "✓ device-plugin" in result.stdout
    assert allocatable() == {w: "1" for w in WORKERS}
    expect_gfd_labels(1, "NVIDIA-H200")
    control_plane = labels()[f"{CLUSTER}-control-plane"]
    assert not [k for k in control_plane if k.startswith(("nvidia.com/gpu.", "nvidia.com/cuda."))]


def test_a_label_changed_by_hand_is_put_back_by_the_next_up(spec_file):
    kubectl("label", "--overwrite", "node", WORKERS[1], "nvidia.com/gpu.product=tampered",
            "nvidia.com/gpu.family-")
    assert labels()[WORKERS[1]]["nvidia.com/gpu.product"] == "tampered"
    result = invoke("up", "--config", str(spec_file), check=True)
    assert "✓ label" in result.stdout and "nvidia.com/gpu.family" in result.stdout
    expect_gfd_labels(1, "NVIDIA-H200")
    assert "Nothing to be done." in invoke("up", "--config", str(spec_file), check=True).stdout


def test_smoke_places_a_pod_by_gpu_product(spec_file):
    doc = json.loads(invoke("smoke", "--name", CLUSTER, "--json", check=True).stdout)
    assert doc["ok"], doc["message"]
    (check,) = doc["checks"]
    assert (check["name"], check["ok"]) == ("gpu-product-selector[NVIDIA-H200]", True)
    assert check["nodes"][0] in WORKERS and "nvidia.com/gpu.product=NVIDIA-H200" in check["message"]
    assert doc["sharing"] == "not shared" and doc["limitEnforced"]["asked"] == 2


def test_time_slicing_with_4_replicas_is_set_in_place(spec_file):
    before = plugin_pods()
    spec_file.write_text(spec_text(replicas=4))
    result = invoke("up", "--config", str(spec_file), check=True)
    assert f"changing {CLUSTER} in place" in result.stderr + result.stdout
    assert "✓ device-plugin" in result.stdout and "✓ label" in result.stdout
    assert "✓ create" not in result.stdout or "records another spec" in result.stdout  # re-recorded, not made
    assert allocatable() == {w: "4" for w in WORKERS}
    assert not set(plugin_pods()) & set(before)  # the plugin rolled
    expect_gfd_labels(4, "NVIDIA-H200-SHARED")
    assert "Nothing to be done." in invoke("up", "--config", str(spec_file), check=True).stdout
    status = json.loads(invoke("status", "--name", CLUSTER, "--json", check=True).stdout)
    assert status["healthy"] and status["sharing"].startswith("time-slicing, 4 replicas")


def sleeper(i):
    from kindgpu.simgpu.build import image_tag

    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"share-{i}", "namespace": NAMESPACE},
            "spec": {"containers": [{"name": "c", "image": image_tag(), "imagePullPolicy": "Never",
                                     "command": ["sleep", "600"],
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                     "terminationGracePeriodSeconds": 0}}


def test_eight_one_gpu_pods_run_at_once_on_two_gpus(spec_file):
    from kubernetes.utils import create_from_dict

    k = kube()
    k.core.create_namespace({"metadata": {"name": NAMESPACE}})
    try:
        for i in range(9):
            create_from_dict(k.api_client, sleeper(i), namespace=NAMESPACE)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            pods = k.core.list_namespaced_pod(NAMESPACE).items
            running = [p for p in pods if p.status.phase == "Running"]
            if len(running) == 8:
                break
            time.sleep(1)
        assert len(running) == 8, [(p.metadata.name, p.status.phase) for p in pods]
        per_node = {w: sum(p.spec.node_name == w for p in running) for w in WORKERS}
        assert per_node == {w: 4 for w in WORKERS}
        (pending,) = [p for p in pods if p.status.phase != "Running"]  # 2 GPUs × 4: a ninth waits
        assert pending.status.phase == "Pending"
        # Every pod on a worker sees that worker's one GPU: the same UUID, shared.
        seen = {}
        for p in running:
            out = kubectl("-n", NAMESPACE, "exec", p.metadata.name, "--", "nvidia-smi", "--query-gpu=uuid",
                          "--format=csv,noheader").stdout.split()
            seen.setdefault(p.spec.node_name, set()).update(out)
        assert all(len(uuids) == 1 for uuids in seen.values()) and len(set().union(*seen.values())) == 2
    finally:
        k.core.delete_namespace(NAMESPACE, grace_period_seconds=0)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and kubectl("get", "namespace", NAMESPACE, check=False).returncode == 0:
            time.sleep(1)


def test_smoke_with_time_slicing_passes_and_says_the_gpu_was_shared(spec_file):
    doc = json.loads(invoke("smoke", "--name", CLUSTER, "--json", check=True).stdout)
    assert doc["ok"], doc["message"]
    assert doc["limitEnforced"]["ok"] and doc["limitEnforced"]["asked"] == 5  # 1 GPU × 4 replicas, plus 1
    assert all(len(w["seen"]) == 1 and w["seen"] == w["expected"] for w in doc["workers"])
    checks = {c["check"]: c for c in doc["checks"]}
    assert checks["product"]["ok"] and checks["product"]["subject"] == "NVIDIA-H200-SHARED"
    shared = checks["shared"]
    assert shared["ok"] and "2 pods shared" in shared["message"] and len(set(shared["uuids"])) == 1
    assert "2 pods shared" in doc["message"]


def test_replicas_back_to_1_rolls_the_plugin_and_offers_1(spec_file):
    before = plugin_pods()
    spec_file.write_text(spec_text(replicas=1))
    result = invoke("up", "--config", str(spec_file), check=True)
    assert "✓ device-plugin" in result.stdout
    assert allocatable() == {w: "1" for w in WORKERS}
    assert not set(plugin_pods()) & set(before)
    expect_gfd_labels(1, "NVIDIA-H200")
    assert json.loads(invoke("status", "--name", CLUSTER, "--json", check=True).stdout)["healthy"]


def test_down_removes_it(spec_file):
    invoke("down", "--name", CLUSTER, check=True)
    assert docker("ps", "-aq", "--filter", f"label=io.x-k8s.kind.cluster={CLUSTER}").stdout.strip() == ""
