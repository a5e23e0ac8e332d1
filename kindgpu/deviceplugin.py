"""The device plugin each GPU worker runs: NVIDIA's for real GPUs, kindgpu's for simulated ones; under
`gpuAllocation: dra` a DRA kubelet plugin instead: NVIDIA's DRA driver for real GPUs (nvdra), kindgpu's
simulated one (simdra) for simulated GPUs."""

from __future__ import annotations

from . import images, names, nvdra, sharing
from .nvdriver import DRIVER_ROOT, MASK_DIR, DriverLayout, mask_params_and_run
from .simdra import manifest as simdra_manifest
from .simgpu.manifest import APP_NAME, ON_GPU_NODES, sim_device_plugin_objects

# simgpu.build is imported where used: it imports Docker's client, which listing the tasks must not pay for.

NVIDIA_APP = "nvidia-device-plugin-ds"  # the label the seed's troubleshooting commands select on
NVIDIA_DAEMONSET = "nvidia-device-plugin-daemonset"
# The only directories the plugin looks for NVML in, under its driver root
# (cmd/nvidia-device-plugin/root.go, tryResolveLibrary, v0.17-v0.20).
NVML_SEARCHED = ("/usr/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                 "/lib64", "/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu")
# NVIDIA's plugin image's PATH (deployments/container/Dockerfile, v0.20.0): the plugin also looks
# for the driver's programs (nvidia-smi) under its driver root along it.
PLUGIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/busybox"
MASK_PARAMS = mask_params_and_run("nvidia-device-plugin")


def nvidia_image(spec):
    plugin = spec["devicePlugin"]
    return f"{plugin['image']}:{plugin['version']}"


def nvidia_daemonset(spec, driver: DriverLayout):
    """NVIDIA's static DaemonSet, set up for kind nodes.

    With a cdi-* strategy the plugin writes CDI specs for its own node's GPUs and the node's
    containerd injects them, so nodes need no NVIDIA runtime; the driver's libraries are read
    from the node's root, where the host's NVIDIA runtime put them (`driver`, see
    nvdriver.node_facts): the plugin searches only standard directories unless told.
    """
    plugin = spec["devicePlugin"]
    cdi = plugin["deviceListStrategy"].startswith("cdi")
    env = {
        "FAIL_ON_INIT_ERROR": "true",
        "DEVICE_LIST_STRATEGY": plugin["deviceListStrategy"],
        "DEVICE_ID_STRATEGY": plugin["deviceIDStrategy"],
        "NVIDIA_DRIVER_ROOT": "/",
        "CONTAINER_DRIVER_ROOT": DRIVER_ROOT,
    }
    if driver.nvml_dir not in NVML_SEARCHED:
        env["LD_LIBRARY_PATH"] = DRIVER_ROOT + driver.nvml_dir
    if driver.bin_dir and driver.bin_dir not in PLUGIN_PATH.split(":"):
        env["PATH"] = f"{driver.bin_dir}:{PLUGIN_PATH}"
    config = sharing.configured(spec)
    if config:
        # The --config-file flag, by its environment variable (cmd/nvidia-device-plugin/main.go), as
        # NVIDIA's Helm chart sets it (deployments/helm/nvidia-device-plugin/templates/daemonset-device-plugin.yml).
        env["CONFIG_FILE"] = sharing.CONFIG_FILE
    mounts = [("device-plugin", "/var/lib/kubelet/device-plugins", "/var/lib/kubelet/device-plugins", False),
              ("driver-root", "/", DRIVER_ROOT, True)]
    if cdi:
        env["NVIDIA_CDI_HOOK_PATH"] = "/usr/bin/nvidia-ctk"  # the host's, mounted into each worker
        mounts.append(("cdi-root", "/var/run/cdi", "/var/run/cdi", False))
    labels = {"name": NVIDIA_APP, **names.MANAGED_BY}
    config_mounts = [{"name": "plugin-config", "mountPath": sharing.CONFIG_DIR, "readOnly": True}] if config else []
    config_volumes = [{"name": "plugin-config", "configMap": {"name": sharing.CONFIG_MAP}}] if config else []
    template_meta = {"labels": labels}
    if config:
        # The plugin reads its config when it starts: a new one rolls the pods.
        template_meta["annotations"] = {sharing.CONFIG_ANNOTATION: sharing.config_digest(spec)}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NVIDIA_DAEMONSET, "namespace": names.SYSTEM_NAMESPACE, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"name": NVIDIA_APP}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": template_meta,
                "spec": {
                    **ON_GPU_NODES,
                    "containers": [
                        {
                            "name": "nvidia-device-plugin-ctr",
                            "image": nvidia_image(spec),
                            "imagePullPolicy": "IfNotPresent",
                            **({"command": ["sh", "-c", MASK_PARAMS]} if cdi else {}),
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                            # Writing CDI specs needs the device nodes; the others need nothing.
                            "securityContext": {"privileged": True} if cdi else {
                                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                            "volumeMounts": [{"name": n, "mountPath": p, "readOnly": ro}
                                             for n, _, p, ro in mounts]
                            + ([{"name": "params-mask", "mountPath": MASK_DIR}] if cdi else [])
                            + config_mounts,
                        }
                    ],
                    "volumes": [{"name": n, "hostPath": {"path": h}} for n, h, _, _ in mounts]
                    + ([{"name": "params-mask", "emptyDir": {"medium": "Memory"}}] if cdi else [])
                    + config_volumes,
                },
            },
        },
    }


def plugin_selector(plan):
    """Label selector of the plugin pods, for status and diagnostics."""
    if plan.dra:
        return f"app.kubernetes.io/name={simdra_manifest.APP_NAME if plan.simulated else nvdra.APP_NAME}"
    return f"app.kubernetes.io/name={APP_NAME}" if plan.simulated else f"name={NVIDIA_APP}"


def objects(plan, sim_image=None, driver=None, driver_root="/"):
    """The plugin's objects; real GPUs need the workers' driver layout (nvdriver.node_facts).
    Under DRA: the DeviceClass gpu.nvidia.com, the DRA plugin's rights and its DaemonSet (NVIDIA's, given
    the driver root its plugin needs in the workers: nvdra.driver_root)."""
    if plan.dra and not plan.simulated:
        return nvdra.objects(plan.spec, plan.runtime.kubernetes, driver_root)
    if plan.dra:
        gpus = [g for w in plan.gpu_workers for g in w.gpus]
        return simdra_manifest.sim_dra_objects(sim_image, gpus, plan.runtime.kubernetes)
    if plan.simulated:
        sim = plan.spec["simulate"]
        time_slicing = sharing.of(plan.spec) if sharing.configured(plan.spec) else None
        gpus = [g for w in plan.gpu_workers for g in w.gpus]
        return sim_device_plugin_objects(sim_image, sim["product"], sim["memoryMiB"], time_slicing, gpus)
    # The ConfigMap first: the DaemonSet's pods mount it.
    config = [sharing.config_map(plan.spec)] if sharing.configured(plan.spec) else []
    return [*config, nvidia_daemonset(plan.spec, driver)]


def image(plan):
    """The image the plugin DaemonSet runs (for simulated GPUs, built locally)."""
    if plan.dra and not plan.simulated:
        return nvdra.image(plan.spec)
    if plan.dra:
        from .simdra.build import image_tag

        return image_tag()
    if plan.simulated:
        from .simgpu.build import image_tag

        return image_tag()
    return nvidia_image(plan.spec)


def load_image(plan, docker, workers, progress):
    """Build (simulated GPUs, first time only) and preload the device plugin's image: its tag and
    the names of the nodes it was loaded into.

    workers: the Nodes to load it into. The create step preloads it, the device-plugin step
    loads what is still missing.
    """
    tag = image(plan)
    if plan.simulated:
        progress(f"building {tag} (first time only)")
        ensure_images(plan, docker)
    return tag, images.preload(docker, workers, tag, progress)


def smoke_image(plan):
    """For simulated GPUs, what smoke's pods run: the simulated device plugin's image (a shell and the
    fake nvidia-smi), under DRA too, where the claim's CDI spec mounts the claimed GPUs' nvidia-smi."""
    from .simgpu.build import image_tag

    return image_tag()


def ensure_images(plan, docker):
    """Build the simulated GPUs' images this plan needs (first time only): the simulated device
    plugin's (also smoke's), and under DRA the DRA plugin's."""
    from .simgpu.build import ensure_image

    ensure_image(docker)
    if plan.dra:
        from .simdra.build import ensure_image as ensure_dra_image

        ensure_dra_image(docker)
