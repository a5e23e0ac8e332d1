"""kindgpu's simulated-GPU kubelet device plugin (deviceplugin v1beta1).

Runs on each simulated GPU node (a DaemonSet). Its GPUs are the files named by UUID in
the sim-gpus directory; it advertises them to kubelet as nvidia.com/gpu and, for each
allocation, hands the container NVIDIA_VISIBLE_DEVICES, a description of the GPUs, and a
fake nvidia-smi that prints them: a POSIX sh script (nvidia-smi.sh) with the static busybox
that runs it, both mounted read-only, so it works in any image, with or without a shell.
A GPU's minor number and PCI bus id are the plan's (KINDGPU_SIM_PLAN_GPUS, from the manifest).

Time-slicing (KINDGPU_SIM_REPLICAS above 1): each GPU is advertised that many times, with the
device IDs NVIDIA's plugin gives replicas, "<uuid>::<n>" (k8s-device-plugin v0.20.0,
internal/rm/devices.go NewAnnotatedID, internal/rm/device_map.go updateDeviceMapWithReplicas),
optionally as another resource (KINDGPU_SIM_RESOURCE, nvidia.com/gpu.shared with
renameByDefault). A container given replicas gets their GPUs, each once, as NVIDIA's plugin does
(internal/plugin/server.go uniqueDeviceIDsFromAnnotatedDeviceIDs): pods given replicas of one
GPU see the same GPU.

This file runs as a program inside the plugin image, beside nvidia-smi.sh and the gRPC
code generated from api.proto (api_pb2, api_pb2_grpc), so it imports nothing from kindgpu.
"""

import json
import logging
import os
import shutil
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

import api_pb2
import api_pb2_grpc

API_VERSION = "v1beta1"
RESOURCE = "nvidia.com/gpu"
ENDPOINT = "kindgpu-sim-gpu.sock"
KUBELET_SOCKET = "kubelet.sock"
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
# Faults kindgpu injects (`invoke fault`): {uuid: xid} in the share directory, which the node has.
FAULTS_FILE = "faults.json"
# The Xids NVIDIA's plugin leaves healthy: errors of an application, not of the GPU
# (k8s-device-plugin v0.20.0, internal/rm/health.go: applicationErrorXids).
APPLICATION_XIDS = frozenset({13, 31, 43, 45, 68, 109})

# Settings, from the environment the DaemonSet gives (manifest.py).
ENV_PRODUCT = "KINDGPU_SIM_PRODUCT"
ENV_MEMORY_MIB = "KINDGPU_SIM_MEMORY_MIB"
ENV_DEVICE_DIR = "KINDGPU_SIM_DEVICE_DIR"
ENV_SHARE_DIR = "KINDGPU_SIM_SHARE_DIR"
ENV_PLUGIN_DIR = "KINDGPU_SIM_PLUGIN_DIR"
ENV_REPLICAS = "KINDGPU_SIM_REPLICAS"  # optional: time-slicing replicas per GPU (1: not shared)
ENV_RESOURCE = "KINDGPU_SIM_RESOURCE"  # optional: the resource advertised (default nvidia.com/gpu)
# The plan's GPUs: a JSON list of {uuid, minor, pci_bus_id}; a GPU it lacks gets its place on the node.
ENV_PLAN_GPUS = "KINDGPU_SIM_PLAN_GPUS"
REPLICA_SEPARATOR = "::"
# What a GPU container gets.
ENV_VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
ENV_GPUS = "KINDGPU_SIM_GPUS"  # one line per GPU: "<uuid> <minor> <bus id> <memory MiB> <name>"
NVIDIA_SMI_PATH = "/usr/bin/nvidia-smi"
# What nvidia-smi shows of the GPUs' health (`nvidia-smi -q`): kindgpu writes an "xids" file there; a
# directory, so what is written after a container starts shows in it.
HEALTH_DIR = "health"
HEALTH_MOUNT = "/usr/local/kindgpu/health"
BUSYBOX_PATH = "/usr/local/kindgpu/bin/busybox"  # nvidia-smi.sh's interpreter, on its first line
# In the plugin's image: Debian's busybox-static, which needs no library from the GPU container.
BUSYBOX_SOURCE = "/bin/busybox"
NVIDIA_SMI_SCRIPT = "nvidia-smi.sh"

POLL_SECONDS = 2.0

log = logging.getLogger("kindgpu-sim-device-plugin")


class Settings:
    def __init__(self, product, memory_mib, device_dir, share_dir, plugin_dir, replicas=1, resource=RESOURCE,
                 plan_gpus=(), busybox=BUSYBOX_SOURCE):
        self.product = product
        self.memory_mib = int(memory_mib)
        self.replicas = int(replicas)
        if self.replicas < 1:
            raise ValueError(f"{ENV_REPLICAS} must be 1 or more, got {replicas!r}")
        self.resource = resource
        self.device_dir = Path(device_dir)
        # Must be the same path on the node and in this container: kubelet mounts
        # files from it into GPU containers.
        self.share_dir = Path(share_dir)
        self.plugin_dir = Path(plugin_dir)
        # {uuid: (minor, bus id)}, as the plan gives them.
        self.plan_gpus = {g["uuid"]: (int(g["minor"]), g["pci_bus_id"]) for g in plan_gpus}
        self.busybox = Path(busybox)

    @classmethod
    def from_env(cls, env=os.environ):
        """The DaemonSet spells out every setting but sharing's, which only shared GPUs have."""
        return cls(
            product=env[ENV_PRODUCT],
            memory_mib=env[ENV_MEMORY_MIB],
            device_dir=env[ENV_DEVICE_DIR],
            share_dir=env[ENV_SHARE_DIR],
            plugin_dir=env[ENV_PLUGIN_DIR],
            replicas=env.get(ENV_REPLICAS, "1"),
            resource=env.get(ENV_RESOURCE) or RESOURCE,
            plan_gpus=json.loads(env.get(ENV_PLAN_GPUS) or "[]"),
        )

    @property
    def nvidia_smi(self):
        return self.share_dir / "nvidia-smi"

    @property
    def faults(self):
        return self.share_dir / FAULTS_FILE

    @property
    def health(self):
        return self.share_dir / HEALTH_DIR

    @property
    def shared_busybox(self):
        return self.share_dir / "busybox"


def discover(device_dir):
    """The simulated GPUs of this node: one file per GPU, named by its UUID; sorted."""
    return sorted(p.name for p in Path(device_dir).iterdir() if p.name.startswith("GPU-"))


def device_ids(uuids, replicas):
    """The IDs advertised to kubelet: the UUIDs, or each GPU's replicas "<uuid>::<n>"."""
    if replicas <= 1:
        return list(uuids)
    return [f"{u}{REPLICA_SEPARATOR}{n}" for u in uuids for n in range(replicas)]


def read_faults(path):
    """{uuid: xid} of the GPUs kindgpu made fail; {} when none (or the file is being replaced)."""
    try:
        return {uuid: int(xid) for uuid, xid in json.loads(Path(path).read_text()).items()}
    except (FileNotFoundError, ValueError, AttributeError, TypeError):
        return {}


def unhealthy(faults):
    """The GPUs an Xid makes unhealthy, as NVIDIA's plugin judges them (application Xids do not)."""
    return {uuid for uuid, xid in faults.items() if xid not in APPLICATION_XIDS}


def gpu_of(device_id):
    """The GPU a device ID names: a replica's UUID before "::", else the ID itself."""
    return device_id.split(REPLICA_SEPARATOR, 1)[0]


def nvidia_smi_bus_id(bus_id):
    """A PCI bus id as nvidia-smi prints it: 00000000:13:00.0 (the plan has 0000:13:00.0)."""
    domain, _, rest = bus_id.partition(":")
    return f"{int(domain, 16):08X}:{rest.upper()}"


def describe(uuids, node_uuids, settings):
    """What the fake nvidia-smi shows for `uuids`, in bus-id order, as NVML enumerates them.

    Minor number and bus id are the plan's. A GPU the plan lacks (a file put in the sim-gpus
    directory by hand) takes its place among the node's sorted UUIDs, and logs that.
    """
    gpus = []
    for uuid in uuids:
        if uuid in settings.plan_gpus:
            minor, bus_id = settings.plan_gpus[uuid]
        else:
            log.warning("%s is not in the plan: giving it minor and bus id by its place on this node", uuid)
            minor, bus_id = node_uuids.index(uuid), f"0000:{0x10 + node_uuids.index(uuid):02x}:00.0"
        gpus.append({"uuid": uuid, "name": settings.product, "memory_mib": settings.memory_mib,
                     "pci_bus_id": nvidia_smi_bus_id(bus_id), "minor": minor})
    return sorted(gpus, key=lambda g: g["pci_bus_id"])


def gpu_lines(gpus):
    """$KINDGPU_SIM_GPUS for nvidia-smi.sh: a line per GPU, the name last (it may hold spaces)."""
    return "\n".join(f"{g['uuid']} {g['minor']} {g['pci_bus_id']} {g['memory_mib']} {g['name']}" for g in gpus)


class SimulatedGPUPlugin(api_pb2_grpc.DevicePluginServicer):
    def __init__(self, settings):
        self.settings = settings
        self.stopping = threading.Event()

    def GetDevicePluginOptions(self, request, context):
        return api_pb2.DevicePluginOptions()

    def ListAndWatch(self, request, context):
        """Send the device list now and again whenever the sim-gpus directory or the faults change.

        A GPU given an Xid is logged as NVIDIA's plugin logs one, and reported Unhealthy unless the Xid
        is an application's: kubelet then offers one GPU less; pods on it keep running."""
        sent, logged = None, {}
        while context.is_active() and not self.stopping.is_set():
            uuids = discover(self.settings.device_dir)
            faults = {u: x for u, x in read_faults(self.settings.faults).items() if u in uuids}
            for uuid, xid in faults.items():
                if logged.get(uuid) != xid:
                    critical = xid not in APPLICATION_XIDS
                    log.warning("XidCriticalError: Xid=%d on Device=%s; %s", xid, uuid,
                                "marking device as unhealthy" if critical else "an application error: skipped")
            logged = faults
            bad = unhealthy(faults)
            state = (uuids, bad)
            if state != sent:
                log.info("advertising %d GPU(s) × %d as %s: %s%s", len(uuids), self.settings.replicas,
                         self.settings.resource, ", ".join(uuids),
                         f"; unhealthy: {', '.join(sorted(bad))}" if bad else "")
                yield api_pb2.ListAndWatchResponse(
                    devices=[api_pb2.Device(ID=i, health=UNHEALTHY if gpu_of(i) in bad else HEALTHY)
                             for i in device_ids(uuids, self.settings.replicas)]
                )
                sent = state
            self.stopping.wait(POLL_SECONDS)

    def Allocate(self, request, context):
        node_uuids = discover(self.settings.device_dir)
        response = api_pb2.AllocateResponse()
        known = set(device_ids(node_uuids, self.settings.replicas))
        for container in request.container_requests:
            unknown = [i for i in container.devices_ids if i not in known]
            if unknown:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown GPU(s): {unknown}")
            # Replicas of one GPU give that GPU once.
            gpus = describe(set(map(gpu_of, container.devices_ids)), node_uuids, self.settings)
            log.info("allocating %s (device IDs %s)", ", ".join(g["uuid"] for g in gpus),
                     ", ".join(container.devices_ids))
            response.container_responses.append(
                api_pb2.ContainerAllocateResponse(
                    envs={
                        ENV_VISIBLE_DEVICES: ",".join(g["uuid"] for g in gpus),
                        ENV_GPUS: gpu_lines(gpus),
                    },
                    mounts=[
                        api_pb2.Mount(container_path=NVIDIA_SMI_PATH, host_path=str(self.settings.nvidia_smi),
                                      read_only=True),
                        api_pb2.Mount(container_path=BUSYBOX_PATH, host_path=str(self.settings.shared_busybox),
                                      read_only=True),
                        api_pb2.Mount(container_path=HEALTH_MOUNT, host_path=str(self.settings.health),
                                      read_only=True),
                    ],
                )
            )
        return response


def install_nvidia_smi(settings):
    """Put the fake nvidia-smi and its busybox where kubelet can mount them into GPU containers, and
    the directory of their health (no Xid until kindgpu writes one)."""
    settings.share_dir.mkdir(parents=True, exist_ok=True)
    settings.health.mkdir(exist_ok=True)
    (settings.health / "xids").touch()
    for source, target in ((Path(__file__).with_name(NVIDIA_SMI_SCRIPT), settings.nvidia_smi),
                           (settings.busybox, settings.shared_busybox)):
        staging = target.with_suffix(".new")
        shutil.copyfile(source, staging)
        staging.chmod(0o755)
        os.replace(staging, target)  # atomic: running pods never see half a file


def serve(plugin):
    """Listen on this plugin's socket in the device-plugins directory."""
    socket = plugin.settings.plugin_dir / ENDPOINT
    socket.unlink(missing_ok=True)
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    api_pb2_grpc.add_DevicePluginServicer_to_server(plugin, server)
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    return server


def register(plugin_dir, timeout=10, resource=RESOURCE):
    """Tell kubelet about this plugin; kubelet then calls back on our socket."""
    with grpc.insecure_channel(f"unix://{Path(plugin_dir) / KUBELET_SOCKET}") as channel:
        api_pb2_grpc.RegistrationStub(channel).Register(
            api_pb2.RegisterRequest(
                version=API_VERSION,
                endpoint=ENDPOINT,
                resource_name=resource,
                options=api_pb2.DevicePluginOptions(),
            ),
            timeout=timeout,
        )


def _inode(path):
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def run(settings, stop=None):
    """Serve and register; start over whenever kubelet restarts, until `stop` is set.

    A restarting kubelet recreates kubelet.sock and removes the plugins' sockets, so
    either change means: serve again and register again.
    """
    stop = stop or threading.Event()
    kubelet_socket = settings.plugin_dir / KUBELET_SOCKET
    install_nvidia_smi(settings)
    while not stop.is_set():
        plugin = SimulatedGPUPlugin(settings)
        server = serve(plugin)
        kubelet = _inode(kubelet_socket)
        try:
            register(settings.plugin_dir, resource=settings.resource)
            log.info("registered %s with kubelet as %s", settings.resource, ENDPOINT)
            own_socket = settings.plugin_dir / ENDPOINT
            while not stop.wait(POLL_SECONDS / 4):
                if _inode(kubelet_socket) != kubelet or not own_socket.exists():
                    log.info("kubelet restarted: registering again")
                    break
        except grpc.RpcError as error:
            log.warning("registration failed, retrying: %s", error)
            stop.wait(POLL_SECONDS)
        finally:
            plugin.stopping.set()
            server.stop(grace=1).wait()


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = Settings.from_env()
    except KeyError as missing:
        raise SystemExit(f"environment variable {missing} is not set")
    log.info(
        "kindgpu simulated GPU device plugin: %s, %d MiB, devices in %s, %d replica(s) per GPU as %s",
        settings.product,
        settings.memory_mib,
        settings.device_dir,
        settings.replicas,
        settings.resource,
    )
    stop = threading.Event()
    # PID 1 of its container: without a handler SIGTERM is ignored, and every rollout or delete of
    # the DaemonSet waits out the 30 s grace period per node.
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    run(settings, stop)
    log.info("stopped")


if __name__ == "__main__":
    main()
