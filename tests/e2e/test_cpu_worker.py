"""A CPU-only worker (`gpus: []`) next to a GPU worker, on a real kind cluster with simulated GPUs.

The tests run in file order and share one cluster.
"""

import json
import os

import pytest

from cluster_helpers import cluster_from_spec, docker, fake_host_gpu_devices, invoke, kind_kube, node_gpu_minors

CLUSTER = "cpuw"
GPU_NODE, CPU_NODE = f"{CLUSTER}-worker", f"{CLUSTER}-worker2"
SPEC = f"""apiVersion: kindgpu.dev/v1alpha1
kind: GPUCluster
name: {CLUSTER}
simulate: {{gpus: 2}}
workers:
  - gpus: [0, 1]
  - gpus: []
    labels: {{pool: cpu}}
labels: {{team: e2e}}
prepareNodeImage: false  # kind's node image as it is: the plain path stays covered
"""
GPU_LABELS = ("gpu-worker", "gpu-ids", "nvidia.com/gpu.present", "team")


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory, harness, request):
    """The spec, a state dir of its own, every host GPU device node faked, and cleanup whatever happens."""
    with fake_host_gpu_devices(range(8)), \
            cluster_from_spec(tmp_path_factory.mktemp("kindgpu-cpuw"), CLUSTER, SPEC, request) as path:
        yield path


def kube():
    return kind_kube(CLUSTER)


def test_up_makes_a_gpu_worker_and_a_cpu_only_worker(spec_file):
    # Preflight counts the list's 2 GPUs (once taken as 2 workers × 2, more than the host's 2).
    result = invoke("up", "--config", str(spec_file), check=True)
    assert "✓ preflight" in result.stdout
    assert "✓ create" in result.stdout and "✓ device-plugin" in result.stdout
    # From the plain node image, up loads the plugin's image into the workers itself.
    loads = json.loads((spec_file.parent / "state" / CLUSTER / "images-loaded.json").read_text())
    assert loads["create"]["nodeImage"] == os.environ["KINDGPU_NODE_IMAGE"]
    loaded = {node for step in loads.values() for names in step["loaded"].values() for node in names}
    assert GPU_NODE in loaded
    nodes = {n.metadata.name: n for n in kube().nodes()}
    assert nodes[GPU_NODE].status.allocatable.get("nvidia.com/gpu") == "2"
    assert int(nodes[CPU_NODE].status.allocatable.get("nvidia.com/gpu", "0")) == 0


def test_cpu_only_worker_has_no_gpu_labels_and_keeps_its_own(spec_file):
    labels = {n.metadata.name: n.metadata.labels for n in kube().nodes()}
    cpu = labels[CPU_NODE]
    assert [k for k in GPU_LABELS if k in cpu] == []
    assert (cpu["kindgpu.dev/cpu-only"], cpu["pool"], cpu["kindgpu.dev/cluster"]) == ("true", "cpu", CLUSTER)
    gpu = labels[GPU_NODE]
    assert (gpu["gpu-worker"], gpu["gpu-ids"], gpu["team"]) == ("1", "0_1", "e2e")
    assert "kindgpu.dev/cpu-only" not in gpu


def test_no_gpu_device_node_or_device_plugin_is_left_on_the_cpu_only_worker(spec_file):
    assert node_gpu_minors(CPU_NODE) == []  # the host has /dev/nvidia0..7: isolate took them all
    assert node_gpu_minors(GPU_NODE) == [0, 1]
    listed = docker("exec", CPU_NODE, "ls", "-A", "/var/run/kindgpu/sim-gpus")
    assert listed.returncode != 0 or listed.stdout.strip() == ""  # no simulated GPU mounted there
    plugins = kube().core.list_namespaced_pod(
        "kube-system", label_selector="app.kubernetes.io/name=kindgpu-sim-device-plugin").items
    assert [p.spec.node_name for p in plugins] == [GPU_NODE]


def test_status_shows_the_cpu_only_worker_healthy_with_no_gpu(spec_file):
    doc = json.loads(invoke("status", "--name", CLUSTER, "--json", check=True).stdout)
    rows = {r["node"]: r for r in doc["nodes"]}
    assert doc["healthy"]
    cpu = rows[CPU_NODE]
    assert (cpu["role"], cpu["cpuOnly"], cpu["assignedGPUs"], cpu["allocatableGPUs"]) == ("worker", True, 0, 0)
    assert (cpu["gpuWorker"], cpu["plugin"]) == ("", "")
    assert (rows[GPU_NODE]["cpuOnly"], rows[GPU_NODE]["allocatableGPUs"]) == (False, 2)


def test_smoke_sees_no_gpu_on_the_cpu_only_worker_and_its_gpu_ask_stays_pending(spec_file):
    result = invoke("smoke", "--name", CLUSTER, "--json", check=True)
    doc = json.loads(result.stdout)
    assert doc["ok"], doc["message"]
    (gpu,) = doc["workers"]
    assert gpu["node"] == GPU_NODE and sorted(gpu["seen"]) == sorted(gpu["expected"]) and len(gpu["seen"]) == 2
    assert doc["limitEnforced"]["ok"] and doc["limitEnforced"]["asked"] == 3
    (cpu,) = doc["cpuWorkers"]
    assert (cpu["node"], cpu["seen"], cpu["ok"]) == (CPU_NODE, [], True)
    assert "sees no GPU" in cpu["message"]
    ask = cpu["gpuAsk"]
    assert ask["ok"] and ask["asked"] == 1 and "nvidia.com/gpu" in ask["message"]
    junit = (spec_file.parent / "state" / CLUSTER / "smoke-visibility-junit.xml").read_text()
    assert 'failures="0"' in junit
    assert f"cpu-only-sees-no-gpu[{CPU_NODE}]" in junit and f"cpu-only-gpu-ask-pending[{CPU_NODE}]" in junit
    assert not kube().batch.list_namespaced_job("kindgpu-smoke").items  # cleaned up


def test_second_up_has_nothing_to_do_and_down_removes_it(spec_file):
    assert "Nothing to be done." in invoke("up", "--config", str(spec_file), check=True).stdout
    invoke("down", "--name", CLUSTER, check=True)
    assert docker("ps", "-aq", "--filter", f"label=io.x-k8s.kind.cluster={CLUSTER}").stdout.strip() == ""
    assert not (spec_file.parent / "state" / CLUSTER).exists()
