"""A fake kubelet speaking real gRPC over unix sockets, and a node's directories beside it.

Used by the device plugin's tests: tests/test_simgpu_plugin.py (the plugin in this process) and
tests/e2e/test_simgpu_image.py (the plugin in its image). Their fixtures are in conftest.py.
"""

import queue
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from kindgpu import inventory
from kindgpu.simgpu import manifest

SIMGPU_DIR = Path(manifest.__file__).parent
# The node is the second worker of a simulated host's plan: it has the host's GPUs 2 and 3, and
# GPU 4 when a test adds it. Their minors and bus ids are the plan's (2, 0000:12:00.0, ...).
HOST = inventory.simulated_inventory(5, cluster="fake-kubelet")
UUIDS = [g.uuid for g in HOST.gpus[2:]]
PLAN_GPUS = [{"uuid": g.uuid, "minor": g.minor, "pci_bus_id": g.pci_bus_id} for g in HOST.gpus]


class FakeKubelet:
    """kubelet's Registration service on <plugin dir>/kubelet.sock; remembers each Register."""

    def __init__(self, api, plugin_dir):
        api_pb2, api_pb2_grpc = api
        self.registrations = queue.Queue()
        self.socket = Path(plugin_dir) / "kubelet.sock"
        kubelet = self

        class Registration(api_pb2_grpc.RegistrationServicer):
            def Register(self, request, context):
                kubelet.registrations.put(request)
                return api_pb2.Empty()

        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        api_pb2_grpc.add_RegistrationServicer_to_server(Registration(), self.server)
        self.server.add_insecure_port(f"unix://{self.socket}")
        self.server.start()

    def stop(self):
        self.server.stop(grace=None).wait()
        self.socket.unlink(missing_ok=True)


class Node:
    """A node's directories under `root` and its fake kubelet; the plugin runs beside them."""

    def __init__(self, api, plugin, root):
        self.api_pb2, self.api_pb2_grpc = api
        # The plugin's image has a static busybox; the host may have none.
        busybox = Path(root) / "busybox-stand-in"
        busybox.write_text("stands in for the plugin image's /bin/busybox\n")
        self.settings = plugin.Settings(
            product="NVIDIA H200", memory_mib=143771, device_dir=Path(root) / "sim-gpus",
            share_dir=Path(root) / "share", plugin_dir=Path(root) / "device-plugins",
            plan_gpus=PLAN_GPUS, busybox=busybox,
        )
        self.settings.device_dir.mkdir()
        self.settings.plugin_dir.mkdir()
        for uuid in UUIDS[:2]:
            (self.settings.device_dir / uuid).touch()
        self.kubelet = FakeKubelet(api, self.settings.plugin_dir)

    def registered(self, timeout=15):
        return self.kubelet.registrations.get(timeout=timeout)

    def connect(self, request):
        """Call the plugin back on the endpoint it registered, as kubelet does."""
        channel = grpc.insecure_channel(f"unix://{self.settings.plugin_dir / request.endpoint}")
        return self.api_pb2_grpc.DevicePluginStub(channel)
