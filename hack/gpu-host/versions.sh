# kindgpu GPU-host test rig ONLY: what the rig packs and stages (sourced by pack.sh, stage.sh, rig.sh).
# shellcheck shell=bash disable=SC2034
TOOLKIT_VERSION=v1.20.0
DEVICE_PLUGIN_VERSION=v0.20.0
# The names kindgpu deploys by default (devicePlugin.image:version), so nothing is pulled.
DEVICE_PLUGIN_IMAGE=nvcr.io/nvidia/k8s-device-plugin:$DEVICE_PLUGIN_VERSION
# NVIDIA's DRA driver for GPUs (kubernetes-sigs/dra-driver-nvidia-gpu), under the name kindgpu deploys
# by default (draDriver.image:version).
DRA_DRIVER_VERSION=v25.12.0
DRA_DRIVER_COMMIT=0882da8720c28763137e0987778ec476ec4cf8df
DRA_DRIVER_IMAGE=nvcr.io/nvidia/k8s-dra-driver-gpu:$DRA_DRIVER_VERSION
# Local smoke images; the rig's spec points smoke.cudaImage / smoke.pytorchImage at them.
SMOKE_CUDA_IMAGE=kindgpu-rig/cuda-base:1
SMOKE_PYTORCH_IMAGE=kindgpu-rig/pytorch:host
# As NVIDIA's CUDA images set them.
CUDA_PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/busybox
CUDA_LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64
GPU_PYTHON=3.12
PART_BYTES=$((60 * 1024 * 1024))
# Docker's userland and iptables from Debian bookworm (what dpkg would install, minus what the GPU
# machine has: libc, libseccomp2, libsystemd0, libselinux1, libudev1).
USERLAND_DEBS="docker.io containerd runc tini libdevmapper1.02.1 jq libjq1 libonig5 iptables libip4tc2
  libip6tc2 libxtables12 libnftnl11 libnetfilter-conntrack3 libnfnetlink0 libmnl0 zstd libzstd1"
# Where stage.sh puts everything on the GPU machine.
RIG_ROOT=${RIG_ROOT:-/opt/kindgpu-rig}
