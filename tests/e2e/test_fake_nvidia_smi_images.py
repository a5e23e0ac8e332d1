"""The fake nvidia-smi as a pod runs it, with real Docker: the plugin, in its offline image, answers a
fake kubelet's Allocate; a container gets the mounts and environment of that answer, in an image
holding only a static busybox and in an image with no shell at all (both made here from a tarball,
no registry). It prints what the plan says, exactly as the host's sh prints it (the unit tests'
reference, tests/test_simgpu_nvidia_smi.py)."""

import io
import json
import subprocess
import tarfile
import tempfile
import time

import docker
import docker.errors
import pytest

from fake_kubelet import PLAN_GPUS, UUIDS, Node
from kindgpu.simgpu import build

QUERY = "--query-gpu=index,uuid,name,pci.bus_id,memory.total,minor_number"
ARGS = (["-L"], [QUERY, "--format=csv"], ["-i", "1", QUERY, "--format=csv,noheader,nounits"],
        ["--query-gpu=count,driver_version,mig.mode.current", "--format=csv,noheader"])


@pytest.fixture(scope="module")
def client():
    return docker.from_env()


@pytest.fixture(scope="module")
def plugin_image(client):
    return build.ensure_image(client, offline=True)


def import_image(client, repository, entries):
    """An image of exactly `entries`: {path: bytes (an executable file) or str (a symlink's target)}."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for path, content in entries.items():
            info = tarfile.TarInfo(path)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755
                tar.addfile(info, io.BytesIO(content))
    tag = f"{repository}:{int(time.time() * 1000)}"
    client.api.import_image_from_data(data.getvalue(), repository=repository, tag=tag.split(":")[1])
    return tag


def file_of(client, image, path):
    container = client.containers.create(image)
    try:
        stream, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            return tar.extractfile(tar.getmembers()[0]).read()
    finally:
        container.remove()


@pytest.fixture(scope="module")
def images(client, plugin_image):
    """{"busybox": a static busybox and its applets' links, "no-shell": one data file, nothing to run}."""
    busybox = file_of(client, plugin_image, "/bin/busybox")
    applets = client.containers.run(plugin_image, ["/bin/busybox", "--list"], remove=True).decode().split()
    assert "sh" in applets
    made = {
        "busybox": import_image(client, "kindgpu-test/busybox-only",
                                {"bin/busybox": busybox, **{f"bin/{a}": "busybox" for a in applets if a != "busybox"}}),
        "no-shell": import_image(client, "kindgpu-test/no-shell", {"etc/data.txt": b"no program here\n"}),
    }
    yield made
    for tag in made.values():
        client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def allocation(client, plugin_image, plugin_api, plugin):
    """The plugin's answer for the node's two GPUs (the host's GPUs 2 and 3 in the plan)."""
    with tempfile.TemporaryDirectory(prefix="simgpu-") as node_dir:
        node = Node(plugin_api, plugin, node_dir)
        settings = node.settings
        env = {plugin.ENV_PRODUCT: settings.product, plugin.ENV_MEMORY_MIB: str(settings.memory_mib),
               plugin.ENV_DEVICE_DIR: str(settings.device_dir), plugin.ENV_SHARE_DIR: str(settings.share_dir),
               plugin.ENV_PLUGIN_DIR: str(settings.plugin_dir),
               plugin.ENV_PLAN_GPUS: json.dumps(PLAN_GPUS)}  # as the DaemonSet gives it
        container = client.containers.run(plugin_image, detach=True, environment=env, network_disabled=True,
                                          volumes={node_dir: {"bind": node_dir, "mode": "rw"}})
        try:
            stub = node.connect(node.registered(timeout=60))
            request = node.api_pb2.AllocateRequest(
                container_requests=[node.api_pb2.ContainerAllocateRequest(devices_ids=UUIDS[:2])])
            (response,) = stub.Allocate(request, timeout=5).container_responses
            yield response
        finally:
            container.remove(force=True)
            node.kubelet.stop()


def run(client, image, command, allocation, **env):
    """(exit status, stdout, stderr) of `command` in a container given the allocation, as kubelet gives it."""
    volumes = {m.host_path: {"bind": m.container_path, "mode": "ro" if m.read_only else "rw"}
               for m in allocation.mounts}
    container = client.containers.create(image, command, environment={**allocation.envs, **env},
                                         network_disabled=True, volumes=volumes)
    try:
        container.start()
        status = container.wait(timeout=30)["StatusCode"]
        return (status, container.logs(stdout=True, stderr=False).decode(),
                container.logs(stdout=False, stderr=True).decode())
    finally:
        container.remove(force=True)


def on_the_host(allocation, *args):
    """The reference: the same script, files and environment, run by the host's sh."""
    (script,) = [m.host_path for m in allocation.mounts if m.container_path == "/usr/bin/nvidia-smi"]
    env = {"PATH": "/usr/bin:/bin", **allocation.envs}
    return subprocess.run(["/bin/sh", script, *args], env=env, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("image", ["busybox", "no-shell"])
def test_nvidia_smi_prints_the_plans_gpus_in_any_image(image, client, images, allocation):
    for args in ARGS:
        assert run(client, images[image], ["nvidia-smi", *args], allocation) == (
            0, on_the_host(allocation, *args), ""), args
    # The node has the host's GPUs 2 and 3: indices 0 and 1, with the plan's minors and bus ids.
    status, out, _ = run(client, images[image], ["/usr/bin/nvidia-smi", QUERY, "--format=csv,noheader"], allocation)
    assert out == (f"0, {UUIDS[0]}, NVIDIA H200, 00000000:12:00.0, 143771 MiB, 2\n"
                   f"1, {UUIDS[1]}, NVIDIA H200, 00000000:13:00.0, 143771 MiB, 3\n")
    status, banner, _ = run(client, images[image], ["nvidia-smi"], allocation)
    assert status == 0 and banner.splitlines()[1:] == on_the_host(allocation).splitlines()[1:]
    assert banner.split()[0] in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # busybox's date ran
    # No GPU given (a pod the plugin gave none would not have nvidia-smi; this is what it says then).
    assert run(client, images[image], ["nvidia-smi", "-L"], allocation, KINDGPU_SIM_GPUS="") == (
        6, "No devices were found\n", "")


def test_the_busybox_image_runs_it_from_its_own_shell(client, images, allocation):
    status, out, _ = run(client, images["busybox"], ["sh", "-c", "nvidia-smi -L | wc -l; command -v nvidia-smi"],
                         allocation)
    assert (status, out.split()) == (0, ["2", "/usr/bin/nvidia-smi"])


def test_the_no_shell_image_really_has_no_shell(client, images, allocation):
    with pytest.raises(docker.errors.APIError, match="executable file not found|no such file"):
        run(client, images["no-shell"], ["sh", "-c", "true"], allocation)
