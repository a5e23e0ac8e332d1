#!/usr/bin/env python3
"""kindgpu smoke, level "collective": an NCCL all-reduce across all GPUs of all workers.

Runs in a PyTorch image, one pod per GPU worker. Started plainly
(`python3 collective.py`) it is the pod's launcher: it starts one rank process
per visible GPU (env:// rendezvous, like torchrun without its agent), forwards
their output, and prints the pod's final line, KINDGPU-RESULT {json}. Started
with KINDGPU_LOCAL_RANK set it is one rank: it all-reduces a known pattern,
checks the sum exactly, times repeated all-reduces and prints a
KINDGPU-RANK {json} line.

Env (see kindgpu.payloads.collective_env): MASTER_ADDR, MASTER_PORT (the rank-0
pod), KINDGPU_NODE_RANK, KINDGPU_NNODES (this pod's number and the number of
pods), KINDGPU_RANK_OFFSET (global rank of this pod's first GPU),
KINDGPU_WORLD_RANKS (GPUs over all pods), KINDGPU_EXPECTED_GPUS (this pod's
GPUs), KINDGPU_WORKER, KINDGPU_TIMEOUT_S, KINDGPU_ALLREDUCE_MIB (default 64),
KINDGPU_ALLREDUCE_ITERS (default 20), and NCCL_* settings.
KINDGPU_DIST_BACKEND=gloo runs it on CPUs, to test this script without GPUs.
"""

import datetime
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback

# torch is imported where used: the launcher, which only starts the ranks, never loads it.

RESULT_TAG = "KINDGPU-RESULT"
RANK_TAG = "KINDGPU-RANK"
PATTERN_PERIOD = 1021  # the all-reduced values are (i % 1021 + 1) * (rank + 1): exact in float32


def log(msg):
    print(msg, flush=True)


def env_int(name, default):
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


# ---------------------------------------------------------------- one rank


def gpu_uuid(torch, index):
    raw = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if raw is None:
        return ""
    text = str(raw)
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def rank_main():
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ["KINDGPU_LOCAL_RANK"])
    local_world = int(os.environ["KINDGPU_LOCAL_WORLD_SIZE"])
    rank = env_int("KINDGPU_RANK_OFFSET", 0) + local_rank
    world = env_int("KINDGPU_WORLD_RANKS", local_world)
    info = {
        "rank": rank,
        "local_rank": local_rank,
        "local_world_size": local_world,
        "node_rank": env_int("KINDGPU_NODE_RANK", 0),
        "world_size": world,
        "worker": os.environ.get("KINDGPU_WORKER", ""),
        "host": socket.gethostname(),
        "hostid": os.environ.get("NCCL_HOSTID", ""),
        "ok": False,
    }
    try:
        backend = os.environ.get("KINDGPU_DIST_BACKEND", "nccl")
        timeout = datetime.timedelta(seconds=env_int("KINDGPU_TIMEOUT_S", 300))
        addr = os.environ.get("MASTER_ADDR", "127.0.0.1")
        port = env_int("MASTER_PORT", 29500)
        if backend == "nccl":
            visible = torch.cuda.device_count()
            if visible != local_world:
                raise RuntimeError(f"{visible} GPU(s) visible, but the pod should have {local_world}")
            torch.cuda.set_device(local_rank)
            dev = torch.device("cuda", local_rank)
            info["uuid"] = gpu_uuid(torch, local_rank)
            info["gpu"] = torch.cuda.get_device_name(local_rank)
        # Rank 0 hosts the rendezvous store and waits for every rank to connect.
        store = dist.TCPStore(addr, port, world, is_master=(rank == 0), timeout=timeout)
        if backend == "nccl":
            dist.init_process_group("nccl", store=store, rank=rank, world_size=world, timeout=timeout,
                                    device_id=dev)
            version = torch.cuda.nccl.version()
            info["nccl"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
        else:
            dev = torch.device("cpu")
            info["uuid"] = ""
            dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
        info["backend"] = backend
        info["torch"] = torch.__version__

        def sync():
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

        peers = [None] * world
        dist.all_gather_object(peers, {k: info[k] for k in ("rank", "worker", "uuid", "host", "hostid")})

        size = env_int("KINDGPU_ALLREDUCE_MIB", 64) * 2**20
        n = size // 4
        iters = env_int("KINDGPU_ALLREDUCE_ITERS", 20)
        pattern = (torch.arange(n, device=dev, dtype=torch.int64) % PATTERN_PERIOD + 1).to(torch.float32)

        # Correctness: every element must be exactly pattern * (1 + 2 + ... + world).
        x = pattern * float(rank + 1)
        dist.all_reduce(x)
        expected = pattern * float(world * (world + 1) // 2)
        mismatches = int((x != expected).sum().item())
        max_err = float((x - expected).abs().max().item())
        del x, expected

        # Bandwidth: the same size, zeros (the values stay put), after a warm-up.
        y = torch.zeros(n, dtype=torch.float32, device=dev)
        for _ in range(3):
            dist.all_reduce(y)
        sync()
        dist.barrier()
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(y)
        sync()
        seconds = (time.perf_counter() - t0) / iters

        totals = torch.tensor([mismatches, int(y.abs().sum().item() != 0)], dtype=torch.float64, device=dev)
        dist.all_reduce(totals)
        worst = torch.tensor([seconds, max_err], dtype=torch.float64, device=dev)
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        mismatches_total = int(totals[0].item())
        slowest = float(worst[0].item())
        algbw = size / slowest / 1e9
        info.update(
            {
                "size_bytes": size,
                "iters": iters,
                "expected_sum_factor": world * (world + 1) // 2,
                "mismatches": mismatches,
                "max_abs_err": max_err,
                "mismatches_total": mismatches_total,
                "max_abs_err_total": float(worst[1].item()),
                "zeros_broken_total": int(totals[1].item()),
                "time_ms": round(seconds * 1000, 4),
                "time_ms_max": round(slowest * 1000, 4),
                "algbw_gbps": round(algbw, 3),
                # nccl-tests' bus bandwidth for all-reduce: algbw * 2(n-1)/n (slowest rank's time).
                "busbw_gbps": round(algbw * 2 * (world - 1) / world, 3),
            }
        )
        if local_rank == 0:
            info["peers"] = peers
        info["ok"] = mismatches_total == 0 and info["zeros_broken_total"] == 0
        if not info["ok"]:
            info["error"] = f"all-reduce sum wrong in {mismatches_total} element(s) across ranks"
        dist.barrier()
        dist.destroy_process_group()
        # Rank 0 serves the store: let it go only once every rank is through.
        store.add("kindgpu/done", 1)
        if rank == 0:
            deadline = time.monotonic() + 60
            while store.add("kindgpu/done", 0) < world and time.monotonic() < deadline:
                time.sleep(0.1)
        log(
            f"rank {rank}/{world} (worker {info['worker']}, local {local_rank}, GPU {info['uuid']}): "
            f"sum {'ok' if mismatches == 0 else f'WRONG in {mismatches} elements'}; "
            f"{size / 2**20:.0f} MiB all-reduce {info['time_ms']} ms, "
            f"algbw {info['algbw_gbps']} GB/s, busbw {info['busbw_gbps']} GB/s"
        )
    except Exception as exc:
        traceback.print_exc()
        sys.stderr.flush()
        info["ok"] = False
        info["error"] = f"{type(exc).__name__}: {exc}"
    print(f"{RANK_TAG} {json.dumps(info, sort_keys=True)}", flush=True)
    return 0 if info["ok"] else 1


# ---------------------------------------------------------------- launcher


def summarize(result, ranks, rcs, tail, local_world):
    """Fill the pod's result from its ranks' lines and exit codes."""
    ranks = sorted(ranks, key=lambda r: r.get("rank", -1))
    result["rcs"] = rcs
    result["rc"] = next((rc for rc in rcs if rc != 0), 0) if rcs else -1
    result["local_ranks"] = [
        {k: r.get(k) for k in ("rank", "local_rank", "uuid", "ok", "mismatches", "max_abs_err", "time_ms", "error")
         if k in r}
        for r in ranks
    ]
    problems = []
    first = next((r for r in ranks if "busbw_gbps" in r), None)
    if first:
        for key in ("world_size", "size_bytes", "iters", "mismatches_total", "max_abs_err_total",
                    "time_ms_max", "algbw_gbps", "busbw_gbps", "nccl", "torch", "backend"):
            if key in first:
                result[key] = first[key]
    lead = next((r for r in ranks if "peers" in r), None)
    if lead:
        result["rank_map"] = {str(p["rank"]): p["worker"] for p in lead["peers"]}
        result["uuids"] = {str(p["rank"]): p["uuid"] for p in lead["peers"]}
        result["hostids"] = {str(p["rank"]): p["hostid"] for p in lead["peers"]}
    bad_rcs = [f"local rank {i} exited {rc}" for i, rc in enumerate(rcs) if rc != 0]
    if bad_rcs:
        last = next((line for line in reversed(tail) if line.strip() and RANK_TAG not in line), "")
        problems.append(", ".join(bad_rcs) + (f" (last output: {last.strip()[:300]})" if last else ""))
    if not ranks:
        problems.append("no rank reported a result")
    elif len(ranks) != local_world:
        problems.append(f"{len(ranks)} of {local_world} local rank(s) reported")
    for r in ranks:
        if not r.get("ok"):
            problems.append(f"rank {r.get('rank')}: {r.get('error', 'failed')}")
    if ranks and not first:
        problems.append("no rank measured the all-reduce")
    if problems:
        result["error"] = "; ".join(dict.fromkeys(problems))
    result["ok"] = not problems
    return result


def count_gpus():
    """GPUs this pod sees, by torch in a child process (the launcher itself stays CUDA-free)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
        capture_output=True, text=True, timeout=120,
    )
    if probe.returncode != 0:
        raise RuntimeError(f"counting GPUs with torch failed: {probe.stderr.strip()[-300:]}")
    return int(probe.stdout.strip().splitlines()[-1])


def launcher_main():
    nnodes = env_int("KINDGPU_NNODES", 1)
    node_rank = env_int("KINDGPU_NODE_RANK", 0)
    addr = os.environ.get("MASTER_ADDR", "127.0.0.1")
    port = env_int("MASTER_PORT", 29500)
    result = {
        "level": "collective",
        "worker": os.environ.get("KINDGPU_WORKER", ""),
        "host": socket.gethostname(),
        "node_rank": node_rank,
        "nnodes": nnodes,
        "master": f"{addr}:{port}",
        "ok": False,
    }
    log(
        f"kindgpu collective payload: worker {result['worker']} (pod {result['host']}), "
        f"node {node_rank} of {nnodes}, master {addr}:{port}"
    )
    nccl_env = {k: v for k, v in sorted(os.environ.items()) if k.startswith("NCCL_")}
    log("NCCL settings: " + (" ".join(f"{k}={v}" for k, v in nccl_env.items()) or "none"))
    ranks, tail, rcs, lock = [], [], [], threading.Lock()
    local_world = 0
    try:
        expected = os.environ.get("KINDGPU_EXPECTED_GPUS", "").strip()
        # One rank per GPU the Job assigned (each rank checks that it sees that many).
        local_world = int(expected) if expected else count_gpus()
        if local_world < 1:
            raise RuntimeError("no GPU visible")
        offset = env_int("KINDGPU_RANK_OFFSET", 0)
        log(f"starting {local_world} rank(s): global ranks {offset}..{offset + local_world - 1} "
            f"of {env_int('KINDGPU_WORLD_RANKS', local_world)}")

        def pump(stream):
            for line in stream:
                with lock:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                    tail.append(line)
                    del tail[:-40]
                    at = line.find(RANK_TAG + " ")
                    if at >= 0:
                        try:
                            ranks.append(json.loads(line[at + len(RANK_TAG) + 1:]))
                        except ValueError:
                            tail.append("unparsable rank line")

        procs, pumps = [], []
        for local_rank in range(local_world):
            env = dict(os.environ, KINDGPU_LOCAL_RANK=str(local_rank), KINDGPU_LOCAL_WORLD_SIZE=str(local_world))
            proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1)
            procs.append(proc)
            pumps.append(threading.Thread(target=pump, args=(proc.stdout,), daemon=True))
            pumps[-1].start()
        # Like torchrun: once one local rank fails, the others cannot finish; stop them.
        failed_at = None
        while any(p.poll() is None for p in procs):
            if failed_at is None and any(p.poll() not in (None, 0) for p in procs):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > 15:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.2)
        rcs = [p.wait() for p in procs]
        for t in pumps:
            t.join(timeout=10)
    except Exception as exc:
        traceback.print_exc()
        sys.stderr.flush()
        tail.append(f"{type(exc).__name__}: {exc}")
        rcs = rcs or [-1]
    summarize(result, ranks, rcs, tail, local_world)
    log("collective: ok" if result["ok"] else f"collective: FAILED: {result.get('error')}")
    print(f"{RESULT_TAG} {json.dumps(result, sort_keys=True)}", flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(rank_main() if "KINDGPU_LOCAL_RANK" in os.environ else launcher_main())
