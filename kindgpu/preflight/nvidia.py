"""NVIDIA driver, GPU inventory and NVIDIA Container Toolkit checks."""

from __future__ import annotations

import re
import shlex

from .. import cmd, inventory
from ..errors import CommandError
from ..toml_text import load_toml
from .model import TOOLKIT_CONFIG, Check, Status

SIMULATED = "not needed with simulated GPUs"
DRIVER_GUIDE = "https://docs.nvidia.com/datacenter/tesla/driver-installation-guide/"
TOOLKIT_GUIDE = (
    "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html"
)

VOLUME_MOUNTS_KEY = "accept-nvidia-visible-devices-as-volume-mounts"
ENVVAR_KEY = "accept-nvidia-visible-devices-envvar-when-unprivileged"
# The oldest toolkit whose default ("auto") mode honours cdi/... volume-mount device requests.
MIN_TOOLKIT = (1, 17)
# What the toolkit assumes when the key is absent (its built-in defaults).
TOOLKIT_DEFAULTS = {VOLUME_MOUNTS_KEY: False, ENVVAR_KEY: True}


# --- probes: talk to the host ---------------------------------------------------------------


def probe_driver(request):
    """The host inventory (nvidia-smi + /proc minors), or the error that stopped it."""
    try:
        return inventory.read_host_inventory(request.proc_root / "driver/nvidia/gpus"), None
    except CommandError as e:
        return None, e


def probe_toolkit(request):
    """Versions of nvidia-ctk and nvidia-container-runtime (None when missing) and the config."""
    versions = {}
    for tool in ("nvidia-ctk", "nvidia-container-runtime"):
        res = cmd.run([tool, "--version"], check=False, timeout=10)
        versions[tool] = parse_tool_version(res.stdout + res.stderr) if res.returncode == 0 else None
    return versions, read_toolkit_config(request.toolkit_config)


# --- parsers ----------------------------------------------------------------------------------


def parse_tool_version(text):
    """'NVIDIA Container Toolkit CLI version 1.17.8' -> '1.17.8'; 'unknown' when the first line
    has none. Only the first line is the tool's own: the runtime then prints runc's version, and
    a toolkit built without version flags says 'version unknown'."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    m = re.search(r"version\s+v?([0-9][0-9A-Za-z.+~-]*)", first)
    return m.group(1) if m else "unknown"


def version_tuple(version):
    """'1.17.8' -> (1, 17); None when it does not start with two numbers."""
    m = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def read_toolkit_config(path):
    """{'exists': bool, 'values': {...}, 'error': str|None} for the toolkit's config.toml."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"exists": False, "values": {}, "error": None}
    except OSError as e:
        return {"exists": True, "values": {}, "error": f"cannot read {path}: {e.strerror}"}
    try:
        return {"exists": True, "values": load_toml(text), "error": None}
    except ValueError as e:  # tomllib.TOMLDecodeError is a ValueError
        return {"exists": True, "values": {}, "error": f"{path} is not valid TOML: {e}"}


def toolkit_setting(config, key):
    """(value, explicit) for a top-level toolkit key; the toolkit default when it is absent."""
    if key in config["values"]:
        return config["values"][key], True
    return TOOLKIT_DEFAULTS[key], False


def ctk_set_command(path, key, value):
    where = "" if path == TOOLKIT_CONFIG else f" --config-file {shlex.quote(str(path))}"
    return f"sudo nvidia-ctk config{where} --set {key}={str(value).lower()} --in-place"


# --- checks: turn what was found into answers -------------------------------------------------


def driver_check(request, inv, error) -> Check:
    def check(status, found, fix="", hint="", details=None):
        return Check("nvidia-driver", "NVIDIA driver", status, found, fix, hint, details or {})

    if request.simulate:
        return check(Status.SKIP, f"{SIMULATED} ({request.simulate} simulated)")
    simulate_fix = "invoke up --simulate 8"
    if error is not None:
        if error.returncode == 127:
            return check(Status.FAIL, "nvidia-smi not found on PATH: no NVIDIA driver on this host", simulate_fix,
                         f"Install the NVIDIA driver ({DRIVER_GUIDE}), or try kindgpu without GPUs "
                         "using simulated ones")
        first = next((line for line in error.output.splitlines() if line.strip()), "no output")
        return check(Status.FAIL, f"nvidia-smi failed (exit {error.returncode}): {first.strip()}",
                     "sudo modprobe nvidia && nvidia-smi",
                     "The driver is installed but not working: load the module (or reboot after a driver "
                     "update); without GPUs, try kindgpu with simulated ones: " + simulate_fix)
    details = {"driver_version": inv.driver_version, "cuda_version": inv.cuda_version}
    if not inv.gpus:
        return check(Status.FAIL, f"driver {inv.driver_version or '?'} works but lists no GPUs", simulate_fix,
                     "Check `nvidia-smi -L`; without GPUs, try kindgpu with simulated ones", details)
    names = {}
    for g in inv.gpus:
        names[g.name] = names.get(g.name, 0) + 1
    models = ", ".join(f"{n} × {name}" for name, n in names.items())
    found = (
        f"driver {inv.driver_version or '?'}, CUDA {inv.cuda_version or '?'}; "
        f"{len(inv.gpus)} GPU(s): {models}"
    )
    no_minor = [g.index for g in inv.gpus if g.minor is None]
    mig = [g.index for g in inv.gpus if g.mig_mode.strip().lower() == "enabled"]
    if mig:
        ids = ",".join(map(str, mig))
        return check(Status.WARN, f"{found}; MIG enabled on GPU {ids}", f"sudo nvidia-smi -i {ids} -mig 0",
                     "kindgpu hands whole GPUs to kind nodes; MIG instances are not supported", details)
    if no_minor:
        return check(Status.WARN, f"{found}; no device minor for GPU {','.join(map(str, no_minor))} in "
                                  f"{request.proc_root / 'driver/nvidia/gpus'}",
                     "ls /proc/driver/nvidia/gpus/*/information",
                     "Without the minor, kindgpu cannot tell which /dev/nvidiaN a GPU is", details)
    return check(Status.PASS, found, details=details)


def toolkit_checks(request, versions, config) -> list[Check]:
    if request.simulate:
        return [
            Check("nvidia-toolkit", "NVIDIA Container Toolkit", Status.SKIP, SIMULATED),
            Check("toolkit-volume-mounts", "Toolkit: GPUs as volume mounts", Status.SKIP, SIMULATED),
            Check("toolkit-envvar", "Toolkit: envvar when unprivileged", Status.SKIP, SIMULATED),
        ]
    return [tools_check(versions), *config_checks(request, config)]


def tools_check(versions) -> Check:
    title = "NVIDIA Container Toolkit"
    missing = [t for t, v in versions.items() if v is None]
    found = ", ".join(f"{t} {v}" for t, v in versions.items() if v is not None)
    if missing:
        return Check(
            "nvidia-toolkit",
            title,
            Status.FAIL,
            f"{' and '.join(missing)} not found" + (f" ({found})" if found else ""),
            "sudo apt-get install -y nvidia-container-toolkit",
            f"Add NVIDIA's package repository first: {TOOLKIT_GUIDE}",
            {"versions": versions},
        )
    details = {"versions": versions}
    runtime = versions.get("nvidia-container-runtime")
    have = version_tuple(runtime)
    wanted = ".".join(map(str, MIN_TOOLKIT))
    if have is None:
        return Check("nvidia-toolkit", title, Status.WARN, f"{found}: version unknown",
                     "nvidia-container-runtime --version",
                     f"kindgpu needs toolkit v{wanted} or later (its GPU mounts name CDI devices); "
                     "a toolkit built from source without version flags cannot say", details)
    if have < MIN_TOOLKIT:
        return Check("nvidia-toolkit", title, Status.FAIL, f"{found}: older than v{wanted}",
                     "sudo apt-get install -y --only-upgrade nvidia-container-toolkit",
                     f"kindgpu's GPU mounts (/var/run/nvidia-container-devices/cdi/...) need v{wanted}+",
                     details)
    return Check("nvidia-toolkit", title, Status.PASS, found, details=details)


def config_checks(request, config) -> list[Check]:
    path = request.toolkit_config
    if config["error"]:
        fail = Check(
            "toolkit-volume-mounts",
            "Toolkit: GPUs as volume mounts",
            Status.FAIL,
            config["error"],
            f"sudo nvidia-ctk config default --output {shlex.quote(str(path))} && "
            + ctk_set_command(path, VOLUME_MOUNTS_KEY, True),
            "Rewrite the config from the toolkit's defaults, then set the key",
        )
        return [fail, Check("toolkit-envvar", "Toolkit: envvar when unprivileged", Status.SKIP,
                            "config unreadable, see above")]

    where = f"in {path}" if config["exists"] else f"({path} missing)"
    return [
        setting_check(config, path, where, VOLUME_MOUNTS_KEY, True, "toolkit-volume-mounts",
                      "Toolkit: GPUs as volume mounts", Status.FAIL,
                      "kindgpu gives each kind node its GPUs as volume mounts under "
                      "/var/run/nvidia-container-devices; without this the GPUs cannot reach the nodes"),
        setting_check(config, path, where, ENVVAR_KEY, False, "toolkit-envvar",
                      "Toolkit: envvar when unprivileged", Status.WARN,
                      "With true, any container can ask for every GPU through NVIDIA_VISIBLE_DEVICES; "
                      "false makes the volume mounts the only way in"),
    ]


def setting_check(config, path, where, key, wanted, check_id, title, otherwise, hint) -> Check:
    """PASS when the toolkit's `key` is `wanted`; else `otherwise`, with the nvidia-ctk command that sets it."""
    value, explicit = toolkit_setting(config, key)
    said = f"{key} = {str(value).lower()}" + ("" if explicit else " (the default)")
    if value is wanted:
        return Check(check_id, title, Status.PASS, f"{said} {where}")
    return Check(check_id, title, otherwise, f"{said} {where}", ctk_set_command(path, key, wanted), hint)
