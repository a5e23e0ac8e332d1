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
UUIDS = [g.uuid for g in inventory.simulated_inventory(3).gpus]


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
        self.settings = plugin.Settings(
            product="NVIDIA H200", memory_mib=143771, device_dir=Path(root) / "sim-gpus",
            share_dir=Path(root) / "share", plugin_dir=Path(root) / "device-plugins",
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
