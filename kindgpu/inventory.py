"""The host's GPU inventory: what nvidia-smi and /proc/driver/nvidia report, or a simulated one.

Preflight and allocation share this code, so both see the same GPUs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from . import cmd
from .errors import CommandError

QUERY_FIELDS = ("index", "uuid", "name", "pci.bus_id", "memory.total", "mig.mode.current", "compute_cap")
# compute_cap came with driver 510's nvidia-smi: older ones refuse the whole query with it.
OLD_QUERY_FIELDS = QUERY_FIELDS[:-1]
PROC_GPUS = Path("/proc/driver/nvidia/gpus")


@dataclass(frozen=True)
class GPU:
    index: int
    uuid: str
    name: str
    pci_bus_id: str
    memory_mib: int
    minor: int | None
    mig_mode: str = "N/A"
    compute_cap: str = ""  # CUDA compute capability, "9.0"; "" when nvidia-smi cannot say

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class Inventory:
    gpus: tuple[GPU, ...]
    simulated: bool = False
    driver_version: str = ""
    cuda_version: str = ""

    def by_index(self, index):
        return next((g for g in self.gpus if g.index == index), None)

    def by_uuid(self, uuid):
        return next((g for g in self.gpus if g.uuid == uuid), None)

    def to_dict(self):
        return {
            "simulated": self.simulated,
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "gpus": [g.to_dict() for g in self.gpus],
        }


def parse_query_csv(text, fields=QUERY_FIELDS):
    """Parse `nvidia-smi --query-gpu=... --format=csv[,noheader]`.

    A header line, when present, names the columns (units in brackets are dropped);
    without one the columns are `fields` in order.
    """
    columns = list(fields)
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if not line.strip():
            continue
        if not cells[0].isdigit():
            columns = [re.sub(r"\s*\[.*\]$", "", c) for c in cells]
            continue
        row = dict(zip(columns, cells))
        rows.append(
            {
                "index": int(row["index"]),
                "uuid": row["uuid"],
                "name": row.get("name", ""),
                "pci_bus_id": normalize_bus_id(row.get("pci.bus_id", "")),
                "memory_mib": int(re.sub(r"[^0-9]", "", row.get("memory.total", "")) or 0),
                "mig_mode": row.get("mig.mode.current", "N/A"),
                "compute_cap": compute_cap(row.get("compute_cap", "")),
            }
        )
    return rows


def compute_cap(cell):
    """nvidia-smi's compute_cap ("9.0"); "" for anything else ("[N/A]", a missing column)."""
    cell = cell.strip()
    return cell if re.fullmatch(r"\d+\.\d+", cell) else ""


def normalize_bus_id(bus_id):
    """nvidia-smi prints 00000000:00:06.0, /proc prints 0000:00:06.0: compare on the short form."""
    domain, _, rest = bus_id.strip().lower().partition(":")
    return f"{int(domain, 16):04x}:{rest}" if rest else bus_id.strip().lower()


def parse_gpu_information(text):
    """Parse one /proc/driver/nvidia/gpus/<bus>/information file into {uuid, bus, minor}."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return {
        "uuid": fields.get("GPU UUID", ""),
        "pci_bus_id": normalize_bus_id(fields.get("Bus Location", "")),
        "minor": int(fields["Device Minor"]) if fields.get("Device Minor", "").isdigit() else None,
    }


def parse_driver_versions(nvidia_smi_banner):
    """Driver and CUDA version from the banner of plain `nvidia-smi`."""
    driver = re.search(r"Driver Version:\s*([0-9.]+)", nvidia_smi_banner)
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", nvidia_smi_banner)
    return (driver.group(1) if driver else "", cuda.group(1) if cuda else "")


def merge(query_rows, proc_entries, driver_version="", cuda_version=""):
    """Join nvidia-smi rows with /proc minors by UUID (bus id as fallback)."""
    minors = {e["uuid"]: e["minor"] for e in proc_entries if e["uuid"]}
    by_bus = {e["pci_bus_id"]: e["minor"] for e in proc_entries if e["pci_bus_id"]}
    gpus = tuple(
        GPU(minor=minors.get(r["uuid"], by_bus.get(r["pci_bus_id"])), **r) for r in query_rows
    )
    return Inventory(gpus=gpus, driver_version=driver_version, cuda_version=cuda_version)


def read_host_inventory(proc_root=PROC_GPUS):
    """Query the real host. Raises CommandError when nvidia-smi is missing or fails."""
    fields = QUERY_FIELDS
    query = cmd.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
                    check=False, timeout=30)
    if query.returncode != 0 and "compute_cap" in query.stdout + query.stderr:
        fields = OLD_QUERY_FIELDS
        query = cmd.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"], timeout=30)
    elif query.returncode != 0:
        raise CommandError(query.argv, query.returncode, query.stdout + query.stderr)
    banner = cmd.run(["nvidia-smi"], check=False, timeout=30).stdout
    proc_entries = [
        parse_gpu_information(p.read_text()) for p in sorted(Path(proc_root).glob("*/information"))
    ]
    return merge(parse_query_csv(query.stdout, fields), proc_entries, *parse_driver_versions(banner))


def simulated_uuid(cluster, index):
    """Deterministic, UUID-shaped id for simulated GPU `index` of `cluster`."""
    h = hashlib.sha256(f"kindgpu-sim:{cluster}:{index}".encode()).hexdigest()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def simulated_inventory(count, *, cluster, product="NVIDIA H200", memory_mib=143771):
    """A generated inventory for hosts without GPUs: the simulated host of `cluster`.

    Each cluster has GPUs of its own, as two real hosts would: their UUIDs come from the cluster's
    name, so the same name always gives the same GPUs (`up` stays idempotent) and two clusters on
    one host never share one. Bus ids and minors follow the index: 0000:10:00.0 and 0 for GPU 0.
    """
    gpus = tuple(
        GPU(
            index=i,
            uuid=simulated_uuid(cluster, i),
            name=product,
            pci_bus_id=f"0000:{0x10 + i:02x}:00.0",
            memory_mib=memory_mib,
            minor=i,
            mig_mode="Disabled",
        )
        for i in range(count)
    )
    return Inventory(gpus=gpus, simulated=True, driver_version="simulated", cuda_version="")
