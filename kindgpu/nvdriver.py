"""The host's NVIDIA driver as a GPU worker holds it (the host's NVIDIA runtime put its files in the
node), and what NVIDIA's plugins need to read it there: NVIDIA's device plugin and its DRA driver alike."""

from __future__ import annotations

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


def node_driver_layout(node):
    """The driver's place in a GPU worker (a nodes.Node): NVML from its ldcache, nvidia-smi from its PATH."""
    out = node.run(["ldconfig", "-p"], check=False).stdout
    found = nvml_dir(out)
    if found is None:
        raise KindgpuError(
            f"{node.name} has no {NVML} in its ldcache: the host's NVIDIA runtime did not give it the "
            "driver's libraries",
            "run `invoke preflight` (Docker's default runtime must be nvidia), then `invoke up --recreate`")
    bin_dir = node.sh(FIND_NVIDIA_SMI, check=False).stdout
    return DriverLayout(found, bin_dir.strip() or None)
