"""The device plugin against a fake kubelet speaking real gRPC over unix sockets."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest

from fake_kubelet import UUIDS, FakeKubelet, Node
from kindgpu import inventory
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


def test_allocate_gives_the_gpus_and_a_working_nvidia_smi(node):
    stub = node.connect(node.registered())
    wanted = UUIDS[:2]
    request = node.api_pb2.AllocateRequest(
        container_requests=[node.api_pb2.ContainerAllocateRequest(devices_ids=wanted)])

    (response,) = stub.Allocate(request, timeout=5).container_responses

    # Indices follow the bus ids, which follow the node's sorted UUIDs.
    in_order = sorted(wanted)
    assert response.envs["NVIDIA_VISIBLE_DEVICES"] == ",".join(in_order)
    gpus = json.loads(response.envs["KINDGPU_SIM_GPUS"])
    assert [(g["uuid"], g["name"], g["memory_mib"]) for g in gpus] == [
        (u, "NVIDIA H200", 143771) for u in in_order]
    assert len({g["pci_bus_id"] for g in gpus}) == 2
    (mount,) = response.mounts
    assert (mount.container_path, mount.read_only) == ("/usr/bin/nvidia-smi", True)
    host_nvidia_smi = Path(mount.host_path)
    assert host_nvidia_smi.parent == node.settings.share_dir and os.access(host_nvidia_smi, os.X_OK)

    # What the container would see: the mounted nvidia-smi run with the allocated env.
    env = {"PATH": os.environ["PATH"], **response.envs}
    fields = ("index", "uuid", "name", "pci.bus_id", "memory.total", "mig.mode.current")
    listing = subprocess.run([sys.executable, host_nvidia_smi, "-L"], env=env,
                             capture_output=True, text=True, check=True).stdout
    assert listing == "".join(f"GPU {i}: NVIDIA H200 (UUID: {u})\n" for i, u in enumerate(in_order))
    csv = subprocess.run([sys.executable, host_nvidia_smi, f"--query-gpu={','.join(fields)}",
                          "--format=csv,noheader"], env=env, capture_output=True, text=True,
                         check=True).stdout
    rows = inventory.parse_query_csv(csv, fields=fields)
    assert [(r["index"], r["uuid"]) for r in rows] == list(enumerate(in_order))


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
    uuid = sorted(UUIDS[:2])[0]
    pb = shared_node.api_pb2
    # Two containers (two pods, as kubelet asks for each), each given a replica of the same GPU.
    request = pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=[f"{uuid}::0"]),
                                                     pb.ContainerAllocateRequest(devices_ids=[f"{uuid}::2"])])
    first, second = stub.Allocate(request, timeout=5).container_responses
    assert first.envs["NVIDIA_VISIBLE_DEVICES"] == second.envs["NVIDIA_VISIBLE_DEVICES"] == uuid
    # One container given two replicas of one GPU and one of the other sees each GPU once.
    other = sorted(UUIDS[:2])[1]
    (both,) = stub.Allocate(pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(
        devices_ids=[f"{uuid}::1", f"{other}::0", f"{uuid}::0"])]), timeout=5).container_responses
    assert both.envs["NVIDIA_VISIBLE_DEVICES"] == f"{uuid},{other}"
    env = {"PATH": os.environ["PATH"], **both.envs}
    listing = subprocess.run([sys.executable, shared_node.settings.nvidia_smi, "--query-gpu=uuid",
                              "--format=csv,noheader"], env=env, capture_output=True, text=True, check=True).stdout
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
