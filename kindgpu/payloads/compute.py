#!/usr/bin/env python3
"""kindgpu smoke, level "compute": a checked float64 matrix product on every visible GPU.

Runs in a PyTorch image. For each GPU the pod sees: copy two random float64
matrices to it, multiply them there (timed with CUDA events), and compare with
the product computed on the CPU. Prints human lines, then one final line:
KINDGPU-RESULT {json}. Exit 0 only when every GPU's product is within tolerance.

Env: KINDGPU_WORKER (name), KINDGPU_EXPECTED_GPUS (optional count),
KINDGPU_COMPUTE_N (matrix size, default 2048), KINDGPU_COMPUTE_REPS (default 10).
"""

import json
import os
import socket
import sys
import time
import traceback

# torch is imported where used: a failed import is reported in the result line, not as a crash.

RESULT_TAG = "KINDGPU-RESULT"
SEED = 20240611
# float64 products of N x N matrices with entries in [-0.5, 0.5): rounding error
# grows like sqrt(N) * eps * N/12 per entry, about 1e-13 for N=2048. A wrong
# result is off by O(1).
REL_TOLERANCE = 1e-9


def log(msg):
    print(msg, flush=True)


def gpu_uuid(torch, index):
    props = torch.cuda.get_device_properties(index)
    raw = getattr(props, "uuid", None)
    if raw is None:
        return ""
    text = str(raw)
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def check_device(torch, device, a, b, ref, reps):
    """Multiply a @ b on `device`, time it, compare with `ref`. Returns a dict."""
    if device.type == "cuda":
        # CUDA events and the default stream belong to the current device: make it this one.
        with torch.cuda.device(device):
            return _check_device(torch, device, a, b, ref, reps)
    return _check_device(torch, device, a, b, ref, reps)


def _check_device(torch, device, a, b, ref, reps):
    t0 = time.perf_counter()
    da, db = a.to(device), b.to(device)
    dc = da @ db  # warm-up, also the product that is checked
    is_cuda = device.type == "cuda"
    if is_cuda:
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(torch.cuda.current_stream(device))
        for _ in range(reps):
            dc = da @ db
        end.record(torch.cuda.current_stream(device))
        end.synchronize()
        ms = start.elapsed_time(end) / reps
    else:
        t1 = time.perf_counter()
        for _ in range(reps):
            dc = da @ db
        ms = (time.perf_counter() - t1) * 1000 / reps
    got = dc.to("cpu")
    total_ms = (time.perf_counter() - t0) * 1000
    scale = ref.abs().max().item()
    max_abs_err = (got - ref).abs().max().item()
    finite = bool(torch.isfinite(got).all().item())
    n = a.shape[0]
    tol = REL_TOLERANCE * max(scale, 1.0)
    return {
        "max_abs_err": max_abs_err,
        "ref_max_abs": scale,
        "tolerance": tol,
        "finite": finite,
        "ok": finite and max_abs_err <= tol,
        "matmul_ms": round(ms, 4),
        "total_ms": round(total_ms, 2),
        "gflops": round(2 * n**3 / (ms * 1e-3) / 1e9, 1) if ms > 0 else None,
    }


def run(result):
    import torch

    result["torch"] = torch.__version__
    result["cuda_runtime"] = torch.version.cuda
    n = int(os.environ.get("KINDGPU_COMPUTE_N", "2048"))
    reps = int(os.environ.get("KINDGPU_COMPUTE_REPS", "10"))
    result["n"], result["reps"], result["dtype"] = n, reps, "float64"
    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device (torch.cuda.is_available() is False)")
    count = torch.cuda.device_count()
    result["count"] = count
    log(f"torch {torch.__version__} (CUDA {torch.version.cuda}): {count} GPU(s) visible")

    gen = torch.Generator().manual_seed(SEED)
    a = torch.rand(n, n, dtype=torch.float64, generator=gen) - 0.5
    b = torch.rand(n, n, dtype=torch.float64, generator=gen) - 0.5
    t0 = time.perf_counter()
    ref = a @ b
    result["cpu_reference_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    log(f"CPU reference {n}x{n} float64 product: {result['cpu_reference_ms']} ms")

    for i in range(count):
        entry = {"index": i, "uuid": "", "name": "", "ok": False}
        result["gpus"].append(entry)
        try:
            entry["uuid"] = gpu_uuid(torch, i)
            entry["name"] = torch.cuda.get_device_name(i)
            entry.update(check_device(torch, torch.device("cuda", i), a, b, ref, reps))
        except Exception as exc:  # one broken GPU must not hide the others
            traceback.print_exc()
            entry["error"] = f"{type(exc).__name__}: {exc}"
        log(
            f"GPU {i} {entry['uuid']} ({entry['name']}): "
            + ("ok" if entry["ok"] else "FAILED")
            + (f", max |err| {entry['max_abs_err']:.3g} (tolerance {entry['tolerance']:.3g})"
               if "max_abs_err" in entry else "")
            + (f", {entry['matmul_ms']} ms/product, {entry['gflops']} GFLOP/s"
               if "matmul_ms" in entry else "")
            + (f": {entry['error']}" if "error" in entry else "")
        )

    problems = [f"GPU {g['index']} failed" for g in result["gpus"] if not g["ok"]]
    expected = os.environ.get("KINDGPU_EXPECTED_GPUS", "").strip()
    if expected and int(expected) != count:
        problems.append(f"{count} GPU(s) visible, expected {expected}")
    if count == 0:
        problems.append("no GPU visible")
    if problems:
        result["error"] = "; ".join(problems)
    result["ok"] = not problems


def main():
    result = {
        "level": "compute",
        "worker": os.environ.get("KINDGPU_WORKER", ""),
        "host": socket.gethostname(),
        "ok": False,
        "gpus": [],
    }
    log(f"kindgpu compute payload: worker {result['worker']}, pod {result['host']}")
    try:
        run(result)
    except Exception as exc:
        traceback.print_exc()
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
    log(("compute: ok" if result["ok"] else f"compute: FAILED: {result.get('error')}"))
    sys.stdout.flush()
    print(f"{RESULT_TAG} {json.dumps(result, sort_keys=True)}", flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
