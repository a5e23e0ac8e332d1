"""NVIDIA's DRA driver for real GPUs under `gpuAllocation: dra`: its GPU kubelet plugin on every GPU
worker, its rights and NVIDIA's DeviceClass, rendered here (no Helm) from its chart at the pinned release
(kubernetes-sigs/dra-driver-nvidia-gpu v25.12.0, deployments/helm/dra-driver-nvidia-gpu/templates:
kubeletplugin.yaml's `gpus` container, rbac-kubeletplugin.yaml, deviceclass-gpu.yaml). The ComputeDomain
parts, the controller and the webhook are left out: a GPU claim needs none of them."""

from __future__ import annotations

from . import names, spec, versions
from .errors import KindgpuError
from .nvdriver import DRIVER_ROOT, MASK_DIR, DriverLayout, mask_params_and_run
from .simdra.manifest import CDI_ROOT, PLUGINS_DIR, REGISTRY_DIR, account_with_rights, device_class
from .simgpu.manifest import ON_GPU_NODES

APP_NAME = "nvidia-dra-driver-gpu-kubelet-plugin"  # as the chart names the DaemonSet
SERVICE_ACCOUNT = "nvidia-dra-driver-gpu-kubeletplugin"
# Where the plugin looks, under its driver root, for NVML and for nvidia-smi (it needs both), with no
# LD_LIBRARY_PATH or PATH fallback (cmd/gpu-kubelet-plugin/root.go, v25.12.0).
NVML_SEARCHED = ("/", "/usr/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                 "/lib64", "/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu")
NVIDIA_SMI_SEARCHED = ("/", "/opt/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin")
HEALTHCHECK_PORT = 51516  # the chart's kubeletPlugin.containers.gpus.healthcheckPort
# The chart's `gpus` container with maskNvidiaDriverParams: true (the nvkind case).
MASK_AND_RUN = mask_params_and_run('gpu-kubelet-plugin -v "$LOG_VERBOSITY"')


def image(doc: dict) -> str:
    """The driver's image: the spec's draDriver, the schema's defaults for what it leaves out (the
    field has no default of its own, so specs without it keep their hash)."""
    fields = spec.schema()["properties"]["draDriver"]["properties"]
    driver = {name: field["default"] for name, field in fields.items()} | (doc.get("draDriver") or {})
    return f"{driver['image']}:{driver['version']}"


def under(root: str, directory: str) -> str | None:
    """directory's path below root ("/" for root itself), or None when it is not below it."""
    if root == "/":
        return directory
    if directory == root:
        return "/"
    return directory[len(root):] if directory.startswith(root + "/") else None


def driver_root(node_name: str, driver: DriverLayout) -> str:
    """The node directory to give the plugin as its driver root: the one below which it finds both NVML
    and nvidia-smi where it looks. "/" on hosts whose driver is in the standard places; on hosts that
    keep it in one tree (/usr/local/nvidia/{lib64,bin}, GKE's layout) that tree."""
    candidates = sorted({driver.nvml_dir[:len(driver.nvml_dir) - len(d)] or "/" for d in NVML_SEARCHED
                         if d != "/" and driver.nvml_dir.endswith(d)} | {driver.nvml_dir}, key=len)
    for root in candidates:
        smi = under(root, driver.bin_dir) if driver.bin_dir else None
        if under(root, driver.nvml_dir) in NVML_SEARCHED and smi in NVIDIA_SMI_SEARCHED:
            return root
    raise KindgpuError(
        f"{node_name} has NVML in {driver.nvml_dir} and nvidia-smi in {driver.bin_dir or 'no directory'}: NVIDIA's "
        f"DRA driver needs both below one driver root, NVML in one of {', '.join(NVML_SEARCHED)} and nvidia-smi in "
        f"one of {', '.join(NVIDIA_SMI_SEARCHED)} under it",
        "install the driver in the standard places on the host, or use gpuAllocation: devicePlugin")


def rbac(namespace: str) -> list[dict]:
    """rbac-kubeletplugin.yaml for GPUs: the ComputeDomain rules and the MPS Role left out."""
    labels = {"app.kubernetes.io/name": APP_NAME, **names.MANAGED_BY}
    role = f"{SERVICE_ACCOUNT}-clusterrole"
    rules = [
        {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["resource.k8s.io"], "resources": ["resourceslices"],
         "verbs": ["get", "list", "watch", "create", "update", "delete"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "update"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    ]
    return account_with_rights(SERVICE_ACCOUNT, role, namespace, labels, rules)


def daemonset(doc: dict, root: str, namespace: str) -> dict:
    """The chart's kubelet-plugin DaemonSet, `gpus` container only, on kindgpu's GPU workers. root: the
    driver root in the node (driver_root), where the host's NVIDIA runtime put the driver's files."""
    env = {
        "LOG_VERBOSITY": "4",
        "NVIDIA_DRIVER_ROOT": root,
        "DRIVER_ROOT_CTR_PATH": DRIVER_ROOT,
        "NVIDIA_VISIBLE_DEVICES": "void",  # the node's runc, not NVIDIA's runtime, starts it
        "CDI_ROOT": CDI_ROOT,
        "NVIDIA_MIG_CONFIG_DEVICES": "all",
        "IMAGE_NAME": image(doc),
        "KUBELET_REGISTRAR_DIRECTORY_PATH": REGISTRY_DIR,
        "KUBELET_PLUGINS_DIRECTORY_PATH": PLUGINS_DIR,
        "HEALTHCHECK_PORT": str(HEALTHCHECK_PORT),
    }
    from_pod = {"NODE_NAME": "spec.nodeName", "NAMESPACE": "metadata.namespace"}
    mounts = [  # (volume, path on the node, path in the container, propagation)
        ("plugins-registry", REGISTRY_DIR, REGISTRY_DIR, None),
        ("plugins", PLUGINS_DIR, PLUGINS_DIR, "Bidirectional"),
        ("cdi", CDI_ROOT, CDI_ROOT, None),
        ("driver-root", root, DRIVER_ROOT, "HostToContainer"),
    ]
    probe = {"grpc": {"port": HEALTHCHECK_PORT, "service": "liveness"}, "timeoutSeconds": 10}
    container = {
        "name": "gpus",
        "image": image(doc),
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", MASK_AND_RUN],
        "env": [{"name": k, "value": v} for k, v in env.items()]
        + [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": f}}} for k, f in from_pod.items()],
        "securityContext": {"privileged": True},
        "startupProbe": {**probe, "failureThreshold": 60, "periodSeconds": 10},
        "livenessProbe": {**probe, "failureThreshold": 3, "periodSeconds": 30},
        "volumeMounts": [{"name": n, "mountPath": p, **({"mountPropagation": m} if m else {})}
                         for n, _, p, m in mounts] + [{"name": "params-mask", "mountPath": MASK_DIR}],
    }
    labels = {"app.kubernetes.io/name": APP_NAME, **names.MANAGED_BY}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": APP_NAME, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": APP_NAME}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    **ON_GPU_NODES,
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "containers": [container],
                    "volumes": [{"name": n, "hostPath": {"path": h, "type": "DirectoryOrCreate"}}
                                for n, h, _, _ in mounts]
                    + [{"name": "params-mask", "emptyDir": {"medium": "Memory"}}],
                },
            },
        },
    }


def objects(doc: dict, kubernetes: versions.Version | None, root: str,
            namespace: str = names.SYSTEM_NAMESPACE) -> list[dict]:
    """Everything to apply, in order: NVIDIA's DeviceClass, the plugin's account and rights, its DaemonSet.
    doc: the cluster's spec; kubernetes: the node image's version, for the DeviceClass; root: driver_root."""
    return [device_class(kubernetes), *rbac(namespace), daemonset(doc, root, namespace)]
