"""Kernel limits, memory and GPU capacity for the request; the safe fixes --fix applies."""

from __future__ import annotations

import re
import shlex

from ..spec import is_loopback
from .model import Check, Status

# kind's known-issues page: multi-node clusters exhaust the default inotify limits.
SYSCTLS = {
    "fs.inotify.max_user_watches": 524288,
    "fs.inotify.max_user_instances": 512,
}
CONTROL_PLANE_MIB = 600  # measured ~512 MiB on a 3-node cluster, rounded up
WORKER_MIB = 200  # measured ~130 MiB per idle worker, rounded up


def sysctl_path(request, key):
    return request.proc_root / "sys" / key.replace(".", "/")


def read_sysctl(request, key):
    try:
        return int(sysctl_path(request, key).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def sysctl_fix_command(request):
    body = "\\n".join(f"{k} = {v}" for k, v in SYSCTLS.items())
    conf = shlex.quote(str(request.sysctl_conf))
    return f"printf '{body}\\n' | sudo tee {conf} && sudo sysctl -p {conf}"


def sysctl_checks(request) -> list[Check]:
    out = []
    for key, want in SYSCTLS.items():
        check_id = key.rsplit(".", 1)[1].replace("_", "-")  # max-user-watches
        title = f"Kernel: {key.removeprefix('fs.')}"
        have = read_sysctl(request, key)
        details = {"value": have, "minimum": want}
        if have is None:
            out.append(Check(check_id, title, Status.WARN,
                             f"cannot read {sysctl_path(request, key)}", details=details))
        elif have < want:
            out.append(Check(
                check_id, title, Status.FAIL, f"{have}, below {want}",
                sysctl_fix_command(request),
                "Multi-node kind clusters run out of inotify watches/instances "
                "(\"too many open files\"); `invoke preflight --fix` does this as root",
                details))
        else:
            out.append(Check(check_id, title, Status.PASS, f"{have} (≥ {want})", details=details))
    return out


def apply_sysctl_fixes(request) -> list[str]:
    """Raise the inotify limits now and across reboots. Returns what changed, in words.

    Never lowers a value: the conf file keeps whichever is higher, the current or the minimum.
    Raises OSError (e.g. PermissionError) when not allowed to write.
    """
    current = {k: read_sysctl(request, k) for k in SYSCTLS}
    if all(v is not None and v >= SYSCTLS[k] for k, v in current.items()):
        return []
    wanted = {k: max(SYSCTLS[k], current[k] or 0) for k in SYSCTLS}
    body = "".join(f"{k} = {v}\n" for k, v in wanted.items())
    text = "# Written by `invoke preflight --fix` (kindgpu): multi-node kind needs these.\n" + body
    conf = request.sysctl_conf
    changed = []
    if not conf.exists() or conf.read_text() != text:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(text)
        changed.append(f"wrote {conf} ({', '.join(f'{k} = {v}' for k, v in wanted.items())})")
    for key, value in wanted.items():  # what `sysctl -p` does, without needing the binary
        if current[key] != value:
            sysctl_path(request, key).write_text(f"{value}\n")
            changed.append(f"set {key} = {value} (was {current[key]})")
    return changed


def meminfo_available_mib(request):
    try:
        text = (request.proc_root / "meminfo").read_text()
    except OSError:
        return None
    m = re.search(r"^MemAvailable:\s+(\d+)\s*kB", text, re.M)
    return int(m.group(1)) // 1024 if m else None


def memory_needed_mib(workers):
    return CONTROL_PLANE_MIB + WORKER_MIB * workers


def memory_check(request) -> Check:
    title = "Memory for the nodes"
    need = memory_needed_mib(request.workers)
    have = meminfo_available_mib(request)
    details = {"available_mib": have, "estimated_need_mib": need}
    if have is None:
        return Check("memory", title, Status.WARN, "cannot read MemAvailable from meminfo",
                     details=details)
    found = (f"{have} MiB available; about {need} MiB needed for {request.nodes} idle nodes "
             f"({CONTROL_PLANE_MIB} control-plane + {request.workers} × {WORKER_MIB})")
    if need > have:
        fit = max((have - CONTROL_PLANE_MIB) // WORKER_MIB, 0)
        fix = f"invoke up --workers {fit}" if fit >= 1 else ""
        return Check("memory", title, Status.FAIL, found, fix,
                     "Free memory, or ask for fewer workers", details)
    if need > 0.8 * have:
        return Check("memory", title, Status.WARN, found,
                     hint="Little memory left for workloads", details=details)
    return Check("memory", title, Status.PASS, found, details=details)


def gpu_capacity_check(request, gpu_count) -> Check:
    """gpu_count: GPUs found (or simulated); None when the inventory could not be read."""
    title = "GPUs for the request"
    want = request.gpus_wanted
    ask = (f"{request.workers} worker(s) × {request.gpus} GPU(s) = {want}" if request.gpus_total is None
           else f"{want} GPU(s) over {request.workers} listed worker(s)")
    if gpu_count is None:
        return Check("gpu-capacity", title, Status.SKIP,
                     f"{ask}; GPU inventory unavailable (see NVIDIA driver)")
    kind = "simulated" if request.simulate else "found"
    found = f"{ask}; {gpu_count} {kind}"
    details = {"wanted": want, "available": gpu_count}
    if want <= gpu_count:
        return Check("gpu-capacity", title, Status.PASS, found, details=details)
    if request.simulate:
        fix = f"invoke up --workers {request.workers} --gpus {request.gpus} --simulate {want}"
    elif request.gpus_total is not None:  # a worker list: no flag shortens it
        fix = ""
    elif gpu_count >= request.gpus:  # keep the GPUs per worker, drop workers
        fix = f"invoke up --workers {gpu_count // request.gpus} --gpus {request.gpus}"
    elif gpu_count > 0:
        fix = f"invoke up --workers 1 --gpus {gpu_count}"
    else:
        fix = ""
    return Check("gpu-capacity", title, Status.FAIL, f"{found}: {want - gpu_count} short", fix,
                 "Ask for fewer workers or fewer GPUs per worker", details)


def api_server_check(request) -> Check:
    """The spec may open the API server to the network (apiServer.allowRemoteAPI): say so."""
    title = "API server address"
    address = request.api_address
    details = {"address": address}
    if is_loopback(address):
        return Check("api-server", title, Status.PASS, f"{address}: loopback, only this host reaches it",
                     details=details)
    return Check("api-server", title, Status.WARN,
                 f"{address}: the cluster's admin API is open to the network (apiServer.allowRemoteAPI)",
                 hint="Anyone who can reach this host can try a credential against it; use "
                      "apiServer.address: 127.0.0.1 unless other machines must reach the API",
                 details=details)
