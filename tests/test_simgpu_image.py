"""The plugin image, built offline with real docker, runs its plugin code and fake nvidia-smi."""

import json
import shutil

import docker
import pytest

from kindgpu import inventory
from kindgpu.simgpu import build
from kindgpu.simgpu import nvidia_smi as nvidia_smi_program

FIELDS = ("index", "uuid", "name", "pci.bus_id", "memory.total", "mig.mode.current")


@pytest.mark.e2e
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
