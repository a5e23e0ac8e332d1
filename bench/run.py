"""What kindgpu costs on top of kind, and how it scales (simulated GPUs, real kind clusters).

    python bench/run.py [--runs 3] [--cases core,load] [--out docs/benchmarks.md]     (or: invoke bench)

Needs dockerd, kind and KINDGPU_NODE_IMAGE (hack/harness/setup.sh). Every measurement is a
whole command as a user runs it, timed from outside; medians over --runs runs, with min and max.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "kgpu-bench"


def sh(*argv, check=True, env=None):
    result = subprocess.run(list(argv), cwd=ROOT, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def invoke(*args, check=True):
    return sh(sys.executable, "-m", "invoke", *args, check=check)


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


MODES = {"plain": "false", "derived": "true"}  # spec prepareNodeImage: kind's node image, or kindgpu's


def spec_args(workers, mode="derived"):
    """The bench's cluster; mode picks the node image (a spec file that says only that)."""
    spec = Path(os.environ["KINDGPU_STATE_DIR"]) / f"bench-{mode}.yaml"
    if not spec.exists():
        spec.write_text(f"apiVersion: kindgpu.dev/v1alpha1\nkind: GPUCluster\nprepareNodeImage: {MODES[mode]}\n")
    return ["--config", str(spec), "--name", NAME, "--workers", str(workers), "--gpus", "1",
            "--simulate", str(workers)]


def down():
    invoke("down", "--name", NAME)


def bare_kind(workers, until_ready=False):
    """kind create with exactly the config kindgpu renders for kind's own node image (containerd
    patched for CDI); with until_ready, also until every node is Ready (kind's own --wait covers
    the control plane only)."""
    invoke("config", *spec_args(workers, "plain"))
    config = Path(os.environ["KINDGPU_STATE_DIR"]) / NAME / "kind-config.yaml"
    kubeconfig = str(config.with_name("kubeconfig"))

    def create():
        sh("kind", "create", "cluster", "--name", NAME, "--config", str(config), "--kubeconfig", kubeconfig)
        if until_ready:
            sh("kubectl", "--kubeconfig", kubeconfig, "wait", "--for=condition=Ready", "nodes", "--all",
               "--timeout=5m")

    seconds = timed(create)
    sh("kind", "delete", "cluster", "--name", NAME, "--kubeconfig", str(config.with_name("kubeconfig")))
    return seconds


class MemoryPeak:
    """Peak of host memory in use (MemTotal - MemAvailable) while a block runs, above the start."""

    def __enter__(self):
        self.base = self.peak = used_mib()
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self):
        while self.running:
            self.peak = max(self.peak, used_mib())
            time.sleep(0.2)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()

    @property
    def rise_mib(self):
        return self.peak - self.base


def used_mib():
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kib = lambda key: int(info[key].split()[0])  # noqa: E731
    return (kib("MemTotal") - kib("MemAvailable")) // 1024


def random_image(tag, mib):
    """A one-layer image of `mib` MiB of random bytes: nothing in the nodes shares a layer with it,
    and it does not compress, like a user's own image."""
    import tarfile

    with tempfile.TemporaryDirectory() as tmp:
        blob, rootfs = Path(tmp) / "blob", Path(tmp) / "rootfs.tar"
        with blob.open("wb") as out:
            for _ in range(mib):
                out.write(os.urandom(1 << 20))
        with tarfile.open(rootfs, "w") as tar:
            tar.add(blob, arcname="blob")
        sh("docker", "import", str(rootfs), tag)


def node_names():
    out = sh("docker", "ps", "--filter", f"label=io.x-k8s.kind.cluster={NAME}", "--format", "{{.Names}}").stdout
    return sorted(out.split())


def in_every_node(tag):
    ref = f"docker.io/{tag}"  # the bench's tags have no registry: containerd records them so
    return all(ref in sh("docker", "exec", node, "crictl", "images", "-o", "json").stdout for node in node_names())


def bench_load(runs, workers, mib, log):
    """`kind load docker-image` against `invoke load`, the same new image into every node of a
    cluster, then the same command again (the image is there: both only check)."""
    invoke("up", *spec_args(workers))
    times = {"kind": [], "kindgpu": [], "kind-again": [], "kindgpu-again": []}
    commands = {"kind": lambda tag: sh("kind", "load", "docker-image", tag, "--name", NAME),
                "kindgpu": lambda tag: invoke("load", tag, "--name", NAME)}
    for run in range(runs):
        for tool in ("kind", "kindgpu") if run % 2 == 0 else ("kindgpu", "kind"):  # neither always first
            tag = f"kindgpu-bench/load:{tool}-{run}-{os.getpid()}"
            random_image(tag, mib)
            times[tool].append(timed(lambda: commands[tool](tag)))
            if not in_every_node(tag):
                sys.exit(f"{tool} did not load {tag} into every node")
            times[f"{tool}-again"].append(timed(lambda: commands[tool](tag)))
            for node in node_names():
                sh("docker", "exec", node, "crictl", "rmi", f"docker.io/{tag}", check=False)
            sh("docker", "rmi", tag)
            log(f"load {mib} MiB into {workers + 1} nodes, {tool}: {times[tool][-1]:.1f}s "
                f"(again: {times[f'{tool}-again'][-1]:.2f}s)")
    down()
    nodes = workers + 1
    return [
        row(f"`kind load docker-image`, a new {mib} MiB image into {nodes} nodes", times["kind"]),
        row(f"`invoke load`, a new {mib} MiB image into {nodes} nodes", times["kindgpu"]),
        row("`kind load docker-image` again (in every node already)", times["kind-again"]),
        row("`invoke load` again (in every node already)", times["kindgpu-again"]),
        "",
        "| ratio | value | target |",
        "|---|---|---|",
        f"| invoke load / kind load, new image | "
        f"{statistics.median(times['kindgpu']) / statistics.median(times['kind']):.2f} | < 1 |",
    ]


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def row(what, values, unit="s"):
    s = stats(values)
    return f"| {what} | {s['n']} | {s['median']:.2f} {unit} | {s['min']:.2f} – {s['max']:.2f} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per cluster measurement")
    parser.add_argument("--quick-runs", type=int, default=10, help="runs per cheap measurement")
    parser.add_argument("--scale", default="1,4,8", help="worker counts for the scaling runs")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--cases", default="core,load",
                        help="what to measure: core (up, smoke, preflight, scaling), load (images into nodes)")
    parser.add_argument("--load-workers", type=int, default=4, help="workers of the load case's cluster")
    parser.add_argument("--load-mib", type=int, default=200, help="size of the load case's image")
    parser.add_argument("--modes", default="plain,derived",
                        help="node images to compare: plain (kind's, prepareNodeImage: false), derived (kindgpu's)")
    args = parser.parse_args()
    if os.environ.get("KINDGPU_STATE_DIR"):
        measure(args)
        return
    # A state directory of its own, gone afterwards: the bench leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix="kindgpu-bench-") as state:
        os.environ["KINDGPU_STATE_DIR"] = state
        measure(args)


def measure(args):
    # `up` merges its context into kubectl's kubeconfig: the bench's own, never this host's.
    os.environ["KUBECONFIG"] = str(Path(os.environ["KINDGPU_STATE_DIR"]) / "kubectl-config")
    scale = [int(x) for x in args.scale.split(",")]
    cases = set(args.cases.split(","))
    down()
    results, lines = {}, []

    def log(text):
        print(text, flush=True)

    machine = (f"Machine: {platform.node()}, {os.cpu_count()} cores, "
               f"{int(Path('/proc/meminfo').read_text().split()[1]) // 1024 // 1024} GiB, {platform.platform()}; "
               f"node image {os.environ.get('KINDGPU_NODE_IMAGE')}; simulated GPUs, 1 per worker.")
    if "core" not in cases:
        lines = [machine, "", "| measurement | runs | median | min – max |", "|---|---|---|---|"]
        if "load" in cases:
            lines += bench_load(args.runs, args.load_workers, args.load_mib, log)
        write(args.out, lines)
        return

    # 4. start-up cost of the tool itself
    results["list"] = [timed(lambda: invoke("--list")) for _ in range(args.quick_runs)]
    results["preflight"] = [timed(lambda: invoke("preflight", *spec_args(2), check=False))
                            for _ in range(args.quick_runs)]
    log(row("invoke --list", results["list"]))

    modes = args.modes.split(",")
    # 0. kindgpu's node image, built once: its cost, against what each up saves
    if "derived" in modes:
        invoke("node-images", "--remove")  # only kindgpu's, and only those no container uses
        first = {}
        first["up"] = timed(lambda: first.update(out=invoke("up", *spec_args(2, "derived")).stdout))
        built = re.search(r"built node image \S+ in ([0-9.]+)s", first["out"])
        results["build"], results["first_up"] = [float(built.group(1))] if built else [], [first["up"]]
        down()
        log(f"node image built in {built.group(1) if built else '?'}s; that up {first['up']:.1f}s")

    # 1. overhead over bare kind, 2 workers; the modes take turns
    for key in ("bare", "ready", *(f"{m}:up" for m in modes)):
        results[key] = []
    for _ in range(args.runs):
        results["bare"].append(bare_kind(2))
        results["ready"].append(bare_kind(2, until_ready=True))
        for mode in modes:
            results[f"{mode}:up"].append(timed(lambda: invoke("up", *spec_args(2, mode))))
            down()
        log(f"bare kind {results['bare'][-1]:.1f}s, kind + nodes Ready {results['ready'][-1]:.1f}s, "
            + ", ".join(f"up ({m}) {results[f'{m}:up'][-1]:.1f}s" for m in modes))

    # 2, 3, 5, 6: post-create time, no-op up, smoke per worker count; memory at the largest
    for workers in scale:
        for mode in modes:
            for key in ("post", "noop", "smoke"):
                results[f"{mode}:{key}{workers}"] = []
        for run in range(args.runs):
            for mode in modes:
                post, noop, smoke = (results[f"{mode}:{key}{workers}"] for key in ("post", "noop", "smoke"))
                with MemoryPeak() as mem:  # the whole up: create, then the rest timed on its own
                    invoke("up", *spec_args(workers, mode), "--until", "create")
                    post.append(timed(lambda: invoke("up", *spec_args(workers, mode))))
                if workers == max(scale) and run == 0:
                    results[f"{mode}:memory"] = (mem.rise_mib, mem.peak)
                noop.extend(timed(lambda: invoke("up", *spec_args(workers, mode))) for _ in range(3))
                smoke.append(timed(lambda: invoke("smoke", "--name", NAME)))
                down()
                log(f"{workers} workers ({mode}): post-create {post[-1]:.1f}s, smoke {smoke[-1]:.1f}s")

    lo, hi = min(scale), max(scale)
    med = lambda key: statistics.median(results[key])  # noqa: E731
    lines += [
        machine,
        "",
        "| measurement | runs | median | min – max |",
        "|---|---|---|---|",
        row("bare `kind create cluster` (kindgpu's config for kind's node image, 2 workers)", results["bare"]),
        row("bare `kind create cluster`, then until every node is Ready", results["ready"]),
    ]
    if results.get("build"):
        lines += [row("kindgpu's node image: the build (once)", results["build"]),
                  row("kindgpu's node image: the first `invoke up`, which builds it (2 workers)", results["first_up"])]
    for mode in modes:
        lines += [
            row(f"`invoke up` to device plugin ready (2 workers), {mode}", results[f"{mode}:up"]),
            *[row(f"post-create (label, isolate, device plugin, wait), {w} worker(s), {mode}",
                  results[f"{mode}:post{w}"]) for w in scale],
            *[row(f"`invoke up` with nothing to do, {w} worker(s), {mode}", results[f"{mode}:noop{w}"])
              for w in scale],
            *[row(f"`invoke smoke`, {w} worker(s), {mode}", results[f"{mode}:smoke{w}"]) for w in scale],
        ]
    lines += [
        row("`invoke preflight` (2 workers, simulated)", results["preflight"]),
        row("`invoke --list`", results["list"]),
        "",
        "| ratio | " + " | ".join(modes) + " | target |",
        "|---|" + "---|" * len(modes) + "---|",
        "| up / bare kind | " + " | ".join(f"{med(f'{m}:up') / med('bare'):.2f}" for m in modes) + " | ≤ 1.15 |",
        "| up / (bare kind + nodes Ready) | " + " | ".join(f"{med(f'{m}:up') / med('ready'):.2f}" for m in modes)
        + " | |",
        f"| post-create {hi} / {lo} workers | "
        + " | ".join(f"{med(f'{m}:post{hi}') / med(f'{m}:post{lo}'):.2f}" for m in modes) + " | ≤ 1.3 |",
        f"| smoke {hi} / {lo} workers | "
        + " | ".join(f"{med(f'{m}:smoke{hi}') / med(f'{m}:smoke{lo}'):.2f}" for m in modes) + " | ≤ 1.5 |",
        f"| no-op up ({hi} workers), median | " + " | ".join(f"{med(f'{m}:noop{hi}'):.2f} s" for m in modes)
        + " | ≤ 2 s |",
        f"| host memory during an {hi}-worker up | "
        + " | ".join("+{} MiB (peak {} MiB in use)".format(*results.get(f"{m}:memory", (0, 0))) for m in modes)
        + " | |",
        "",
        "| measurement | value | target |",
        "|---|---|---|",
        f"| preflight, median | {med('preflight'):.2f} s | ≤ 1 s |",
        f"| `invoke --list`, median | {med('list'):.2f} s | ≤ 0.5 s |",
    ]
    if "plain" in modes and "derived" in modes and results.get("build"):
        saved = med("plain:up") - med("derived:up")
        faster = "faster" if saved >= 0 else "slower"
        lines += ["", f"kindgpu's node image: built once in {med('build'):.1f} s; each 2-worker `up` from it "
                      f"{abs(saved):.1f} s {faster} than from kind's node image (medians)."]
    if "load" in cases:
        lines += ["", "| measurement | runs | median | min – max |", "|---|---|---|---|",
                  *bench_load(args.runs, args.load_workers, args.load_mib, log)]
    write(args.out, lines)


def write(out, lines):
    text = "\n".join(lines) + "\n"
    print(text)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).with_suffix(".latest.md").write_text(text)
    print(f"written to {Path(out).with_suffix('.latest.md')} (copy into {out} with notes)")


if __name__ == "__main__":
    main()
