"""The node labels of NVIDIA's GPU Feature Discovery (GFD), made by kindgpu from what it knows.

Schedulers and operators (KAI, Kueue, Volcano, ...) select GPU nodes by the labels GFD puts on
them. kindgpu knows each worker's GPUs exactly (the inventory and the plan), so the label step
sets the same labels itself, in real and simulated mode, with no GFD running; a spec with
`gpuFeatureLabels: false` leaves them to a GFD of your own.

Names and value formats are GFD's, as NVIDIA's k8s-device-plugin v0.20.0 (which holds GFD) makes
them; paths below are in that repository:

- internal/lm/resource.go: `nvidia.com/gpu.{count,product,replicas,sharing-strategy}`
  (resourceLabeler.baseLabeler), `gpu.memory` in MiB (NewGPUResourceLabeler; NVML's total
  memory / 2^20, internal/resource/nvml-device.go GetTotalMemoryMiB), `gpu.family` and
  `gpu.compute.{major,minor}` (newArchitectureLabels, getArchFamily); the product is the
  device name sanitised (sanitise: characters other than `A-Za-z0-9-_. ` dropped, runs of
  blanks joined by `-`), with `-SHARED` appended when the GPU is replicated and not renamed
  (getProductName). Values are printed with Go's `%v`: plain decimal numbers.
- internal/lm/nvml.go: `nvidia.com/cuda.driver.{major,minor,rev}`, `cuda.driver-version.*`,
  `cuda.runtime.*`, `cuda.runtime-version.*` (newVersionLabeler: the driver version split on
  `.` into 2 or 3 parts, rev empty with 2; the CUDA version NVML reports, which is nvidia-smi's
  banner "CUDA Version"), `nvidia.com/mig.capable` (newMigCapabilityLabeler: true when any GPU of
  the node is), `nvidia.com/mps.capable` (newSharingLabeler: false unless MPS sharing).
- internal/lm/mig-strategy.go newGPULabelers: with GPUs of several names on a node, each name's
  labels overwrite the others' in map order; kindgpu picks the name most of the worker's GPUs
  have (the first by index on a tie), so the labels stay put.

Not made: `gpu.machine` (the host's DMI product name), `gpu.mode` (the PCI class), MIG
strategy and MIG device labels (kindgpu hands out whole GPUs) and `gfd.timestamp`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from . import names
from .inventory import GPU, Inventory

PREFIX = "nvidia.com/"
# Keys kindgpu sets with the feature labels on: a spec's own labels may not set them.
KEY_PREFIXES = ("nvidia.com/gpu.", "nvidia.com/cuda.")
KEYS = ("nvidia.com/mig.capable", "nvidia.com/mps.capable")
SPEC_SWITCH = "gpuFeatureLabels"

# nvidia-smi's product name -> (CUDA compute capability major, minor, MIG-capable), for what the
# inventory cannot say: simulated GPUs, and real ones whose driver's nvidia-smi has no compute_cap.
# From NVIDIA's CUDA GPU compute capability list and the MIG user guide's supported GPUs.
KNOWN_PRODUCTS: dict[str, tuple[int, int, bool]] = {
    "NVIDIA B200": (10, 0, True),
    "NVIDIA GB200": (10, 0, True),
    "NVIDIA H200": (9, 0, True),
    "NVIDIA H200 NVL": (9, 0, True),
    "NVIDIA GH200 480GB": (9, 0, True),
    "NVIDIA H100 80GB HBM3": (9, 0, True),
    "NVIDIA H100 PCIe": (9, 0, True),
    "NVIDIA H100 NVL": (9, 0, True),
    "NVIDIA L40S": (8, 9, False),
    "NVIDIA L40": (8, 9, False),
    "NVIDIA L4": (8, 9, False),
    "NVIDIA GeForce RTX 4090": (8, 9, False),
    "NVIDIA A10": (8, 6, False),
    "NVIDIA A10G": (8, 6, False),
    "NVIDIA A40": (8, 6, False),
    "NVIDIA GeForce RTX 3090": (8, 6, False),
    "NVIDIA A100-SXM4-80GB": (8, 0, True),
    "NVIDIA A100-SXM4-40GB": (8, 0, True),
    "NVIDIA A100 80GB PCIe": (8, 0, True),
    "NVIDIA A100-PCIE-40GB": (8, 0, True),
    "NVIDIA A30": (8, 0, True),
    "Tesla T4": (7, 5, False),
    "Tesla V100-SXM2-32GB": (7, 0, False),
    "Tesla V100-SXM2-16GB": (7, 0, False),
    "Tesla V100-PCIE-32GB": (7, 0, False),
    "Tesla V100-PCIE-16GB": (7, 0, False),
}


def enabled(spec: dict) -> bool:
    """Whether kindgpu sets the feature labels: unless the spec says `gpuFeatureLabels: false`."""
    return spec.get(SPEC_SWITCH) is not False


def is_feature_key(key: str) -> bool:
    """A label key kindgpu sets when the feature labels are on (nvidia.com/gpu.present, which
    NVIDIA's NFD rule sets, is kindgpu's in any case)."""
    return key != names.LABEL_GPU_PRESENT and (key in KEYS or key.startswith(KEY_PREFIXES))


def sanitise(name: str) -> str:
    """GFD's sanitise (internal/lm/resource.go): drop what is not A-Za-z0-9-_. or blank, then
    join the remaining words with '-'."""
    return "-".join(re.sub(r"[^A-Za-z0-9\-_. ]", "", name).split())


def product(name: str, *, replicas: int = 1, renamed: bool = False) -> str:
    """GFD's nvidia.com/gpu.product for a full GPU: the sanitised name, `-SHARED` when it is
    replicated (more than 1 replica) under its own resource name (getProductName)."""
    value = sanitise(name)
    if value and replicas > 1 and not renamed:
        value += "-SHARED"
    return value


def arch_family(major: int, minor: int) -> str:
    """GFD's getArchFamily (internal/lm/resource.go), by compute capability."""
    if major == 7:
        return "volta" if minor < 5 else "turing"
    if major == 8:
        return "ampere" if minor < 9 else "ada-lovelace"
    return {1: "tesla", 2: "fermi", 3: "kepler", 5: "maxwell", 6: "pascal", 9: "hopper",
            10: "blackwell", 12: "blackwell", 13: "rubin"}.get(major, "undefined")


def compute_capability(gpu: GPU) -> tuple[int, int] | None:
    """(major, minor) from the inventory's compute_cap ("9.0"), else the table; None when unknown."""
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", gpu.compute_cap or "")
    if match:
        return int(match.group(1)), int(match.group(2))
    known = KNOWN_PRODUCTS.get(gpu.name)
    return known[:2] if known else None


def mig_capable(gpu: GPU, simulated: bool) -> bool | None:
    """Real GPUs: from nvidia-smi's mig.mode.current (Enabled or Disabled: capable; [N/A]: not).
    Simulated ones: from the table. None when unknown."""
    if simulated:
        known = KNOWN_PRODUCTS.get(gpu.name)
        return known[2] if known else None
    mode = (gpu.mig_mode or "").strip().lower()
    if mode in ("enabled", "disabled"):
        return True
    if mode == "[n/a]":
        return False
    return None


def version_labels(driver_version: str, cuda_version: str) -> dict[str, str]:
    """newVersionLabeler (internal/lm/nvml.go): only the versions the inventory knows."""
    labels = {}
    parts = driver_version.split(".") if driver_version else []
    if 2 <= len(parts) <= 3 and all(p.isdigit() for p in parts):
        major, minor, rev = parts[0], parts[1], parts[2] if len(parts) > 2 else ""
        labels.update({
            "nvidia.com/cuda.driver.major": major,
            "nvidia.com/cuda.driver.minor": minor,
            "nvidia.com/cuda.driver.rev": rev,
            "nvidia.com/cuda.driver-version.major": major,
            "nvidia.com/cuda.driver-version.minor": minor,
            "nvidia.com/cuda.driver-version.revision": rev,
            "nvidia.com/cuda.driver-version.full": driver_version,
        })
    cuda = re.fullmatch(r"(\d+)\.(\d+)", cuda_version or "")
    if cuda:
        # Go's %d of the integers: "13.0" -> "13" and "0".
        major, minor = str(int(cuda.group(1))), str(int(cuda.group(2)))
        labels.update({
            "nvidia.com/cuda.runtime.major": major,
            "nvidia.com/cuda.runtime.minor": minor,
            "nvidia.com/cuda.runtime-version.major": major,
            "nvidia.com/cuda.runtime-version.minor": minor,
            "nvidia.com/cuda.runtime-version.full": f"{major}.{minor}",
        })
    return labels


def main_product(gpus: Iterable[GPU]) -> str:
    """The name most of these GPUs have; the first one's on a tie."""
    names = [g.name for g in sorted(gpus, key=lambda g: g.index)]
    counts = Counter(names)
    return max(names, key=lambda n: (counts[n], -names.index(n)))


def node_labels(gpus: Iterable[GPU], inventory: Inventory, *, replicas: int = 1,
                renamed: bool = False) -> dict[str, str]:
    """GFD's labels for a worker with these GPUs (none for a CPU-only worker).

    replicas: time-slicing replicas per GPU (1: not shared); renamed: the shared GPUs are
    advertised as nvidia.com/gpu.shared (renameByDefault), so the product keeps its name.
    """
    gpus = list(gpus)
    if not gpus:
        return {}
    name = main_product(gpus)
    same = [g for g in gpus if g.name == name]
    first = same[0]
    replicas = max(int(replicas), 1)
    labels = {
        "nvidia.com/gpu.count": str(len(same)),
        "nvidia.com/gpu.product": product(name, replicas=replicas, renamed=renamed),
        "nvidia.com/gpu.replicas": str(replicas),
        "nvidia.com/gpu.sharing-strategy": "time-slicing" if replicas > 1 else "none",
    }
    if first.memory_mib:
        labels["nvidia.com/gpu.memory"] = str(first.memory_mib)
    capability = compute_capability(first)
    if capability and capability[0]:
        major, minor = capability
        labels.update({"nvidia.com/gpu.family": arch_family(major, minor),
                       "nvidia.com/gpu.compute.major": str(major),
                       "nvidia.com/gpu.compute.minor": str(minor)})
    capable = [mig_capable(g, inventory.simulated) for g in gpus]
    if any(capable):
        labels["nvidia.com/mig.capable"] = "true"
    elif capable and all(c is False for c in capable):
        labels["nvidia.com/mig.capable"] = "false"
    labels["nvidia.com/mps.capable"] = "false"
    labels.update(version_labels(inventory.driver_version, inventory.cuda_version))
    return labels
