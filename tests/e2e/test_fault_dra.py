"""`invoke fault` under DRA on a real kind cluster (Kubernetes of KINDGPU_NODE_IMAGE, 1.37) with two
simulated GPUs, one per worker; the tests run in file order and share the cluster.

- the simulated DRA plugin taints a failed GPU in its ResourceSlice as NVIDIA's driver does
  (gpu.nvidia.com/xid=79:NoSchedule): the pod holding it keeps running and its `nvidia-smi -q` shows the
  Xid, a new claim gets the other GPU; heal takes the taint and the Xid away;
- with --effect NoExecute the pod holding it is evicted, and a new claim gets the other GPU;
- with --via-api the same is a DeviceTaintRule, made and deleted through the API as on real GPUs;
- a GPU's file taken away (--remove-device) leaves the worker's slice, and `invoke up` puts it back.
"""

import json
import subprocess
import time

import pytest
import yaml

from cluster_helpers import cluster_from_spec, invoke, kind_kube

CLUSTER = "kfault-dra"
SPEC = f"""apiVersion: kindgpu.dev/v1alpha1
kind: GPUCluster
name: {CLUSTER}
simulate: 2
workers: 2
gpusPerWorker: 1
gpuAllocation: dra
"""
FIRST, SECOND = f"{CLUSTER}-worker", f"{CLUSTER}-worker2"
ONE_GPU = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
           "metadata": {"name": "one-gpu", "namespace": "default"},
           "spec": {"spec": {"devices": {"requests": [
               {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}}]}}}}


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory, harness, request):
    with cluster_from_spec(tmp_path_factory.mktemp("kindgpu-kfault-dra"), CLUSTER, SPEC, request) as path:
        invoke("up", "--config", str(path), check=True)
        kubectl("apply", "-f", "-", input=yaml.safe_dump(ONE_GPU))
        yield path


def kubectl(*args, check=True, input=None):
    result = subprocess.run(["kubectl", "--context", f"kind-{CLUSTER}", *args], capture_output=True, text=True,
                            input=input, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)}: {result.stdout}{result.stderr}")
    return result.stdout


def gpu_pod(name):
    """A pod holding one GPU through a claim, running until deleted (the claim brings busybox)."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
           "spec": {"terminationGracePeriodSeconds": 1, "tolerations": [{"operator": "Exists"}],
                    "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}],
                    "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                    "command": ["/usr/local/kindgpu/bin/busybox", "sleep", "3600"],
                                    "resources": {"claims": [{"name": "gpu"}]}}]}}
    kubectl("apply", "-f", "-", input=yaml.safe_dump(pod))
    wait(lambda: phase(name) == "Running", f"{name} to run")
    return node_of(name), uuid_of(name)


def phase(name):
    out = kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}", check=False)
    return out or None


def node_of(name):
    return kubectl("get", "pod", name, "-o", "jsonpath={.spec.nodeName}")


def uuid_of(name):
    return kubectl("exec", name, "--", "nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader").strip()


def gone(name):
    """Evicted: deleted, or failed by the eviction controller."""
    return phase(name) in (None, "Failed")


def wait(condition, what, timeout=90):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def taints(node):
    """[(device, key, value, effect)] in a worker's ResourceSlice."""
    found = []
    for piece in kind_kube(CLUSTER).resource_slices():
        if piece["spec"]["pool"]["name"] == node:
            found += [(d["name"], t["key"], t.get("value"), t["effect"])
                      for d in piece["spec"].get("devices") or [] for t in d.get("taints") or []]
    return found


def published(node):
    return [d for p in kind_kube(CLUSTER).resource_slices() if p["spec"]["pool"]["name"] == node
            for d in p["spec"].get("devices") or []]


def status():
    result = invoke("status", "--name", CLUSTER, "--json")
    return result.returncode, json.loads(result.stdout)


def fault(*args):
    return json.loads(invoke("fault", "--name", CLUSTER, *args, "--json", check=True).stdout)["injected"]


def test_a_tainted_gpu_keeps_its_pod_shows_the_xid_and_a_new_claim_gets_the_other(spec_file):
    node, uuid = gpu_pod("holder")
    injected = fault("--gpu", uuid)
    assert (injected["via"], injected["effect"], injected["node"]) == ("slice", "NoSchedule", node)
    assert taints(node) == [(injected["device"], "gpu.nvidia.com/xid", "79", "NoSchedule")]
    report = kubectl("exec", "holder", "--", "nvidia-smi", "-q")
    assert f"GPU UUID                              : {uuid}" in report
    assert "Last Xid                          : 79" in report
    code, doc = status()
    assert code == 1 and any("gpu.nvidia.com/xid=79:NoSchedule" in p["problem"] for p in doc["problems"])
    other, other_uuid = gpu_pod("newcomer")
    assert (other, phase("holder")) == ({FIRST, SECOND}.difference({node}).pop(), "Running")
    assert other_uuid != uuid
    assert "healed: GPU" in invoke("heal", "--name", CLUSTER, check=True).stdout
    wait(lambda: taints(node) == [], "the taint to go")
    assert "Last Xid                          : None" in kubectl("exec", "holder", "--", "nvidia-smi", "-q")
    kubectl("delete", "pod", "newcomer", "--wait=true")


def test_a_noexecute_taint_evicts_the_pod_holding_the_gpu(spec_file):
    node, uuid = node_of("holder"), uuid_of("holder")
    fault("--gpu", uuid, "--effect", "NoExecute")
    wait(lambda: gone("holder"), "the pod on the tainted GPU to be evicted")
    other, other_uuid = gpu_pod("replacement")
    assert other != node and other_uuid != uuid
    invoke("heal", "--name", CLUSTER, check=True)
    wait(lambda: taints(node) == [], "the taint to go")
    kubectl("delete", "pod", "replacement", "holder", "--ignore-not-found", "--wait=true")


def test_a_device_taint_rule_is_made_honoured_and_deleted_through_the_api(spec_file):
    node, uuid = gpu_pod("ruled")
    injected = fault("--gpu", uuid, "--effect", "NoExecute", "--via-api")
    assert (injected["via"], injected["api"]) == ("rule", "resource.k8s.io/v1")
    kube = kind_kube(CLUSTER)
    rule = kube.get_raw("resource.k8s.io/v1", "devicetaintrules", injected["rule"])
    assert rule["spec"] == {"deviceSelector": {"driver": "gpu.nvidia.com", "pool": node, "device": injected["device"]},
                            "taint": {"key": "gpu.nvidia.com/xid", "value": "79", "effect": "NoExecute",
                                      **({"timeAdded": rule["spec"]["taint"]["timeAdded"]}
                                         if "timeAdded" in rule["spec"]["taint"] else {})}}
    assert taints(node) == []  # the API's taint, not the plugin's
    wait(lambda: gone("ruled"), "the pod on the ruled GPU to be evicted")
    other, _ = gpu_pod("elsewhere")
    assert other != node
    invoke("heal", "--name", CLUSTER, check=True)
    assert kube.get_raw("resource.k8s.io/v1", "devicetaintrules", injected["rule"]) is None
    kubectl("delete", "pod", "elsewhere", "ruled", "--ignore-not-found", "--wait=true")
    assert status()[0] == 0


def test_a_gpus_file_taken_away_leaves_the_slice_until_up_puts_it_back(spec_file):
    injected = fault("--worker", "1", "--index", "0", "--remove-device")
    assert injected["kind"] == "device-removed" and injected["device"].endswith(injected["gpu"])
    assert published(FIRST) == []
    code, doc = status()
    assert code == 1 and any(injected["device"] in p["problem"] and p["node"] == FIRST for p in doc["problems"])
    invoke("up", "--config", str(spec_file), check=True)
    wait(lambda: len(published(FIRST)) == 1, "the GPU to be published again")
    code, doc = status()
    assert code == 0 and doc["faults"] == []
