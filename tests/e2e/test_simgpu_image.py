"""The plugin image, built offline with real docker, runs its plugin code, carries the static busybox
that runs the fake nvidia-smi in pods (tests/e2e/test_fake_nvidia_smi_images.py runs it there), and serves
a fake kubelet (tests/fake_kubelet.py) on the wire."""

import json

import docker

from fake_kubelet import PLAN_GPUS, UUIDS, Node
from kindgpu.simgpu import build


def test_offline_image_is_one_pruned_layer_with_the_plugin_and_a_static_busybox():
    client = docker.from_env()
    tag = build.ensure_image(client, offline=True)
    assert tag == build.image_tag() and client.images.get(tag)

    def run(*command):
        return client.containers.run(tag, list(command), remove=True, network_disabled=True).decode()

    # Static: its ELF program headers name no interpreter (PT_INTERP, 3) for a GPU container's image to have.
    program_types = ("import struct; d = open('/bin/busybox', 'rb').read(); "
                     "off, = struct.unpack_from('<Q', d, 0x20); size, n = struct.unpack_from('<HH', d, 0x36); "
                     "print(d[:4] == b'\\x7fELF', sorted({struct.unpack_from('<I', d, off + i * size)[0] "
                     "for i in range(n)}))")
    is_elf, types = run("python3", "-c", program_types).split(" ", 1)
    assert is_elf == "True" and 1 in eval(types) and 3 not in eval(types)  # PT_LOAD, no PT_INTERP
    assert run("/bin/busybox", "sh", "-c", "echo works") == "works\n"

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
           plugin.ENV_PLUGIN_DIR: str(settings.plugin_dir), plugin.ENV_PLAN_GPUS: json.dumps(PLAN_GPUS)}
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
        assert response.envs["KINDGPU_SIM_GPUS"] == f"{UUIDS[0]} 2 00000000:12:00.0 143771 NVIDIA H200"
        # The script, the image's own busybox and the health directory (Xids `nvidia-smi -q` shows), where
        # kubelet mounts them from.
        assert {m.host_path for m in response.mounts} == {str(settings.share_dir / "nvidia-smi"),
                                                           str(settings.share_dir / "busybox"),
                                                           str(settings.share_dir / "health")}
        assert (settings.share_dir / "nvidia-smi").read_bytes() == (build.CONTEXT_DIR / "nvidia-smi.sh").read_bytes()
        assert (settings.share_dir / "busybox").read_bytes()[:4] == b"\x7fELF"
        # SIGTERM (a DaemonSet rollout, a delete) ends it at once, not after the grace period.
        container.stop(timeout=20)
        assert container.wait(timeout=5)["StatusCode"] == 0
    finally:
        logs = container.logs().decode()
        container.remove(force=True)
        node.kubelet.stop()
    assert "advertising 2 GPU(s)" in logs
