"""Time `invoke preflight`: in-process, as `python -m kindgpu.preflight`, and via invoke.

    python bench/preflight_bench.py [-n 20] [--simulate 2] [--workers 2] [--gpus 1]

Prints median/min/max wall time per mode. In-process runs reuse warm imports (what `invoke up`
pays); subprocess runs include interpreter start and imports (what a user typing the command pays).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def row(label, times):
    ms = [t * 1000 for t in times]
    print(f"{label:<34} n={len(ms):<3} median {statistics.median(ms):7.1f} ms   "
          f"min {min(ms):7.1f}   max {max(ms):7.1f}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--simulate", type=int, default=None)
    a = p.parse_args()
    flags = ["--workers", str(a.workers), "--gpus", str(a.gpus)]
    if a.simulate is not None:
        flags += ["--simulate", str(a.simulate)]

    from kindgpu import preflight

    kwargs = dict(workers=a.workers, gpus=a.gpus, simulate=a.simulate)
    preflight.main(**kwargs, as_json=True, out=io.StringIO())  # warm the imports once
    row("in-process, checks only", timed(lambda: preflight.preflight(
        preflight.Request(workers=a.workers, gpus=a.gpus, simulate=a.simulate)), a.n))
    row("in-process, main() + table", timed(
        lambda: preflight.main(**kwargs, out=io.StringIO()), a.n))

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sub = [sys.executable, "-m", "kindgpu.preflight", *flags]
    row("subprocess python -m (table)", timed(
        lambda: subprocess.run(sub, cwd=ROOT, env=env, capture_output=True), a.n))
    row("subprocess python -m --json", timed(
        lambda: subprocess.run([*sub, "--json"], cwd=ROOT, env=env, capture_output=True), a.n))

    inv = shutil.which("invoke")
    if inv and (ROOT / "tasks.py").exists():
        probe = subprocess.run([inv, "--list"], cwd=ROOT, capture_output=True, text=True)
        if " preflight" in probe.stdout:
            row("invoke preflight", timed(lambda: subprocess.run(
                [inv, "preflight", *flags], cwd=ROOT, env=env, capture_output=True), a.n))
        else:
            print("invoke: tasks.py has no preflight task yet; skipped")
    else:
        print("invoke or tasks.py not found; skipped")


if __name__ == "__main__":
    main()
