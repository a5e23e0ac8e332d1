"""The device plugin each GPU worker runs: NVIDIA's for real GPUs, kindgpu's for simulated ones."""

from __future__ import annotations

from . import images, names
from .simgpu.manifest import APP_NAME, sim_device_plugin_objects

# simgpu.build is imported where used: it imports Docker's client, which listing the tasks must not pay for.

NVIDIA_APP = "nvidia-device-plugin-ds"  # the label the seed's troubleshooting commands select on
NVIDIA_DAEMONSET = "nvidia-device-plugin-daemonset"


def nvidia_image(spec):
    plugin = spec["devicePlugin"]
    return f"{plugin['image']}:{plugin['version']}"


def nvidia_daemonset(spec):
    """NVIDIA's static DaemonSet, set up for kind nodes.

    With a cdi-* strategy the plugin writes CDI specs for its own node's GPUs and the node's
    containerd injects them, so nodes need no NVIDIA runtime; the driver's libraries are read
    from the node's root, where the host's NVIDIA runtime put them.
    """
    plugin = spec["devicePlugin"]
    cdi = plugin["deviceListStrategy"].startswith("cdi")
    env = {
        "FAIL_ON_INIT_ERROR": "true",
        "DEVICE_LIST_STRATEGY": plugin["deviceListStrategy"],
        "DEVICE_ID_STRATEGY": plugin["deviceIDStrategy"],
        "NVIDIA_DRIVER_ROOT": "/",
        "CONTAINER_DRIVER_ROOT": "/driver-root",
    }
    mounts = [("device-plugin", "/var/lib/kubelet/device-plugins", "/var/lib/kubelet/device-plugins", False),
              ("driver-root", "/", "/driver-root", True)]
    if cdi:
        env["NVIDIA_CDI_HOOK_PATH"] = "/usr/bin/nvidia-ctk"  # the host's, mounted into each worker
        mounts.append(("cdi-root", "/var/run/cdi", "/var/run/cdi", False))
    labels = {"name": NVIDIA_APP, "app.kubernetes.io/managed-by": "kindgpu"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NVIDIA_DAEMONSET, "namespace": names.SYSTEM_NAMESPACE, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"name": NVIDIA_APP}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {names.LABEL_GPU_PRESENT: "true"},
                    "tolerations": [{"key": names.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
                    "priorityClassName": "system-node-critical",
                    "containers": [
                        {
                            "name": "nvidia-device-plugin-ctr",
                            "image": nvidia_image(spec),
                            "imagePullPolicy": "IfNotPresent",
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                            # Writing CDI specs needs the device nodes; the others need nothing.
                            "securityContext": {"privileged": True} if cdi else {
                                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                            "volumeMounts": [{"name": n, "mountPath": p, "readOnly": ro}
                                             for n, _, p, ro in mounts],
                        }
                    ],
                    "volumes": [{"name": n, "hostPath": {"path": h}} for n, h, _, _ in mounts],
                },
            },
        },
    }


def plugin_selector(simulated):
    """Label selector of the plugin pods, for status and diagnostics."""
    return f"app.kubernetes.io/name={APP_NAME}" if simulated else f"name={NVIDIA_APP}"


def objects(plan, sim_image=None):
    if plan.simulated:
        sim = plan.spec["simulate"]
        return sim_device_plugin_objects(sim_image, sim["product"], sim["memoryMiB"])
    return [nvidia_daemonset(plan.spec)]


def image(plan):
    """The image the plugin DaemonSet runs (for simulated GPUs, built locally)."""
    if plan.simulated:
        from .simgpu.build import image_tag

        return image_tag()
    return nvidia_image(plan.spec)


def load_image(plan, docker, workers, progress):
    """Build (simulated GPUs, first time only) and preload the device plugin's image; its tag.

    workers: the Nodes to load it into. The create step preloads it, the device-plugin step
    loads what is still missing.
    """
    tag = image(plan)
    if plan.simulated:
        from .simgpu.build import ensure_image

        progress(f"building {tag} (first time only)")
        ensure_image(docker)
    images.preload(docker, workers, tag, progress)
    return tag
