#!/usr/bin/env python3
"""A fake nvidia-smi for pods given simulated GPUs by kindgpu's device plugin.

The plugin mounts this file at /usr/bin/nvidia-smi and describes the allocated GPUs in
$KINDGPU_SIM_GPUS, a JSON list of {uuid, name, memory_mib, pci_bus_id, minor}; their
order gives the indices, as NVML's enumeration does in a real container. Output copies
the real nvidia-smi's formats so that scripts parsing them work unchanged.
Standard library only: it runs in whatever image the pod uses, given python3.
"""

import argparse
import json
import os
import sys
import time

DRIVER_VERSION = "simulated"  # what kindgpu's simulated inventory reports too
CUDA_VERSION = "N/A"
MIG_MODE = "Disabled"
NO_DEVICES_EXIT = 6  # nvidia-smi's exit status when NVML finds no GPU


# --query-gpu fields: canonical name -> (unit, value of (index, gpu, GPU count)).
FIELDS = {
    "index": (None, lambda i, g, n: i),
    "count": (None, lambda i, g, n: n),
    "uuid": (None, lambda i, g, n: g["uuid"]),
    "name": (None, lambda i, g, n: g["name"]),
    "pci.bus_id": (None, lambda i, g, n: g["pci_bus_id"]),
    "memory.total": ("MiB", lambda i, g, n: g["memory_mib"]),
    "memory.used": ("MiB", lambda i, g, n: 0),
    "memory.free": ("MiB", lambda i, g, n: g["memory_mib"]),
    "driver_version": (None, lambda i, g, n: DRIVER_VERSION),
    "mig.mode.current": (None, lambda i, g, n: MIG_MODE),
    "minor_number": (None, lambda i, g, n: g["minor"]),
}
ALIASES = {"gpu_uuid": "uuid", "gpu_name": "name", "gpu_bus_id": "pci.bus_id"}


def load_gpus():
    return json.loads(os.environ.get("KINDGPU_SIM_GPUS") or "[]")


def select(gpus, ids):
    """-i/--id: indices or UUIDs, comma-separated; the selected GPUs keep their indices."""
    wanted = [s.strip() for s in ids.split(",")]
    indexed = list(enumerate(gpus))
    chosen = [(i, g) for i, g in indexed if str(i) in wanted or g["uuid"] in wanted]
    if len(chosen) != len(wanted):
        raise SystemExit(f"No devices were found matching {ids}")
    return chosen


def list_gpus(indexed):
    return "".join(f"GPU {i}: {g['name']} (UUID: {g['uuid']})\n" for i, g in indexed)


def query(indexed, field_list, format_options, count):
    fields = [ALIASES.get(f.strip(), f.strip()) for f in field_list.split(",") if f.strip()]
    for field in fields:
        if field not in FIELDS:
            raise SystemExit(f'Field "{field}" is not a valid field to query.')
    lines = []
    if "noheader" not in format_options:
        # The header keeps its units even with nounits, as the real one does.
        lines.append(", ".join(f"{f} [{FIELDS[f][0]}]" if FIELDS[f][0] else f for f in fields))
    for i, gpu in indexed:
        cells = []
        for field in fields:
            unit, value = FIELDS[field]
            text = str(value(i, gpu, count))
            cells.append(text if unit is None or "nounits" in format_options else f"{text} {unit}")
        lines.append(", ".join(cells))
    return "".join(line + "\n" for line in lines)


def banner(indexed):
    """Plain `nvidia-smi`: the real table's layout, saying that the GPUs are simulated."""
    rule = "+-----------------------------------------+------------------------+----------------------+"

    def row(left, middle, right):
        return f"|{left:<41}|{middle:<24}|{right:<22}|"

    top = f" NVIDIA-SMI simulated by kindgpu   Driver Version: {DRIVER_VERSION}   CUDA Version: {CUDA_VERSION}"
    lines = [
        time.strftime("%a %b %d %H:%M:%S %Y"),
        "+" + "-" * 89 + "+",
        f"|{top:<89}|",
        rule,
        row(" GPU  Name                 Persistence-M", " Bus-Id          Disp.A", " Volatile Uncorr. ECC"),
        row(" Fan  Temp   Perf          Pwr:Usage/Cap", "           Memory-Usage", " GPU-Util  Compute M."),
        row("", "", "               MIG M."),
        "|" + rule[1:-1].replace("-", "=") + "|",
    ]
    for i, gpu in indexed:
        memory_usage = f"0MiB / {gpu['memory_mib']}MiB"
        lines += [
            row(f"{i:>4}  {gpu['name'][:31]:<31}On  ", f"{gpu['pci_bus_id']:>19} Off ", f"{'0':>21} "),
            row(f" N/A   N/A    P0{'N/A /  N/A':>24} ", f"{memory_usage:>23} ", f"{'0%':>8}{'Default':>13} "),
            row("", "", f"{MIG_MODE:>21} "),
            rule,
        ]
    lines += [
        "",
        "+" + "-" * 89 + "+",
        f"|{' Processes:':<89}|",
        f"|{'  GPU   GI   CI              PID   Type   Process name                        GPU Memory':<89}|",
        f"|{'        ID   ID                                                               Usage':<89}|",
        "|" + "=" * 89 + "|",
        f"|{'  No running processes found':<89}|",
        "+" + "-" * 89 + "+",
    ]
    return "".join(line + "\n" for line in lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="nvidia-smi", description="kindgpu's simulated nvidia-smi")
    parser.add_argument("-L", "--list-gpus", action="store_true")
    parser.add_argument("--query-gpu")
    parser.add_argument("--format", default="csv")
    parser.add_argument("-i", "--id")
    args = parser.parse_args(argv)

    gpus = load_gpus()
    if not gpus:
        print("No devices were found")
        return NO_DEVICES_EXIT
    indexed = select(gpus, args.id) if args.id else list(enumerate(gpus))
    if args.list_gpus:
        sys.stdout.write(list_gpus(indexed))
    elif args.query_gpu:
        format_options = {o.strip() for o in args.format.split(",")}
        sys.stdout.write(query(indexed, args.query_gpu, format_options, len(gpus)))
    else:
        sys.stdout.write(banner(indexed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
