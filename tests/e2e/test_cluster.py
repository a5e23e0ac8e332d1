"""kindgpu against a real kind cluster with simulated GPUs: the whole life of a cluster.

The tests run in file order and share one cluster (making one takes about a minute on 2 cores).
"""

import json
import os
import subprocess
import time

import pytest

from cluster_helpers import docker, export_logs, fake_host_gpu_devices, invoke, node_gpu_minors, plain_kind_cluster

CLUSTER = "kgpu-e2e"
SPEC = ["--name", CLUSTER, "--workers", "3", "--gpus", "2", "--simulate", "8"]
# Fake GPU device nodes on the host: privileged kind nodes inherit them, so isolation by device
# minor runs for real.
FAKE_MINORS = range(8)


@pytest.fixture(scope="module")
def state(tmp_path_factory, harness, request):
    """A state dir of its own, fake GPU device nodes on the host, and cleanup whatever happens."""
    root = tmp_path_factory.mktemp("kindgpu-state")
    os.environ["KINDGPU_STATE_DIR"] = str(root)
    with fake_host_gpu_devices(FAKE_MINORS):
        yield root
        if getattr(request.session, "e2e_failed", False):
            export_logs(CLUSTER, "failed")
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


def test_status_names_a_gpu_device_node_a_worker_should_not_have_and_up_takes_it_away(state):
    worker = f"{CLUSTER}-worker"
    assert docker("exec", worker, "mknod", "/dev/nvidia5", "c", "195", "5").returncode == 0  # worker3's GPU
    result = invoke("status", "--name", CLUSTER, "--json")
    doc = json.loads(result.stdout)
    assert result.returncode == 1 and not doc["healthy"]
    [problem] = [p for p in doc["problems"] if p["node"] == worker]
    assert "/dev/nvidia5" in problem["problem"] and "isolate" in problem["fix"]
    invoke("up", *SPEC, check=True)
    assert node_gpu_minors(worker) == [0, 1]
    assert json.loads(invoke("status", "--name", CLUSTER, "--json", check=True).stdout)["healthy"]


def real_gpu_context(**plugin):
    """A real-GPU plan (the H200 host's inventory) for this simulated cluster's two first workers."""
    from kindgpu import plan, spec, steps
    from kindgpu.report import Reporter
    from paths import h200_inventory

    doc = spec.resolve(env={}, flags={"name": CLUSTER, "workers": 2, "gpusPerWorker": 1})
    doc["devicePlugin"].update(plugin)
    return steps.Context(plan.make_plan(doc, h200_inventory()), Reporter())


@pytest.fixture
def driver_in_workers(state, tmp_path):
    """What the host's NVIDIA runtime puts into a GPU worker, as far as the plugin's setup looks:
    a libnvidia-ml.so.1 (an empty library with that soname) in /usr/local/nvidia/lib64, in the
    node's ldcache."""
    lib = tmp_path / "libnvidia-ml.so.1"
    (tmp_path / "empty.c").write_text("int kindgpu_fake_nvml;\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libnvidia-ml.so.1", "-o", str(lib),
                    str(tmp_path / "empty.c")], check=True)
    workers = [f"{CLUSTER}-worker", f"{CLUSTER}-worker2"]
    for node in workers:
        assert docker("exec", node, "mkdir", "-p", "/usr/local/nvidia/lib64").returncode == 0
        assert docker("cp", str(lib), f"{node}:/usr/local/nvidia/lib64/").returncode == 0
        docker("exec", node, "sh", "-c",
               "echo /usr/local/nvidia/lib64 > /etc/ld.so.conf.d/kindgpu-e2e.conf && ldconfig")
    yield
    for node in workers:
        docker("exec", node, "sh", "-c", "rm -rf /usr/local/nvidia /etc/ld.so.conf.d/kindgpu-e2e.conf && ldconfig")


def nvidia_plugin_env(ctx):
    ds = ctx.kube.apps.read_namespaced_daemon_set("nvidia-device-plugin-daemonset", "kube-system")
    return {e.name: e.value for e in ds.spec.template.spec.containers[0].env or []}


def test_real_gpu_plugin_that_cannot_pull_is_diagnosed(driver_in_workers, monkeypatch):
    """NVIDIA's DaemonSet on this cluster: no registry, so the wait must say which pod and why."""
    from kindgpu import steps
    from kindgpu.steps import device_plugin
    from kindgpu.wait import WaitTimeout

    ctx = real_gpu_context(version="v0.20.0-kindgpu-absent")  # in no local Docker
    monkeypatch.setattr(device_plugin, "PLUGIN_READY_TIMEOUT", 40)
    try:
        with pytest.raises(WaitTimeout) as caught:
            steps.DevicePlugin().run(ctx, progress=lambda text: None)
        # Told where the node's NVML is, which the plugin does not search by itself.
        assert nvidia_plugin_env(ctx)["LD_LIBRARY_PATH"] == "/driver-root/usr/local/nvidia/lib64"
    finally:
        ctx.kube.apps.delete_namespaced_daemon_set("nvidia-device-plugin-daemonset", "kube-system")
    message = str(caught.value)
    assert "offers 2 of 1 GPUs" in message  # the simulated plugin still offers 2 on each worker
    assert f"on {CLUSTER}-worker" in message and "nvidia-device-plugin-daemonset" in message
    assert "ErrImagePull" in message or "ImagePullBackOff" in message
    assert "docker pull nvcr.io/nvidia/k8s-device-plugin:v0.20.0-kindgpu-absent" in message


def test_crashing_real_gpu_plugin_fails_at_once_with_its_log(driver_in_workers):
    """A plugin that exits as NVIDIA's does without NVML: known within seconds, not after 300 s."""
    from kindgpu import steps
    from kindgpu.simgpu.build import image_tag
    from kindgpu.steps import device_plugin
    from kindgpu.wait import WaitFailed

    image = "kindgpu-e2e/crashing-device-plugin:v0.0.1"
    error = ("E1201 main.go:132] error starting plugins: unable to validate flags: "
             "CDI --device-list-strategy options are only supported on NVML-based systems")
    dockerfile = (f"FROM {image_tag()}\nRUN printf '#!/bin/sh\\necho \"{error}\" >&2\\nexit 1\\n' "
                  "> /usr/bin/nvidia-device-plugin && chmod 755 /usr/bin/nvidia-device-plugin\n")
    built = subprocess.run(["docker", "build", "-q", "-t", image, "-"], input=dockerfile, capture_output=True,
                           text=True)
    assert built.returncode == 0, built.stderr
    ctx = real_gpu_context(image=image.split(":")[0], version="v0.0.1")
    start = time.monotonic()
    try:
        with pytest.raises(WaitFailed) as caught:
            steps.DevicePlugin().run(ctx, progress=lambda text: None)
    finally:
        ctx.kube.apps.delete_namespaced_daemon_set("nvidia-device-plugin-daemonset", "kube-system")
        docker("rmi", image)
    took = time.monotonic() - start
    message = str(caught.value)
    print(message)
    assert took < 90, f"took {took:.0f}s; the wait's timeout is {device_plugin.PLUGIN_READY_TIMEOUT}s"
    assert "only supported on NVML-based systems" in message and f"on {CLUSTER}-worker" in message
    assert "ldconfig -p | grep nvidia-ml" in caught.value.fix  # the fix that fits this log
    assert "docker pull" not in message + caught.value.fix


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


def test_a_stopped_worker_is_not_healthy_at_once_and_smoke_says_why(state):
    worker = f"{CLUSTER}-worker3"
    assert docker("stop", worker).returncode == 0
    status = invoke("status", "--name", CLUSTER, "--json")
    doc = json.loads(status.stdout)
    assert status.returncode == 1 and not doc["healthy"]
    row = {r["node"]: r for r in doc["nodes"]}[worker]
    assert not row["ready"] and row["plugin"] == "(node container stopped)"
    [problem] = [p for p in doc["problems"] if p["node"] == worker]
    assert problem["problem"] == "node container exited" and "invoke up" in problem["fix"]
    smoke = invoke("smoke", "--name", CLUSTER)
    assert smoke.returncode == 1 and "Traceback" not in smoke.stderr
    assert f"ERROR: node container(s) of {CLUSTER} not running: {worker}" in smoke.stderr
    invoke("up", *SPEC, check=True)
    assert json.loads(invoke("status", "--name", CLUSTER, "--json", check=True).stdout)["healthy"]


def test_right_after_a_control_plane_restart_commands_wait_and_never_print_a_traceback(state):
    assert docker("restart", f"{CLUSTER}-control-plane").returncode == 0
    time.sleep(1)
    status = invoke("status", "--name", CLUSTER, "--json")
    assert "Traceback" not in status.stdout + status.stderr
    assert f"waiting for the API server of {CLUSTER}" in status.stderr
    assert status.returncode in (0, 1) and json.loads(status.stdout)["cluster"] == CLUSTER
    up = invoke("up", *SPEC)
    assert up.returncode == 0 and "Traceback" not in up.stderr, up.stderr
    invoke("smoke", "--name", CLUSTER, check=True)


def test_down_of_a_cluster_kindgpu_did_not_make_is_refused(state, harness):
    made = plain_kind_cluster("not-kindgpu", harness, state / "foreign.kubeconfig")
    assert made.returncode == 0, made.stderr
    result = invoke("down", "--name", "not-kindgpu")
    assert result.returncode == 1 and "not made by kindgpu" in result.stderr
    assert docker("inspect", "not-kindgpu-control-plane").returncode == 0
    up = invoke("up", "--name", "not-kindgpu", "--workers", "1", "--gpus", "1", "--simulate", "1")
    assert up.returncode == 1 and "kindgpu did not make" in up.stderr
    for task in ("status", "smoke"):  # named as not kindgpu's, pointed to smoke --kubeconfig, never deleted
        said = invoke(task, "--name", "not-kindgpu")
        assert said.returncode == 1 and "kind cluster kindgpu did not make" in said.stderr, said.stderr
        assert "smoke --kubeconfig" in said.stderr and "delete" not in said.stderr
    assert not (state / "not-kindgpu").exists()  # the refused commands left no lock behind


def test_down_leaves_no_container_network_or_state(state):
    invoke("down", "--name", CLUSTER, check=True)
    assert docker("ps", "-aq", "--filter", f"label=io.x-k8s.kind.cluster={CLUSTER}").stdout.strip() == ""
    assert docker("network", "ls", "-q", "--filter", f"name=kindgpu-{CLUSTER}").stdout.strip() == ""
    assert not (state / CLUSTER).exists()
    again = invoke("down", "--name", CLUSTER, check=True)
    assert "nothing to delete" in again.stdout
