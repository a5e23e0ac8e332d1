"""Kubernetes objects that run the simulated-GPU device plugin on every GPU node."""

import json

from .. import names

APP_NAME = "kindgpu-sim-device-plugin"
PLUGIN_DIR = "/var/lib/kubelet/device-plugins"
# Where the plugin leaves the fake nvidia-smi and its busybox for kubelet to mount into GPU containers;
# mounted at the same path in the plugin so the path it hands kubelet is the node's.
SHARE_DIR = "/var/lib/kindgpu-sim"
PLUGIN_PROGRAM = "/opt/kindgpu-sim/plugin.py"  # where the image puts it (Dockerfiles)
# Where a device plugin's pods run, NVIDIA's and this one: every GPU worker, tainted or not, first.
ON_GPU_NODES = {"nodeSelector": {names.LABEL_GPU_PRESENT: "true"}, "tolerations": [names.GPU_TOLERATION],
                "priorityClassName": "system-node-critical"}


def gpu_node_daemonset(name: str, namespace: str, container: dict, host_dirs: list[tuple], **pod_spec) -> dict:
    """A plugin DaemonSet on every GPU worker (ON_GPU_NODES) on the host's network, as both simulated plugins
    run: container mounts each of host_dirs, (volume name, path on the node and in the container, hostPath
    type, read-only), at the same path; pod_spec adds to the pod."""
    labels = {"app.kubernetes.io/name": name, **names.MANAGED_BY}
    # The simulated GPUs' files are bind mounts kindgpu may take away and put back while the plugin runs
    # (`invoke fault --remove-device`): HostToContainer shows the plugin each change.
    container = {**container, "volumeMounts": [{"name": n, "mountPath": p, "readOnly": ro,
                                                **({"mountPropagation": "HostToContainer"}
                                                   if p == names.SIM_DEVICE_MOUNT_DIR else {})}
                                               for n, p, _, ro in host_dirs]}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    **ON_GPU_NODES,
                    **pod_spec,
                    # Node-local sockets and files, or the API server through kube-proxy's rules in the
                    # node's own network: no pod network to wait for on a new node.
                    "hostNetwork": True,
                    "containers": [container],
                    "volumes": [{"name": n, "hostPath": {"path": p, "type": t}} for n, p, t, _ in host_dirs],
                },
            },
        },
    }


def sim_device_plugin_objects(image, product, memory_mib, time_slicing=None, gpus=(),
                              namespace=names.SYSTEM_NAMESPACE):
    """The DaemonSet (the only object needed) as a list of plain dicts, ready to apply.

    gpus: the plan's GPUs (inventory.GPU), every worker's: the fake nvidia-smi shows each with the
    minor number and PCI bus id the plan gives it.

    time_slicing (a sharing.TimeSlicing, when the spec has devicePlugin.sharing): the plugin
    advertises each GPU that many times, as its resource. Left out, the DaemonSet is as it was
    before sharing existed, so clusters without it see no change.
    """
    env = {
        "KINDGPU_SIM_PRODUCT": product,
        "KINDGPU_SIM_MEMORY_MIB": str(int(memory_mib)),
        "KINDGPU_SIM_DEVICE_DIR": names.SIM_DEVICE_MOUNT_DIR,
        "KINDGPU_SIM_SHARE_DIR": SHARE_DIR,
        "KINDGPU_SIM_PLUGIN_DIR": PLUGIN_DIR,
        "KINDGPU_SIM_PLAN_GPUS": json.dumps(
            [{"uuid": g.uuid, "minor": g.minor, "pci_bus_id": g.pci_bus_id} for g in gpus], separators=(",", ":")),
    }
    if time_slicing is not None:
        # A change rolls the plugin (the pod template changes), as a new config does NVIDIA's.
        env["KINDGPU_SIM_REPLICAS"] = str(time_slicing.replicas)
        env["KINDGPU_SIM_RESOURCE"] = time_slicing.resource
    host_dirs = [
        # (volume name, path on node and in container, hostPath type, read-only)
        ("device-plugins", PLUGIN_DIR, "Directory", False),
        ("sim-gpus", names.SIM_DEVICE_MOUNT_DIR, "Directory", True),
        ("share", SHARE_DIR, "DirectoryOrCreate", False),
    ]
    container = {
        "name": "sim-device-plugin",
        "image": image,
        "imagePullPolicy": "IfNotPresent",  # kindgpu imports it into the nodes (images.preload)
        "command": ["python3", PLUGIN_PROGRAM],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    # It never calls the API server: no token in it.
    return [gpu_node_daemonset(APP_NAME, namespace, container, host_dirs, automountServiceAccountToken=False)]
