"""GPUs as NVIDIA's DRA driver publishes them in ResourceSlices (and kindgpu's simulated DRA plugin, in
the same shape): read by `status` and `up` (what each worker publishes) and by `smoke --kubeconfig` (a
foreign cluster's plan)."""

from __future__ import annotations

import re

from .inventory import GPU

DRA_DRIVER = "gpu.nvidia.com"  # simdra.manifest.DRIVER: NVIDIA's DRA driver's name


def dra_gpus(slices: list[dict], driver: str = DRA_DRIVER, keep_empty: bool = False) -> dict[str, tuple[GPU, ...]]:
    """{node: its GPUs} from the driver's ResourceSlices (API dicts), as NVIDIA's driver publishes a
    GPU: device `gpu-<minor>`, attributes `type` ("gpu"; MIG devices and others are left out),
    `uuid`, `productName`, `resource.kubernetes.io/pciBusID`, capacity `memory`. Only a pool's
    newest generation counts; slices of no node (network-attached devices) are left out, and so are nodes
    that publish no GPU unless keep_empty."""
    newest: dict[str, int] = {}
    for piece in slices:
        spec = piece.get("spec") or {}
        if spec.get("driver") == driver and spec.get("nodeName"):
            pool = spec.get("pool") or {}
            key = pool.get("name") or spec["nodeName"]
            newest[key] = max(newest.get(key, 0), int(pool.get("generation") or 0))
    devices: dict[str, list[dict]] = {}
    for piece in slices:
        spec = piece.get("spec") or {}
        pool = spec.get("pool") or {}
        key = pool.get("name") or spec.get("nodeName")
        if spec.get("driver") != driver or not spec.get("nodeName") or int(pool.get("generation") or 0) != newest[key]:
            continue
        devices.setdefault(spec["nodeName"], []).extend(
            d for d in spec.get("devices") or [] if attribute(d, "type") in ("gpu", ""))
    return {node: tuple(GPU(index=i, uuid=attribute(d, "uuid"), name=attribute(d, "productName"),
                            pci_bus_id=attribute(d, "resource.kubernetes.io/pciBusID"),
                            memory_mib=quantity_bytes(((d.get("capacity") or {}).get("memory") or {}).get("value"))
                            // 2**20, minor=device_minor(d.get("name", "")))
                        for i, d in enumerate(sorted(found, key=device_order)))
            for node, found in devices.items() if found or keep_empty}


def attribute(device: dict, name: str) -> str:
    """A device attribute's value as text ("" when it has none): string, version, int or bool."""
    value = (device.get("attributes") or {}).get(name) or {}
    return next((str(v) for v in value.values() if v is not None), "")


def device_minor(name: str) -> int | None:
    """The minor number in NVIDIA's device name gpu-<minor> (GpuInfo.CanonicalName); None in another."""
    match = re.fullmatch(r"gpu-(\d+)", name)
    return int(match.group(1)) if match else None


def device_order(device: dict):
    minor = device_minor(device.get("name", ""))
    return (minor is None, minor or 0, device.get("name", ""))


BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
DECIMAL_SUFFIXES = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


def quantity_bytes(text) -> int:
    """A Kubernetes quantity ("23034Mi", "24146608128", "80G") in bytes; 0 when it is not one."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?", str(text or "").strip())
    if not match:
        return 0
    number, suffix = int(match.group(1)), match.group(2)
    return number * (BINARY_SUFFIXES.get(suffix) or DECIMAL_SUFFIXES.get(suffix) or 1)
