"""The plugin image, built offline with real docker, runs its plugin code and fake nvidia-smi, and
serves a fake kubelet (tests/fake_kubelet.py) on the wire."""

import json
import shutil

import docker

from fake_kubelet import UUIDS, Node
from kindgpu import inventory
from kindgpu.simgpu import build, nvidia_smi as nvidia_smi_program

FIELDS = ("index", "uuid", "name", "pci.bus_id", "memory.total", "mig.mode.current")


def test_offline_image_runs_the_fake_nvidia_smi(tmp_path):
    client = docker.from_env()
    tag = build.ensure_image(client, offline=True)
    assert tag == build.image_tag() and client.images.get(tag)

    gpus = [
        {"uuid": g.uuid, "name": g.name, "memory_mib": g.memory_mib,
         "pci_bus_id": "0000" + g.pci_bus_id.upper(), "minor": g.minor}
        for g in inventory.simulated_inventory(2).gpus
    ]

    # Mounted as kubelet mounts it for the plugin: an executable file, read-only.
    nvidia_smi = tmp_path / "nvidia-smi"
    shutil.copyfile(nvidia_smi_program.__file__, nvidia_smi)
    nvidia_smi.chmod(0o755)

    def run(*command):
        output = client.containers.run(
            tag, list(command), environment={"KINDGPU_SIM_GPUS": json.dumps(gpus)}, remove=True,
            network_disabled=True, volumes={str(nvidia_smi): {"bind": "/usr/bin/nvidia-smi", "mode": "ro"}})
        return output.decode()

    assert run("nvidia-smi", "-L") == "".join(
        f"GPU {i}: NVIDIA H200 (UUID: {g['uuid']})\n" for i, g in enumerate(gpus))
    rows = inventory.parse_query_csv(run("nvidia-smi", f"--query-gpu={','.join(FIELDS)}", "--format=csv"))
    assert [(r["index"], r["uuid"], r["memory_mib"]) for r in rows] == [
        (i, g["uuid"], g["memory_mib"]) for i, g in enumerate(gpus)]

    # The generated gRPC code loads on the image's own grpcio and protobuf.
    check = "import sys; sys.path.insert(0, '/opt/kindgpu-sim'); import plugin; print(plugin.RESOURCE)"
    assert run("python3", "-c", check) == "nvidia.com/gpu\n"

    # One layer, without what nothing in it reads (documentation, gRPC code generator), licences kept.
    assert len(client.images.get(tag).history()) == 1
    listing = run("sh", "-c", "ls /usr/share/doc/bash /usr/share/man /usr/lib/python3/dist-packages 2>&1; true")
    assert "copyright" in listing and "grpc_tools" not in listing and "grpc\n" in listing
    assert "No such file" in listing  # /usr/share/man


def test_plugin_in_the_offline_image_serves_kubelet(plugin_api, plugin, node_dir):
    """The image's own grpcio, protobuf and generated code, on the wire with a kubelet."""
    client = docker.from_env()
    tag = build.ensure_image(client, offline=True)
    node = Node(plugin_api, plugin, node_dir)
    settings = node.settings
    env = {plugin.ENV_PRODUCT: settings.product, plugin.ENV_MEMORY_MIB: str(settings.memory_mib),
           plugin.ENV_DEVICE_DIR: str(settings.device_dir), plugin.ENV_SHARE_DIR: str(settings.share_dir),
           plugin.ENV_PLUGIN_DIR: str(settings.plugin_dir)}
    container = client.containers.run(tag, detach=True, environment=env, network_disabled=True,
                                      volumes={node_dir: {"bind": node_dir, "mode": "rw"}})
    try:
        stub = node.connect(node.registered(timeout=60))
        devices = next(stub.ListAndWatch(node.api_pb2.Empty(), timeout=15)).devices
        assert sorted(d.ID for d in devices) == sorted(UUIDS[:2])
        request = node.api_pb2.AllocateRequest(
            container_requests=[node.api_pb2.ContainerAllocateRequest(devices_ids=UUIDS[:1])])
        (response,) = stub.Allocate(request, timeout=5).container_responses
        assert response.envs["NVIDIA_VISIBLE_DEVICES"] == UUIDS[0]
        assert (settings.share_dir / "nvidia-smi").is_file()
        # SIGTERM (a DaemonSet rollout, a delete) ends it at once, not after the grace period.
        container.stop(timeout=20)
        assert container.wait(timeout=5)["StatusCode"] == 0
    finally:
        logs = container.logs().decode()
        container.remove(force=True)
        node.kubelet.stop()
    assert "advertising 2 GPU(s)" in logs
