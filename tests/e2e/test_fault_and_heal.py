"""`invoke fault` and `invoke heal` on a real kind cluster with simulated GPUs: a GPU made Unhealthy
drops allocatable and a new one-GPU pod lands on the other worker; a worker stopped and started comes
back with `invoke up`; heal puts everything back. The tests run in file order and share one cluster."""

import json
import time

import pytest

from cluster_helpers import cluster_from_spec, docker, invoke, kind_kube

CLUSTER = "kfault"
SPEC = f"""apiVersion: kindgpu.dev/v1alpha1
kind: GPUCluster
name: {CLUSTER}
simulate: 2
workers: 2
gpusPerWorker: 1
"""
FIRST, SECOND = f"{CLUSTER}-worker", f"{CLUSTER}-worker2"


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory, harness, request):
    with cluster_from_spec(tmp_path_factory.mktemp("kindgpu-kfault"), CLUSTER, SPEC, request) as path:
        invoke("up", "--config", str(path), check=True)
        yield path


def allocatable(node):
    return int(kind_kube(CLUSTER).core.read_node(node).status.allocatable.get("nvidia.com/gpu", "0"))


def status():
    result = invoke("status", "--name", CLUSTER, "--json")
    return result.returncode, json.loads(result.stdout)


def test_heal_with_nothing_injected_does_nothing(spec_file):
    assert "nothing to heal" in invoke("heal", "--name", CLUSTER, check=True).stdout


def test_a_gpu_made_unhealthy_drops_allocatable_and_a_new_pod_lands_elsewhere(spec_file):
    result = invoke("fault", "--name", CLUSTER, "--worker", "1", "--index", "0", "--json", check=True)
    fault = json.loads(result.stdout)["injected"]
    assert (fault["kind"], fault["node"], fault["xid"]) == ("gpu", FIRST, 79)
    assert allocatable(FIRST) == 0 and allocatable(SECOND) == 1
    assert f"XidCriticalError: Xid=79 on Device={fault['gpu']}; marking device as unhealthy" in plugin_log(FIRST)
    code, doc = status()
    assert code == 1 and not doc["healthy"] and doc["faults"][0]["gpu"] == fault["gpu"]
    assert any(p["fix"] == "`invoke heal` undoes it" and "Xid 79" in p["problem"] for p in doc["problems"])
    # A one-GPU pod now goes where a healthy GPU is.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "wants-one", "namespace": "default"},
           "spec": {"restartPolicy": "Never", "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "c", "image": image(), "command": ["true"],
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
    kube = kind_kube(CLUSTER)
    kube.core.create_namespaced_pod("default", pod)
    deadline = time.monotonic() + 60
    while not (placed := kube.core.read_namespaced_pod("wants-one", "default").spec.node_name):
        assert time.monotonic() < deadline, "the one-GPU pod was not scheduled"
        time.sleep(0.5)
    assert placed == SECOND
    kube.core.delete_namespaced_pod("wants-one", "default", grace_period_seconds=0)
    # smoke names the fault as its reason, at once.
    smoke = invoke("smoke", "--name", CLUSTER)
    assert smoke.returncode == 1 and "smoke cannot pass while GPUs are Unhealthy on purpose" in smoke.stderr
    assert "`invoke heal`" in smoke.stderr
    # up knows the fault: nothing to repair while it is injected.
    assert "Nothing to be done." in invoke("up", "--config", str(spec_file), check=True).stdout


def test_heal_restores_allocatable(spec_file):
    healed = invoke("heal", "--name", CLUSTER, check=True).stdout
    assert "healed: GPU" in healed
    deadline = time.monotonic() + 60
    while allocatable(FIRST) != 1:
        assert time.monotonic() < deadline, "heal did not give the GPU back"
        time.sleep(0.5)
    assert status()[1]["healthy"]


def test_a_gpus_file_taken_away_is_offered_no_more_until_heal_puts_it_back(spec_file):
    result = invoke("fault", "--name", CLUSTER, "--worker", "1", "--index", "0", "--remove-device", check=True)
    assert "removed from kfault-worker" in result.stdout and allocatable(FIRST) == 0
    code, doc = status()
    assert code == 1 and any("--remove-device" in p["problem"] for p in doc["problems"])
    invoke("heal", "--name", CLUSTER, check=True)
    deadline = time.monotonic() + 60
    while allocatable(FIRST) != 1:
        assert time.monotonic() < deadline, "heal did not give the GPU's file back"
        time.sleep(0.5)
    assert status()[0] == 0


def test_a_worker_down_then_healed_comes_back_with_up(spec_file):
    invoke("fault", "--name", CLUSTER, "--worker", "2", "--down", check=True)
    assert docker("inspect", "-f", "{{.State.Running}}", SECOND).stdout.strip() == "false"
    code, doc = status()
    assert code == 1 and any(p["node"] == SECOND and "invoke heal" in p["fix"] for p in doc["problems"])
    assert "next: `invoke up`" in invoke("heal", "--name", CLUSTER, check=True).stdout
    invoke("up", "--config", str(spec_file), check=True)
    code, doc = status()
    assert code == 0 and doc["healthy"] and doc["faults"] == []
    invoke("smoke", "--name", CLUSTER, check=True)


def image():
    from kindgpu.simgpu.build import image_tag

    return image_tag()


def plugin_log(node):
    """The simulated plugin's log on a node: it says why a GPU went Unhealthy, as NVIDIA's does."""
    kube = kind_kube(CLUSTER)
    [pod] = [p for p in kube.core.list_namespaced_pod("kube-system", label_selector="app.kubernetes.io/name="
                                                     "kindgpu-sim-device-plugin").items if p.spec.node_name == node]
    return kube.core.read_namespaced_pod_log(pod.metadata.name, "kube-system")
