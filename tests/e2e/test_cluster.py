"""kindgpu against a real kind cluster with simulated GPUs: the whole life of a cluster.

The tests run in file order and share one cluster (making one takes about a minute on 2 cores).
"""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from cluster_helpers import export_logs, invoke

CLUSTER = "kgpu-e2e"
SPEC = ["--name", CLUSTER, "--workers", "3", "--gpus", "2", "--simulate", "8"]
# Fake GPU device nodes on the host (char major 195, like the NVIDIA driver's): privileged kind
# nodes inherit them, so isolation by device minor runs for real.
FAKE_MINORS = range(8)


def docker(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True)


def node_gpu_minors(node):
    out = docker("exec", node, "sh", "-c", 'for f in /dev/nvidia[0-9]*; do [ -c "$f" ] && echo "$f"; done; true')
    return sorted(int(p.removeprefix("/dev/nvidia")) for p in out.stdout.split())


@pytest.fixture(scope="module")
def state(tmp_path_factory, harness, request):
    """A state dir of its own, fake GPU device nodes on the host, and cleanup whatever happens."""
    root = tmp_path_factory.mktemp("kindgpu-state")
    os.environ["KINDGPU_STATE_DIR"] = str(root)
    made = []
    for minor in FAKE_MINORS:
        path = Path(f"/dev/nvidia{minor}")
        if not path.exists():
            subprocess.run(["mknod", str(path), "c", "195", str(minor)], check=True)
            made.append(path)
    yield root
    if getattr(request.session, "e2e_failed", False):
        export_logs(CLUSTER, "failed")
    for path in made:
        path.unlink(missing_ok=True)
    subprocess.run(["kind", "delete", "cluster", "--name", CLUSTER], capture_output=True)
    subprocess.run(["kind", "delete", "cluster", "--name", "not-kindgpu"], capture_output=True)
    docker("network", "rm", f"kindgpu-{CLUSTER}")


def kube():
    from kindgpu.kube import Kube

    return Kube.for_kind_cluster(CLUSTER)


def allocatable():
    return {n.metadata.name: n.status.allocatable.get("nvidia.com/gpu")
            for n in kube().nodes() if "control-plane" not in n.metadata.name}


def test_preflight_on_this_host_reports_driver_fail_with_fix_and_real_docker(state):
    result = invoke("preflight", "--json", *SPEC[:2])
    doc = json.loads(result.stdout)
    checks = {c["id"]: c for c in doc["checks"]}
    assert checks["nvidia-driver"]["status"] == "FAIL"
    assert "--simulate" in checks["nvidia-driver"]["fix"]
    assert checks["docker"]["status"] == "PASS"  # the real dockerd CI started
    runtime = checks["docker-nvidia-runtime"]
    assert runtime["status"] == "FAIL" and "nvidia-ctk runtime configure" in runtime["fix"]
    assert result.returncode == 1


def test_up_brings_three_workers_with_two_gpus_each(state):
    result = invoke("up", *SPEC, check=True)
    assert "✓ create" in result.stdout and "✓ device-plugin" in result.stdout
    assert allocatable() == {f"{CLUSTER}-worker": "2", f"{CLUSTER}-worker2": "2", f"{CLUSTER}-worker3": "2"}
    kubeconfig = state / CLUSTER / "kubeconfig"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600


def test_nodes_carry_the_spec_labels(state):
    labels = {n.metadata.name: n.metadata.labels for n in kube().nodes()}
    assert labels[f"{CLUSTER}-worker3"]["gpu-worker"] == "3"
    assert labels[f"{CLUSTER}-worker3"]["gpu-ids"] == "4_5"
    assert labels[f"{CLUSTER}-worker2"]["nvidia.com/gpu.present"] == "true"
    assert labels[f"{CLUSTER}-control-plane"]["kindgpu.dev/cluster"] == CLUSTER


def test_each_worker_keeps_only_its_own_gpu_device_nodes(state):
    assert node_gpu_minors(f"{CLUSTER}-worker") == [0, 1]
    assert node_gpu_minors(f"{CLUSTER}-worker2") == [2, 3]
    assert node_gpu_minors(f"{CLUSTER}-worker3") == [4, 5]


def test_smoke_passes_with_six_disjoint_gpus_and_the_limit_enforced(state):
    result = invoke("smoke", "--name", CLUSTER, "--json", check=True)
    doc = json.loads(result.stdout)
    assert doc["ok"]
    seen = [u for w in doc["workers"] for u in w["seen"]]
    assert len(seen) == 6 and len(set(seen)) == 6
    assert all(sorted(w["seen"]) == sorted(w["expected"]) for w in doc["workers"])
    assert doc["limitEnforced"]["ok"] and doc["limitEnforced"]["asked"] == 3
    junit = (state / CLUSTER / "smoke-visibility-junit.xml").read_text()
    assert 'failures="0"' in junit and "gpu-limit-enforced" in junit
    assert not kube().batch.list_namespaced_job("kindgpu-smoke").items  # cleaned up


def test_smoke_puts_its_image_back_into_a_worker_that_lost_it(state):
    """No registry here: only kindgpu can bring the image back, from the host's Docker."""
    from kindgpu.simgpu.build import image_tag

    worker, tag = f"{CLUSTER}-worker2", image_tag().partition(":")[2]
    assert docker("exec", worker, "crictl", "rmi", image_tag()).returncode == 0
    assert tag not in docker("exec", worker, "crictl", "images").stdout
    doc = json.loads(invoke("smoke", "--name", CLUSTER, "--json", check=True).stdout)
    assert doc["ok"]
    assert tag in docker("exec", worker, "crictl", "images").stdout


def test_second_up_has_nothing_to_do(state):
    start = time.monotonic()
    result = invoke("up", *SPEC, check=True)
    assert "Nothing to be done." in result.stdout
    print(f"no-op up took {time.monotonic() - start:.2f}s")


def test_a_step_task_makes_what_it_needs_first_and_nothing_after(state):
    result = invoke("label", *SPEC, check=True)
    assert "Nothing to be done." in result.stdout
    forced = invoke("isolate", *SPEC, "--force", "label", check=True)
    assert "✓ label  forced" in forced.stdout and "– isolate  up to date" in forced.stdout
    assert "device-plugin" not in forced.stdout


def test_status_shows_assigned_equals_allocatable(state):
    result = invoke("status", "--name", CLUSTER, "--json", check=True)
    doc = json.loads(result.stdout)
    workers = [n for n in doc["nodes"] if n["role"] == "worker"]
    assert doc["healthy"] and len(workers) == 3
    assert all(n["assignedGPUs"] == n["allocatableGPUs"] == 2 for n in workers)


def test_real_gpu_plugin_that_cannot_pull_is_diagnosed(state, monkeypatch):
    """NVIDIA's DaemonSet on this cluster: no registry, so the wait must say which pod and why."""
    from kindgpu import plan, spec, steps
    from kindgpu.report import Reporter
    from kindgpu.steps import device_plugin
    from kindgpu.wait import WaitTimeout
    from paths import h200_inventory

    h200 = h200_inventory()
    real = plan.make_plan(spec.resolve(env={}, flags={"name": CLUSTER, "workers": 2, "gpusPerWorker": 1}), h200)
    ctx = steps.Context(real, Reporter())
    monkeypatch.setattr(device_plugin, "PLUGIN_READY_TIMEOUT", 40)
    try:
        with pytest.raises(WaitTimeout) as caught:
            steps.DevicePlugin().run(ctx, progress=lambda text: None)
    finally:
        ctx.kube.apps.delete_namespaced_daemon_set("nvidia-device-plugin-daemonset", "kube-system")
    message = str(caught.value)
    assert "offers 2 of 1 GPUs" in message  # the simulated plugin still offers 2 on each worker
    assert f"on {CLUSTER}-worker" in message and "nvidia-device-plugin-daemonset" in message
    assert "ErrImagePull" in message or "ImagePullBackOff" in message
    assert "docker pull nvcr.io/nvidia/k8s-device-plugin:v0.20.0" in message


def test_up_with_another_spec_is_refused_and_names_the_difference(state):
    result = invoke("up", "--name", CLUSTER, "--workers", "2", "--gpus", "2", "--simulate", "8")
    assert result.returncode == 1
    assert "workers: 3 -> 2" in result.stderr and "--recreate" in result.stderr


def test_killed_worker_is_reported_and_up_recovers(state):
    worker = f"{CLUSTER}-worker2"
    assert docker("kill", worker).returncode == 0
    dry = invoke("up", *SPEC, "--dry-run", check=True)
    assert f"would run: node container(s) not running: {worker}" in dry.stdout
    result = invoke("up", *SPEC, check=True)
    assert "✓ create" in result.stdout
    assert allocatable()[worker] == "2"
    assert node_gpu_minors(worker) == [2, 3]  # Docker gave it every device again; isolate pruned them
    invoke("smoke", "--name", CLUSTER, check=True)


def test_down_of_a_cluster_kindgpu_did_not_make_is_refused(state, harness):
    made = subprocess.run(["kind", "create", "cluster", "--name", "not-kindgpu", "--image", harness,
                           "--kubeconfig", str(state / "foreign.kubeconfig")], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    result = invoke("down", "--name", "not-kindgpu")
    assert result.returncode == 1 and "not made by kindgpu" in result.stderr
    assert docker("inspect", "not-kindgpu-control-plane").returncode == 0
    up = invoke("up", "--name", "not-kindgpu", "--workers", "1", "--gpus", "1", "--simulate", "1")
    assert up.returncode == 1 and "kindgpu did not make" in up.stderr


def test_down_leaves_no_container_network_or_state(state):
    invoke("down", "--name", CLUSTER, check=True)
    assert docker("ps", "-aq", "--filter", f"label=io.x-k8s.kind.cluster={CLUSTER}").stdout.strip() == ""
    assert docker("network", "ls", "-q", "--filter", f"name=kindgpu-{CLUSTER}").stdout.strip() == ""
    assert not (state / CLUSTER).exists()
    again = invoke("down", "--name", CLUSTER, check=True)
    assert "nothing to delete" in again.stdout
