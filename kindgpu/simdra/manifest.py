"""Kubernetes objects that publish simulated GPUs through DRA: kindgpu's kubelet plugin on every GPU
worker (main.go), what it may do in the API, and NVIDIA's DeviceClass."""

from __future__ import annotations

import json
from collections.abc import Iterable

from .. import gfd, names, versions
from ..inventory import GPU
from ..simgpu.manifest import gpu_node_daemonset

APP_NAME = "kindgpu-sim-dra-plugin"
DRIVER = "gpu.nvidia.com"  # NVIDIA's DRA driver's name: its DeviceClass and CEL selectors match unchanged
DEVICE_CLASS = DRIVER  # as NVIDIA's chart names it
# NVIDIA's chart (deployments/helm/nvidia-dra-driver-gpu/templates/deviceclass-gpu.yaml, v25.12.0).
DEVICE_CLASS_CEL = "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'gpu'"
# kubelet's, on every node: the plugin's own socket dir under plugins/, its registration socket in plugins_registry/.
PLUGINS_DIR = "/var/lib/kubelet/plugins"
REGISTRY_DIR = "/var/lib/kubelet/plugins_registry"
CDI_ROOT = "/var/run/cdi"  # where containerd reads CDI specs (kindgpu turns CDI on in every node)
# Where the plugin leaves the fake nvidia-smi and its busybox for CDI to mount into containers: the
# same path on the node and in the plugin, since a CDI mount names a node path.
SHARE_DIR = "/var/lib/kindgpu-sim-dra"
# What the simulated driver reports, as NVML would (versions the attributes can compare): a driver of
# the 580 line, whose CUDA is 13.0. "-simulated" marks it; it still compares above 575.
DRIVER_VERSION = "580.0.0-simulated"
CUDA_DRIVER_VERSION = "13.0"
# go-nvlib's GetArchitectureAsString names (vendor/github.com/NVIDIA/go-nvlib/pkg/nvlib/device/device.go),
# by compute capability major (and minor for 7.x and 8.x), as GFD's families (gfd.arch_family) are.
ARCHITECTURES = {"kepler": "Kepler", "maxwell": "Maxwell", "pascal": "Pascal", "volta": "Volta", "turing": "Turing",
                 "ampere": "Ampere", "ada-lovelace": "Ada Lovelace", "hopper": "Hopper", "blackwell": "Blackwell"}


def brand(product: str) -> str:
    """NVML's brand as go-nvlib's GetBrandAsString names it, guessed from the product name: data centre
    GPUs since Ampere say Nvidia, older ones Tesla."""
    if product.startswith("Tesla "):
        return "Tesla"
    if "GeForce" in product:
        return "GeForce"
    return "Nvidia"


def describe(gpu: GPU) -> dict:
    """One plan GPU as the plugin reads it (main.go's GPU): what NVML would say about it."""
    capability = gfd.compute_capability(gpu)
    family = gfd.arch_family(*capability) if capability else None
    return {
        "uuid": gpu.uuid,
        "minor": gpu.minor if gpu.minor is not None else gpu.index,
        "pci_bus_id": gpu.pci_bus_id,
        "name": gpu.name,
        "memory_mib": gpu.memory_mib,
        "brand": brand(gpu.name),
        "architecture": ARCHITECTURES.get(family, "Unknown"),  # NVML's word for what it does not know
        "compute_cap": f"{capability[0]}.{capability[1]}" if capability else "0.0",
    }


def device_class(kubernetes: versions.Version | None) -> dict:
    """NVIDIA's DeviceClass for full GPUs, with the extended-resource mapping (pods asking
    `nvidia.com/gpu` served through DRA) where the version has the field: from 1.34, behind the gate
    versions.dra_feature_gates turns on where it is off by default."""
    spec: dict = {"selectors": [{"cel": {"expression": DEVICE_CLASS_CEL}}]}
    if versions.dra_supported(kubernetes):
        spec["extendedResourceName"] = names.GPU_RESOURCE
    return {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
            "metadata": {"name": DEVICE_CLASS, "labels": dict(names.MANAGED_BY)}, "spec": spec}


def account_with_rights(account: str, role: str, namespace: str, labels: dict, rules: list[dict]) -> list[dict]:
    """A plugin's ServiceAccount, a ClusterRole of rules and the binding between them."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": account, "namespace": namespace, "labels": labels}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": role, "labels": labels}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": role, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]},
    ]


def rbac(namespace: str) -> list[dict]:
    """What the kubeletplugin helper does in the API: read the claims it prepares, keep the node's
    ResourceSlice (its controller lists, watches, creates, updates and deletes them) and read the
    node, the slice's owner."""
    labels = {"app.kubernetes.io/name": APP_NAME, **names.MANAGED_BY}
    rules = [
        {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims"], "verbs": ["get"]},
        {"apiGroups": ["resource.k8s.io"], "resources": ["resourceslices"],
         "verbs": ["get", "list", "watch", "create", "update", "delete"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
    ]
    return account_with_rights(APP_NAME, APP_NAME, namespace, labels, rules)


def daemonset(image: str, gpus: Iterable[GPU], namespace: str) -> dict:
    env = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "KINDGPU_SIM_PLAN_GPUS", "value": json.dumps([describe(g) for g in gpus], separators=(",", ":"))},
        {"name": "KINDGPU_SIM_DRIVER_VERSION", "value": DRIVER_VERSION},
        {"name": "KINDGPU_SIM_CUDA_DRIVER_VERSION", "value": CUDA_DRIVER_VERSION},
        {"name": "KINDGPU_SIM_DEVICE_DIR", "value": names.SIM_DEVICE_MOUNT_DIR},
        {"name": "KINDGPU_SIM_SHARE_DIR", "value": SHARE_DIR},
        {"name": "CDI_ROOT", "value": CDI_ROOT},
    ]
    host_dirs = [
        # (volume name, path on the node and in the container, hostPath type, read-only)
        ("plugins", PLUGINS_DIR, "DirectoryOrCreate", False),
        ("plugins-registry", REGISTRY_DIR, "DirectoryOrCreate", False),
        ("cdi", CDI_ROOT, "DirectoryOrCreate", False),
        ("sim-gpus", names.SIM_DEVICE_MOUNT_DIR, "Directory", True),
        ("share", SHARE_DIR, "DirectoryOrCreate", False),
    ]
    container = {
        "name": "plugin",
        "image": image,
        "imagePullPolicy": "IfNotPresent",  # built locally and imported into the nodes
        "env": env,
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        # Root in root-owned node directories is all it needs: sockets and files, no device.
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    return gpu_node_daemonset(APP_NAME, namespace, container, host_dirs, serviceAccountName=APP_NAME)


def sim_dra_objects(image: str, gpus: Iterable[GPU], kubernetes: versions.Version | None,
                    namespace: str = names.SYSTEM_NAMESPACE) -> list[dict]:
    """Everything to apply, in order: the DeviceClass, the plugin's account and rights, its DaemonSet.

    gpus: the plan's GPUs, every worker's; each plugin publishes those its node holds.
    kubernetes: the node image's version (plan.runtime.kubernetes), for the DeviceClass.
    """
    return [device_class(kubernetes), *rbac(namespace), daemonset(image, list(gpus), namespace)]
