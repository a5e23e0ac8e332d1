"""The host's NVIDIA driver as a GPU worker holds it (the host's NVIDIA runtime put its files in the
node), and what NVIDIA's plugins need to read it there: NVIDIA's device plugin and its DRA driver alike,
both handing GPUs to pods through the node containerd's CDI."""

from __future__ import annotations

import json
from typing import NamedTuple

from .errors import KindgpuError

DRIVER_ROOT = "/driver-root"  # where a plugin container sees the node's /
NVML = "libnvidia-ml.so.1"
# In a node: the first directory on its PATH, or the driver's own, holding the real nvidia-smi
# (an ELF binary: some hosts put a wrapper script at /usr/bin/nvidia-smi).
FIND_NVIDIA_SMI = ('for d in $(echo "$PATH" | tr ":" " ") /usr/local/nvidia/bin; do f="$d/nvidia-smi"; '
                   '[ -f "$f" ] && [ "$(head -c 4 "$f" | tail -c 3)" = ELF ] && echo "$d" && exit 0; done; true')
PARAMS = "/proc/driver/nvidia/params"
MASK_DIR = "/run/kindgpu"


def mask_params_and_run(program: str) -> str:
    """A plugin's shell entry: the plugin is privileged (it opens the GPUs to write CDI specs), so with
    the driver's default ModifyDeviceFiles: 1 NVML would re-create the /dev/nvidiaN that isolate took
    from this node and the plugin would advertise other workers' GPUs. Mask the setting in its own /proc
    first, as NVIDIA's DRA driver does for nvkind (MASK_NVIDIA_DRIVER_PARAMS), then exec program."""
    return f"""set -e
if [ -e {PARAMS} ]; then
  sed 's/^ModifyDeviceFiles: 1$/ModifyDeviceFiles: 0/' {PARAMS} > {MASK_DIR}/params
  mount -o bind {MASK_DIR}/params {PARAMS}
  grep -q '^ModifyDeviceFiles: 0$' {PARAMS} || {{ echo "kindgpu: could not mask {PARAMS}" >&2; exit 1; }}
fi
exec {program}
"""


def nvml_dir(ldcache):
    """The directory of the 64-bit NVML in a node, from its `ldconfig -p`; None when not listed.

    Lines read "\\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/local/nvidia/lib64/libnvidia-ml.so.1".
    """
    for line in ldcache.splitlines():
        name, _, path = line.strip().partition(" => ")
        soname, _, abi = name.partition(" ")
        if soname == NVML and ("x86-64" in abi or "AArch64" in abi):
            return path.rsplit("/", 1)[0] or "/"
    return None


class DriverLayout(NamedTuple):
    """Where the host's NVIDIA runtime put the driver in a GPU worker."""

    nvml_dir: str
    bin_dir: str | None  # of nvidia-smi; None when the node has none


def driver_layout(node_name, ldcache, smi_dir):
    found = nvml_dir(ldcache)
    if found is None:
        raise KindgpuError(
            f"{node_name} has no {NVML} in its ldcache: the host's NVIDIA runtime did not give it the "
            "driver's libraries",
            "run `invoke preflight` (Docker's default runtime must be nvidia), then `invoke up --recreate`")
    return DriverLayout(found, smi_dir.strip() or None)


# What the plugin's objects need to know of a GPU worker, in one exec: its ldcache, where its
# nvidia-smi is, and its containerd's CRI settings (CDI).
SEPARATOR = "--kindgpu--"
PROBE_NODE = f"ldconfig -p; echo {SEPARATOR}; ({FIND_NVIDIA_SMI}); echo {SEPARATOR}; crictl info; true"


def node_facts(node, record_path=None):
    """(DriverLayout, whether containerd has CDI on: None when it cannot tell) of a GPU worker.

    These change only when the node container is made or started again (the NVIDIA runtime puts
    the driver in at each start), so they are asked once per start and kept in `record_path`
    (the state directory): an `up` with nothing to do asks Docker when the node started, not the
    node itself (three `docker exec` each time, 2.7 s of a no-op `up` on a GPU host)."""
    key = f"{node.container.id}@{node.started_at().isoformat()}"
    known = read_facts(record_path).get(node.name, {})
    if known.get("key") == key:
        return DriverLayout(known["nvmlDir"], known["binDir"]), known["cdi"]
    ldcache, smi_dir, info = (node.sh(PROBE_NODE, check=False).stdout.split(SEPARATOR + "\n") + ["", ""])[:3]
    driver, cdi = driver_layout(node.name, ldcache, smi_dir), cdi_enabled(info)
    if record_path is not None:
        facts = read_facts(record_path)
        facts[node.name] = {"key": key, "nvmlDir": driver.nvml_dir, "binDir": driver.bin_dir, "cdi": cdi}
        record_path.parent.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    return driver, cdi


def read_facts(path) -> dict:
    try:
        return json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return {}


def cdi_enabled(crictl_info):
    """Whether a node's containerd injects CDI devices, from `crictl info` (None: cannot tell)."""
    def find(doc):
        if isinstance(doc, dict):
            if isinstance(doc.get("enableCDI"), bool):
                return doc["enableCDI"]
            return next((v for v in map(find, doc.values()) if v is not None), None)
        return None

    try:
        return find(json.loads(crictl_info))
    except ValueError:
        return None


def check_cdi(node_name, cdi):
    if cdi is False:
        raise KindgpuError(
            f"containerd in {node_name} has CDI off, so pods would get no GPU; kindgpu turns it on "
            "when it creates a cluster (containerdConfigPatches)", "run `invoke up --recreate`")
