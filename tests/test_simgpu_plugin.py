"""The device plugin against a fake kubelet speaking real gRPC over unix sockets."""

import os
import subprocess
import threading
from pathlib import Path

import grpc
import pytest

from fake_kubelet import PLAN_GPUS, UUIDS, FakeKubelet, Node
from kindgpu import deviceplugin, plan as plans, spec
from kindgpu.simgpu import manifest


def running_node(plugin_api, plugin, node_dir, monkeypatch, **settings):
    """A node with the plugin (its settings changed by `settings`) running in a thread of this process."""
    monkeypatch.setattr(plugin, "POLL_SECONDS", 0.2)
    node = Node(plugin_api, plugin, node_dir)
    for key, value in settings.items():
        setattr(node.settings, key, value)
    stop = threading.Event()
    thread = threading.Thread(target=plugin.run, args=(node.settings, stop))
    thread.start()
    yield node
    stop.set()
    thread.join(timeout=15)
    node.kubelet.stop()


@pytest.fixture
def node(plugin_api, plugin, node_dir, monkeypatch):
    """A node with the plugin running in a thread of this process."""
    yield from running_node(plugin_api, plugin, node_dir, monkeypatch)


def test_registers_nvidia_gpu_and_lists_the_sim_gpu_files(node, plugin):
    request = node.registered()
    assert (request.version, request.resource_name) == ("v1beta1", "nvidia.com/gpu")
    assert (node.settings.plugin_dir / request.endpoint).is_socket()
    stub = node.connect(request)

    options = stub.GetDevicePluginOptions(node.api_pb2.Empty(), timeout=5)
    assert not options.pre_start_required and not options.get_preferred_allocation_available

    stream = stub.ListAndWatch(node.api_pb2.Empty(), timeout=15)
    first = next(stream)
    assert [(d.ID, d.health) for d in first.devices] == [(u, "Healthy") for u in sorted(UUIDS[:2])]
    # A GPU appearing in the directory is announced on the same stream.
    (node.settings.device_dir / UUIDS[2]).touch()
    assert sorted(d.ID for d in next(stream).devices) == sorted(UUIDS)
    stream.cancel()


def run_nvidia_smi(response, *args):
    """What the container would see: the mounted nvidia-smi run with the allocated env (by the
    host's sh: busybox runs it in a pod, as tests/e2e/test_fake_nvidia_smi_images.py shows)."""
    (smi,) = [Path(m.host_path) for m in response.mounts if m.container_path == "/usr/bin/nvidia-smi"]
    env = {"PATH": "/nonexistent", **response.envs}
    return subprocess.run(["/bin/sh", smi, *args], env=env, capture_output=True, text=True, check=True).stdout


def test_allocate_gives_the_gpus_and_a_working_nvidia_smi(node, plugin):
    stub = node.connect(node.registered())
    wanted = UUIDS[:2]
    request = node.api_pb2.AllocateRequest(
        container_requests=[node.api_pb2.ContainerAllocateRequest(devices_ids=wanted)])

    (response,) = stub.Allocate(request, timeout=5).container_responses

    # The plan gives the node the host's GPUs 2 and 3: indices 0 and 1 in the container, in bus
    # id order as NVML enumerates; minor numbers and bus ids the plan's.
    assert response.envs["NVIDIA_VISIBLE_DEVICES"] == ",".join(wanted)
    assert response.envs["KINDGPU_SIM_GPUS"] == (f"{wanted[0]} 2 00000000:12:00.0 143771 NVIDIA H200\n"
                                                 f"{wanted[1]} 3 00000000:13:00.0 143771 NVIDIA H200")
    mounts = {m.container_path: m for m in response.mounts}
    assert set(mounts) == {"/usr/bin/nvidia-smi", "/usr/local/kindgpu/bin/busybox", "/usr/local/kindgpu/health"}
    health = mounts.pop("/usr/local/kindgpu/health")  # a directory: the Xids kindgpu writes later show in it
    assert health.read_only and Path(health.host_path) == node.settings.share_dir / "health"
    assert (node.settings.share_dir / "health" / "xids").read_text() == ""
    for mount in mounts.values():
        host_path = Path(mount.host_path)
        assert mount.read_only and host_path.parent == node.settings.share_dir and os.access(host_path, os.X_OK)
    assert Path(mounts["/usr/bin/nvidia-smi"].host_path).read_text().startswith("#!/usr/local/kindgpu/bin/busybox sh\n")
    assert Path(mounts["/usr/local/kindgpu/bin/busybox"].host_path).read_bytes() == node.settings.busybox.read_bytes()

    listing = run_nvidia_smi(response, "-L")
    assert listing == "".join(f"GPU {i}: NVIDIA H200 (UUID: {u})\n" for i, u in enumerate(wanted))
    fields = ("index", "uuid", "name", "pci.bus_id", "memory.total", "mig.mode.current", "minor_number")
    csv = run_nvidia_smi(response, f"--query-gpu={','.join(fields)}", "--format=csv,noheader")
    assert csv == (f"0, {wanted[0]}, NVIDIA H200, 00000000:12:00.0, 143771 MiB, Disabled, 2\n"
                   f"1, {wanted[1]}, NVIDIA H200, 00000000:13:00.0, 143771 MiB, Disabled, 3\n")


def test_a_container_given_one_gpu_sees_it_as_gpu_0_with_the_plans_minor_and_bus_id(node):
    stub = node.connect(node.registered())
    pb = node.api_pb2
    (response,) = stub.Allocate(pb.AllocateRequest(container_requests=[
        pb.ContainerAllocateRequest(devices_ids=[UUIDS[1]])]), timeout=5).container_responses
    assert run_nvidia_smi(response, "--query-gpu=index,minor_number,pci.bus_id", "--format=csv,noheader") == (
        "0, 3, 00000000:13:00.0\n")


def test_a_gpu_the_plan_lacks_takes_its_place_on_the_node(plugin):
    settings = plugin.Settings("NVIDIA H200", 143771, "/d", "/s", "/p", plan_gpus=PLAN_GPUS[:1])
    node = sorted([PLAN_GPUS[0]["uuid"], "GPU-extra"])
    described = plugin.describe({"GPU-extra", PLAN_GPUS[0]["uuid"]}, node, settings)
    extra = {"uuid": "GPU-extra", "minor": node.index("GPU-extra"),
             "pci_bus_id": f"00000000:{0x10 + node.index('GPU-extra'):02X}:00.0"}
    assert [{k: g[k] for k in extra} for g in described if g["uuid"] == "GPU-extra"] == [extra]
    assert [(g["minor"], g["pci_bus_id"]) for g in described if g["uuid"] != "GPU-extra"] == [(0, "00000000:10:00.0")]


def test_allocate_refuses_unknown_gpus(node):
    stub = node.connect(node.registered())
    request = node.api_pb2.AllocateRequest(container_requests=[
        node.api_pb2.ContainerAllocateRequest(devices_ids=[UUIDS[0], "GPU-not-on-this-node"])])
    with pytest.raises(grpc.RpcError) as raised:
        stub.Allocate(request, timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_registers_again_when_kubelet_restarts(node, plugin_api):
    first = node.registered()
    # A restarting kubelet removes the plugin sockets and makes a new kubelet.sock.
    node.kubelet.stop()
    (node.settings.plugin_dir / first.endpoint).unlink()
    node.kubelet = FakeKubelet(plugin_api, node.settings.plugin_dir)

    again = node.registered()

    assert again.resource_name == "nvidia.com/gpu"
    stream = node.connect(again).ListAndWatch(node.api_pb2.Empty(), timeout=15)
    assert sorted(d.ID for d in next(stream).devices) == sorted(UUIDS[:2])
    stream.cancel()


def test_manifest_env_names_are_the_ones_the_plugin_reads(plugin):
    (daemonset,) = manifest.sim_device_plugin_objects("img:1", "NVIDIA H100", 81559)
    env = {e["name"]: e["value"] for e in daemonset["spec"]["template"]["spec"]["containers"][0]["env"]}
    settings = plugin.Settings.from_env(env)
    assert (settings.product, settings.memory_mib) == ("NVIDIA H100", 81559)
    assert str(settings.device_dir) == "/var/run/kindgpu/sim-gpus"
    assert str(settings.plugin_dir) == "/var/lib/kubelet/device-plugins"
    assert str(settings.share_dir) == manifest.SHARE_DIR
    assert (settings.replicas, settings.resource) == (1, "nvidia.com/gpu")  # no sharing: as before
    assert settings.plan_gpus == {}  # no plan given: every GPU takes its place on its node


def test_the_plugin_reads_the_plans_minors_and_bus_ids_from_the_daemonset(plugin, state_dir):
    """The plan (simulated host of 8, 2 workers × 4) -> the DaemonSet's env -> the plugin's settings."""
    doc = spec.resolve(env={}, flags={"simulate": 8})
    p = plans.make_plan(doc)
    (daemonset,) = deviceplugin.objects(p, sim_image="img:1")
    env = {e["name"]: e["value"] for e in daemonset["spec"]["template"]["spec"]["containers"][0]["env"]}
    settings = plugin.Settings.from_env(env)
    assert settings.plan_gpus == {g.uuid: (g.minor, g.pci_bus_id) for w in p.workers for g in w.gpus}
    second = p.workers[1].gpus
    described = plugin.describe({g.uuid for g in second}, sorted(g.uuid for g in second), settings)
    # Worker 2's first GPU is the host's GPU 4: minor 4, bus 14:00.0 (the issue saw 0 and 10:00.0).
    assert [(g["uuid"], g["minor"], g["pci_bus_id"]) for g in described] == [
        (g.uuid, g.index, f"00000000:{0x10 + g.index:02X}:00.0") for g in second]


@pytest.fixture
def shared_node(plugin_api, plugin, node_dir, monkeypatch):
    """A node whose plugin time-slices each GPU 3 ways, advertised as nvidia.com/gpu.shared."""
    yield from running_node(plugin_api, plugin, node_dir, monkeypatch, replicas=3, resource="nvidia.com/gpu.shared")


def test_time_sliced_gpus_are_advertised_as_replicas_with_nvidias_ids(shared_node):
    request = shared_node.registered()
    assert request.resource_name == "nvidia.com/gpu.shared"
    stream = shared_node.connect(request).ListAndWatch(shared_node.api_pb2.Empty(), timeout=15)
    ids = [d.ID for d in next(stream).devices]
    stream.cancel()
    # internal/rm/devices.go NewAnnotatedID: "<uuid>::<n>", n from 0.
    assert ids == [f"{u}::{n}" for u in sorted(UUIDS[:2]) for n in range(3)]


def test_replicas_of_one_gpu_give_that_gpu_once_and_pods_share_it(shared_node):
    stub = shared_node.connect(shared_node.registered())
    uuid, other = UUIDS[:2]  # in bus id order, as the plan gives them
    pb = shared_node.api_pb2
    # Two containers (two pods, as kubelet asks for each), each given a replica of the same GPU.
    request = pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=[f"{uuid}::0"]),
                                                     pb.ContainerAllocateRequest(devices_ids=[f"{uuid}::2"])])
    first, second = stub.Allocate(request, timeout=5).container_responses
    assert first.envs["NVIDIA_VISIBLE_DEVICES"] == second.envs["NVIDIA_VISIBLE_DEVICES"] == uuid
    # One container given two replicas of one GPU and one of the other sees each GPU once.
    (both,) = stub.Allocate(pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(
        devices_ids=[f"{uuid}::1", f"{other}::0", f"{uuid}::0"])]), timeout=5).container_responses
    assert both.envs["NVIDIA_VISIBLE_DEVICES"] == f"{uuid},{other}"
    listing = run_nvidia_smi(both, "--query-gpu=uuid", "--format=csv,noheader")
    assert listing.split() == [uuid, other]  # the fake nvidia-smi shows the shared GPUs themselves


def test_a_replica_the_plugin_does_not_advertise_is_refused(shared_node):
    stub = shared_node.connect(shared_node.registered())
    pb = shared_node.api_pb2
    for bad in (f"{UUIDS[0]}::3", UUIDS[0]):  # past the replicas; a bare UUID when replicated
        with pytest.raises(grpc.RpcError) as raised:
            stub.Allocate(pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=[bad])]),
                          timeout=5)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_manifest_sharing_env_is_what_the_plugin_reads(plugin):
    from kindgpu import sharing

    ts = sharing.TimeSlicing(4, True)
    (daemonset,) = manifest.sim_device_plugin_objects("img:1", "NVIDIA H100", 81559, ts)
    env = {e["name"]: e["value"] for e in daemonset["spec"]["template"]["spec"]["containers"][0]["env"]}
    settings = plugin.Settings.from_env(env)
    assert (settings.replicas, settings.resource) == (4, "nvidia.com/gpu.shared")
    assert plugin.device_ids(["GPU-a"], 2) == sharing.replica_ids("GPU-a", 2)
    with pytest.raises(ValueError):
        plugin.Settings.from_env({**env, plugin.ENV_REPLICAS: "0"})


def test_a_gpu_given_a_critical_xid_is_reported_unhealthy_and_back_when_healed(node, plugin, caplog):
    """As NVIDIA's plugin: a critical Xid makes the GPU Unhealthy (kubelet offers one less; pods keep
    running); an application's Xid (13, 31, 43, 45, 68, 109) is logged and skipped."""
    stub = node.connect(node.registered())
    stream = stub.ListAndWatch(node.api_pb2.Empty(), timeout=15)
    first, second = sorted(UUIDS[:2])
    assert {d.health for d in next(stream).devices} == {"Healthy"}
    node.settings.faults.write_text(f'{{"{first}": 79, "{second}": 13}}')
    health = {d.ID: d.health for d in next(stream).devices}
    assert health == {first: "Unhealthy", second: "Healthy"}
    assert f"XidCriticalError: Xid=79 on Device={first}; marking device as unhealthy" in caplog.text
    assert f"Xid=13 on Device={second}; an application error: skipped" in caplog.text
    node.settings.faults.write_text("{}")  # healed
    assert {d.health for d in next(stream).devices} == {"Healthy"}
    stream.cancel()


def test_faults_are_read_leniently(tmp_path, plugin):
    path = tmp_path / "faults.json"
    assert plugin.read_faults(path) == {}
    path.write_text("{not json")
    assert plugin.read_faults(path) == {}
    path.write_text('{"GPU-a": "48", "GPU-b": 43}')
    assert plugin.read_faults(path) == {"GPU-a": 48, "GPU-b": 43}
    assert plugin.unhealthy(plugin.read_faults(path)) == {"GPU-a"}
