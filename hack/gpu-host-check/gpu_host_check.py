#!/usr/bin/env python3
"""Run every smoke payload on a GPU host the way the smoke Jobs run them, without Kubernetes.

Emulates one kind GPU worker per GPU (a process whose CUDA_VISIBLE_DEVICES is
that GPU), installs the payloads where the ConfigMap would mount them, runs
each level's command (kindgpu.payloads.command) with the env the Job sets
(kindgpu.payloads.env / collective_env), and judges every log with
kindgpu.payloads.judge. Writes logs, a summary and the host's GPU facts to
$OUT (default ./out): payload-logs.tar.gz, summary.json, host.txt.

What the emulation cannot copy from a pod, and what it does instead:
- nvidia-smi ignores CUDA_VISIBLE_DEVICES (a container sees only its GPUs
  because the runtime hides the others): a wrapper on PATH adds --id=<GPUs>.
  One run without it shows a worker that sees every GPU (must fail).
- pods differ in hostname; emulated workers don't: NCCL_HOSTID (set by
  collective_env) is what separates them. One run without the isolation
  settings shows what NCCL does when two workers look like one host.
- the pod interface eth0 may not exist: the first interface with an IPv4
  address stands in (lo at worst), and MASTER_ADDR is its address.

Usage: python3 hack/gpu-host-check/gpu_host_check.py [--quick]
Keep NCCL_NVLS_ENABLE=0 (collective_env sets it too).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kindgpu import payloads  # noqa: E402
from kindgpu.payloads import judge  # noqa: E402
from kindgpu.plan import kind_node_name  # noqa: E402

SAFETY = payloads.NCCL_SAFETY_ENV
DEADLINE_S = float(os.environ.get("KINDGPU_CHECK_DEADLINE_S", "480"))
T0 = time.monotonic()

OUT = Path(os.environ.get("OUT") or ROOT / "out")
WORK = LOGS = None  # set by main(): a fresh temp dir and its logs/
SUMMARY = {"runs": []}


def say(msg):
    print(msg, flush=True)


def sh(cmd):
    try:
        p = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60)
        return f"$ {cmd}\n{p.stdout}{p.stderr}(exit {p.returncode})\n"
    except Exception as exc:  # keep going: this is a report
        return f"$ {cmd}\n{type(exc).__name__}: {exc}\n"


def host_facts():
    parts = [
        sh("nvidia-smi --query-gpu=index,uuid,name,pci.bus_id,memory.total,driver_version,mig.mode.current"
           " --format=csv"),
        sh("for f in /proc/driver/nvidia/gpus/*/information; do echo \"== $f\"; cat \"$f\"; done"),
        sh("nvidia-smi"),
        sh("nvidia-smi topo -m"),
        sh("cat /proc/sys/kernel/random/boot_id; hostname; uname -a"),
        sh("ls /sys/class/net; ip -4 -o addr 2>/dev/null"),
        sh("python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.nccl.version(), "
           "torch.cuda.device_count())'"),
        sh("env | grep -E '^(NCCL|TORCH_SYMM|NVSHMEM)_' | sort"),
    ]
    text = "\n".join(parts)
    (WORK / "host.txt").write_text(text)
    say(text)


def gpus():
    out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split(",") for line in out.splitlines() if line.strip()]
    return [(int(i), u.strip()) for i, u in rows]


def ipv4_of(ifname):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", ifname[:15].encode()))  # SIOCGIFADDR
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        return None
    finally:
        s.close()


def pod_interface():
    names = sorted(os.listdir("/sys/class/net"))
    for name in ["eth0"] + [n for n in names if n not in ("eth0", "lo")]:
        if name in names and ipv4_of(name):
            return name, ipv4_of(name)
    return "lo", "127.0.0.1"


def install_payloads():
    """Put the scripts where the ConfigMap is mounted; fall back to a temp dir."""
    target = Path(payloads.MOUNT_DIR)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError:
        target = WORK / "mount"
        target.mkdir()
    for name, text in payloads.configmap_data().items():
        (target / name).write_text(text)
        (target / name).chmod(0o644)  # like a ConfigMap volume: not executable
    return target


def pod_command(level, mount):
    argv = payloads.command(level)
    return [a.replace(payloads.MOUNT_DIR, str(mount)) for a in argv]


def smi_shim():
    real = shutil.which("nvidia-smi")
    d = WORK / "shim"
    d.mkdir(exist_ok=True)
    (d / "nvidia-smi").write_text(
        "#!/bin/sh\n# emulation: the container runtime would hide the other GPUs\n"
        f'exec {real} --id="$KINDGPU_EMULATED_GPUS" "$@"\n'
    )
    (d / "nvidia-smi").chmod(0o755)
    return d


def base_env(visible, extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NCCL_", "KINDGPU_", "MASTER_", "CUDA_VISIBLE"))}
    env.update(SAFETY)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, visible))
    env["NVIDIA_VISIBLE_DEVICES"] = env["CUDA_VISIBLE_DEVICES"]
    env["KINDGPU_EMULATED_GPUS"] = env["CUDA_VISIBLE_DEVICES"]
    env.update(extra or {})
    # Only to test this script on a host without GPUs (e.g. {"KINDGPU_DIST_BACKEND": "gloo"}).
    env.update(json.loads(os.environ.get("KINDGPU_CHECK_TEST_ENV") or "{}"))
    env.update(SAFETY)  # never let a scenario drop these
    return env


def start(name, argv, env):
    log = open(LOGS / f"{name}.log", "w")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def finish(procs, timeout):
    rcs = []
    end = time.monotonic() + timeout
    for proc, log in procs:
        try:
            rcs.append(proc.wait(timeout=max(1, end - time.monotonic())))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the process group this script started
            rcs.append(proc.wait())
            log.write("\n[gpu_host_check: killed after timeout]\n")
        log.close()
    return rcs


def record(run, name, level, rc, verdict, seconds, **extra):
    entry = {"run": run, "log": f"{name}.log", "level": level, "rc": rc, "ok": verdict.ok,
             "message": verdict.message, "details": verdict.details, "seconds": round(seconds, 1)}
    entry.update(extra)
    SUMMARY["runs"].append(entry)
    say(f"[{'PASS' if verdict.ok else 'FAIL'}] {run} / {name} (rc {rc}, {seconds:.1f}s): {verdict.message}")


def time_left():
    return DEADLINE_S - (time.monotonic() - T0)


def worker_name(i):
    return kind_node_name("kindgpu", "worker", i + 1)


def level_visibility(mount, inv):
    shim = smi_shim()
    logs, assign = {}, {}
    for i, uuid in inv:
        w = worker_name(i)
        env = base_env([i], payloads.visibility_env(w, [uuid]))
        env["PATH"] = f"{shim}:{env['PATH']}"
        name = f"visibility-{w}"
        t = time.monotonic()
        rc = finish([start(name, pod_command("visibility", mount), env)], 60)[0]
        logs[w] = (LOGS / f"{name}.log").read_text()
        assign[w] = [uuid]
        record("visibility", name, "visibility", rc, judge.judge_visibility(logs[w], [uuid], w),
               time.monotonic() - t, expected=[uuid])
    cv = judge.judge_cluster("visibility", logs, assign)
    say(f"[{'PASS' if cv.ok else 'FAIL'}] visibility cluster: {cv.message}")
    SUMMARY["visibility_cluster"] = {"ok": cv.ok, "message": cv.message}
    # Without the runtime's isolation: the worker sees every GPU of the host.
    i, uuid = inv[0]
    w = worker_name(i)
    name = "visibility-unisolated"
    t = time.monotonic()
    rc = finish([start(name, pod_command("visibility", mount),
                       base_env([i], payloads.visibility_env(w, [uuid])))], 60)[0]
    record("visibility-unisolated (expected FAIL)", name, "visibility", rc,
           judge.judge_visibility((LOGS / f"{name}.log").read_text(), [uuid], w), time.monotonic() - t)


def level_compute(mount, inv):
    layouts = [[(i, u)] for i, u in inv]
    if len(inv) > 1:
        layouts.append(list(inv))  # one worker holding every GPU
    for layout in layouts:
        idx = [i for i, _ in layout]
        uuids = [u for _, u in layout]
        w = worker_name(idx[0]) if len(idx) == 1 else "kindgpu-worker-allgpus"
        name = f"compute-{w}"
        t = time.monotonic()
        rc = finish([start(name, pod_command("compute", mount),
                           base_env(idx, payloads.compute_env(w, len(uuids), uuids)))], 180)[0]
        v = judge.judge_compute((LOGS / f"{name}.log").read_text(), len(uuids), uuids, w)
        record("compute", name, "compute", rc, v, time.monotonic() - t, expected=uuids)


def collective_scenario(run, mount, workers, ifname, addr, port, mode, expect_ok=True):
    """workers: list of (name, [gpu indices]). mode: kind | bare | nop2pshm."""
    if time_left() < 60:
        say(f"[SKIP] {run}: out of time")
        return
    procs, names = [], []
    world = sum(len(g) for _, g in workers)
    for rank, (w, idx) in enumerate(workers):
        env = payloads.collective_env(rank, len(workers), addr, port, w,
                                      gpu_counts=[len(g) for _, g in workers],
                                      socket_ifname=ifname, timeout_s=60)
        if mode in ("bare", "nop2pshm"):
            for key in payloads.NCCL_ISOLATION_KEYS:
                env.pop(key, None)
        if mode == "nop2pshm":
            env.update({"NCCL_P2P_DISABLE": "1", "NCCL_SHM_DISABLE": "1"})
        name = f"collective-{run}-{w}"
        names.append((name, w, idx, env))
        procs.append(start(name, pod_command("collective", mount), base_env(idx, env)))
    t = time.monotonic()
    rcs = finish(procs, min(150, max(30, time_left())))
    for (name, w, idx, env), rc in zip(names, rcs):
        log = (LOGS / f"{name}.log").read_text()
        v = judge.judge_collective(log, world, len(idx), len(workers), w)
        nccl_env = {k: v_ for k, v_ in env.items() if k.startswith("NCCL_")}
        record(f"collective {run}" + ("" if expect_ok else " (expected FAIL)"), name, "collective", rc, v,
               time.monotonic() - t, nccl_env=nccl_env,
               connections=sorted({f"{a}->{b} {tr}" for a, b, tr in judge.nccl_connections(log)}),
               nccl_topology={str(k): v_ for k, v_ in judge.nccl_topology(log).items()})


def level_collective(mount, inv, ifname, addr):
    per_gpu = [(worker_name(i), [i]) for i, _ in inv]
    if len(inv) < 2:
        say("[SKIP] collective across workers needs 2 GPUs")
    else:
        collective_scenario("kind", mount, per_gpu, ifname, addr, 29510, "kind")
        collective_scenario("bare", mount, per_gpu, ifname, addr, 29520, "bare", expect_ok=False)
        collective_scenario("nop2pshm", mount, per_gpu, ifname, addr, 29530, "nop2pshm")
    collective_scenario("oneworker", mount, [("kindgpu-worker-allgpus", [i for i, _ in inv])],
                        ifname, addr, 29540, "kind")


def main():
    global WORK, LOGS
    WORK = Path(tempfile.mkdtemp(prefix="kindgpu-check-"))
    LOGS = WORK / "logs"
    LOGS.mkdir()
    quick = "--quick" in sys.argv
    OUT.mkdir(parents=True, exist_ok=True)
    host_facts()
    inv = gpus()
    mount = install_payloads()
    ifname, addr = pod_interface()
    SUMMARY.update({"gpus": inv, "mount": str(mount), "pod_interface": ifname, "master_addr": addr})
    say(f"GPUs: {inv}; payloads in {mount}; emulated pod interface {ifname} ({addr})")
    try:
        level_visibility(mount, inv)
        level_compute(mount, inv)
        if not quick:
            level_collective(mount, inv, ifname, addr)
    finally:
        SUMMARY["seconds"] = round(time.monotonic() - T0, 1)
        (WORK / "summary.json").write_text(json.dumps(SUMMARY, indent=2, sort_keys=True))
        shutil.copy(WORK / "summary.json", OUT / "summary.json")
        shutil.copy(WORK / "host.txt", OUT / "host.txt")
        with tarfile.open(OUT / "payload-logs.tar.gz", "w:gz") as tar:
            tar.add(WORK / "logs", arcname="logs")
            tar.add(WORK / "host.txt", arcname="host.txt")
            tar.add(WORK / "summary.json", arcname="summary.json")
        say("\nSUMMARY")
        for r in SUMMARY["runs"]:
            say(f"  {'PASS' if r['ok'] else 'FAIL'}  {r['run']:<40} {r['log']:<52} {r['message'][:300]}")
        say(f"done in {SUMMARY['seconds']} s; files in {OUT}")


if __name__ == "__main__":
    main()
