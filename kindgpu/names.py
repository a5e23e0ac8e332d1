"""Names shared by every part of kindgpu: labels, paths inside nodes, resource names."""

API_VERSION = "kindgpu.dev/v1alpha1"
SPEC_KIND = "GPUCluster"

GPU_RESOURCE = "nvidia.com/gpu"
# Pods that may run where the GPU resource is tainted (as GPU nodes often are): the plugins, smoke's.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
# On every object and image kindgpu makes: `kubectl get all -A -l app.kubernetes.io/managed-by=kindgpu`.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = {MANAGED_BY_LABEL: "kindgpu"}
LABEL_GPU_PRESENT = "nvidia.com/gpu.present"
LABEL_OWNER = "kindgpu.dev/cluster"  # node label: which kindgpu cluster made this node
LABEL_GPU_WORKER = "gpu-worker"  # the seed's label: worker number, 1-based
LABEL_GPU_IDS = "gpu-ids"  # the seed's label, made legal: indices joined with "_"
LABEL_CPU_ONLY = "kindgpu.dev/cpu-only"  # node label of a worker given `gpus: []`

KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"  # docker label kind puts on node containers
KIND_ROLE_LABEL = "io.x-k8s.kind.role"

# Every node of a kindgpu cluster mounts <state>/node here read-only: the mark that
# kindgpu made the cluster, readable from Docker alone, gone when the cluster goes.
OWNER_MOUNT = "/etc/kindgpu"

# Real GPUs: the NVIDIA runtime reads these mounts to inject GPUs into the node.
NVIDIA_DEVICE_MOUNT_DIR = "/var/run/nvidia-container-devices"
# Simulated GPUs: inert files the simulated device plugin lists to learn its GPUs.
SIM_DEVICE_MOUNT_DIR = "/var/run/kindgpu/sim-gpus"

SPEC_CONFIGMAP = "kindgpu-spec"  # kube-system ConfigMap: the spec the cluster was made with
SYSTEM_NAMESPACE = "kube-system"
