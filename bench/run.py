"""What kindgpu costs on top of kind, and how it scales (simulated GPUs, real kind clusters).

    python bench/run.py [--runs 3] [--cases core,load] [--out docs/benchmarks.md]     (or: invoke bench)

Needs dockerd, kind and KINDGPU_NODE_IMAGE (hack/harness/setup.sh). Every measurement is a
whole command as a user runs it, timed from outside; medians over --runs runs, with min and max.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
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
NAME = os.environ.get("KINDGPU_BENCH_NAME", "kgpu-bench")  # another name where other benches run


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


def random_image(tag, mib, layers=1):
    """An image of `mib` MiB of random bytes in `layers` layers: nothing in the nodes shares a layer
    with it, and it does not compress, like a user's own image. Written as `docker save` writes
    (a layer.tar per layer, their digests in the config) and `docker load`ed: no registry needed."""
    import tarfile

    with tempfile.TemporaryDirectory(dir=os.environ.get("KINDGPU_STATE_DIR")) as tmp:
        diff_ids, tars = [], []
        for i in range(layers):
            blob, layer = Path(tmp) / "blob", Path(tmp) / f"layer{i}.tar"
            with blob.open("wb") as out:
                for _ in range(mib // layers):
                    out.write(os.urandom(1 << 20))
            with tarfile.open(layer, "w") as tar:
                tar.add(blob, arcname=f"data/layer{i}")
            blob.unlink()
            digest = hashlib.sha256()
            with layer.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            diff_ids.append(f"sha256:{digest.hexdigest()}")
            tars.append(layer)
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/none"]},
                             "rootfs": {"type": "layers", "diff_ids": diff_ids},
                             "history": [{"created_by": "bench"} for _ in diff_ids]}).encode()
        config_name = f"{hashlib.sha256(config).hexdigest()}.json"
        archive = Path(tmp) / "image.tar"
        with tarfile.open(archive, "w") as tar:
            def add(name, data):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            add(config_name, config)
            layer_names = []
            for diff_id, layer in zip(diff_ids, tars):
                layer_names.append(f"{diff_id[7:]}/layer.tar")
                tar.add(layer, arcname=layer_names[-1])
                layer.unlink()
            manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]
            add("manifest.json", json.dumps(manifest).encode())
        sh("docker", "load", "--input", str(archive))


def node_names():
    out = sh("docker", "ps", "--filter", f"label=io.x-k8s.kind.cluster={NAME}", "--format", "{{.Names}}").stdout
    return sorted(out.split())


def in_nodes(tag, nodes):
    ref = image_ref(tag)
    return all(ref in sh("docker", "exec", node, "crictl", "images", "-o", "json").stdout for node in nodes)


def image_ref(tag):
    """The name containerd records (docker.io/library/... for a name without a registry)."""
    sys.path.insert(0, str(ROOT))
    from kindgpu.images import normalized

    return normalized(tag)


# Removes the image from a node, and its layers: containerd keeps unreferenced blobs and
# snapshots until they are removed by digest, and a later load would find them there.
FORGET = ("ctr -n k8s.io images ls -q | grep -F -e \"$1\" -e import- | xargs -r ctr -n k8s.io images rm >/dev/null; "
          "shift; ctr -n k8s.io content rm \"$@\" >/dev/null 2>&1; true")


def forget(tag, nodes):
    digests = sh("docker", "image", "inspect", tag, "--format",
                 "{{.Id}} {{range .RootFS.Layers}}{{.}} {{end}}").stdout.split()
    threads = [threading.Thread(target=sh, args=("docker", "exec", node, "sh", "-c", FORGET, "forget",
                                                 image_ref(tag), *digests)) for node in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def disk_write_speed(path, mib=1024, how="oflag=direct"):
    """The disk's own sequential write speed (bytes/s), as `dd oflag=direct` measures it, in the
    directory given (the filesystem Docker keeps the nodes' /var on, where it can be written).
    how="conv=fsync": through the page cache, then synced, as containerd writes a blob."""
    target = Path(path) / f"kindgpu-bench-dd-{os.getpid()}"
    try:
        out = sh("dd", "if=/dev/zero", f"of={target}", "bs=4M", f"count={mib // 4}", how).stderr
    finally:
        target.unlink(missing_ok=True)
    seconds = float(re.search(r"copied, ([0-9.]+) s", out).group(1))
    return mib * (1 << 20) / seconds


def load_spec(workers, real):
    """The load case's cluster: simulated GPUs, or on a GPU host one GPU worker and CPU-only ones."""
    if not real:
        return spec_args(workers)
    spec = Path(os.environ["KINDGPU_STATE_DIR"]) / f"bench-load-{workers}.yaml"
    listed = ", ".join(["{gpus: [0]}", *["{gpus: []}"] * (workers - 1)])
    spec.write_text(f"apiVersion: kindgpu.dev/v1alpha1\nkind: GPUCluster\nworkers: [{listed}]\n")
    return ["--config", str(spec), "--name", NAME]


def bench_load(args, log):
    """A large image into 1, 2, 4 ... workers: `kind load docker-image` against `invoke load`, the
    disk's own write speed measured in the same run, and where `invoke load`'s time goes."""

    counts = [int(x) for x in str(args.load_workers).split(",")]
    tag = args.load_image or f"kindgpu-bench/load:{args.load_mib}m-{args.load_layers}"
    if sh("docker", "image", "inspect", tag, check=False).returncode != 0:
        if args.load_image:
            sys.exit(f"--load-image {tag} is not in this host's Docker")
        log(f"making {tag} ({args.load_mib} MiB, {args.load_layers} layers, kept for the next run)")
        random_image(tag, args.load_mib, args.load_layers)
    size = int(sh("docker", "image", "inspect", tag, "--format", "{{.Size}}").stdout)
    root = sh("docker", "info", "--format", "{{.DockerRootDir}}").stdout.strip()
    dd_dir = root if os.access(root, os.W_OK) else os.environ["KINDGPU_STATE_DIR"]
    speeds, buffered = [disk_write_speed(dd_dir)], [disk_write_speed(dd_dir, how="conv=fsync")]
    log(f"disk: {speeds[0] / 1e9:.2f} GB/s direct, {buffered[0] / 1e9:.2f} GB/s buffered (dd in {dd_dir})")
    invoke("up", *load_spec(max(counts), args.load_real))
    workers = [n for n in node_names() if "-worker" in n]
    times, phases, streamed = {}, {}, {}
    for count in counts:
        chosen = workers[:count]
        numbers = ",".join(str(i) for i in range(1, count + 1))
        commands = {"kind": lambda: sh("kind", "load", "docker-image", tag, "--name", NAME,
                                       "--nodes", ",".join(chosen)),
                    "kindgpu": lambda: invoke("load", tag, "--name", NAME, "--workers", numbers, "--json")}
        for run in range(args.runs):
            for tool in ("kind", "kindgpu") if run % 2 == 0 else ("kindgpu", "kind"):  # neither always first
                forget(tag, workers)
                out = {}
                seconds = timed(lambda: out.update(result=commands[tool]()))
                times.setdefault((tool, count), []).append(seconds)
                if not in_nodes(tag, chosen):
                    sys.exit(f"{tool} did not load {tag} into {chosen}")
                if tool == "kindgpu":
                    doc = json.loads(out["result"].stdout)["images"][0]
                    phases.setdefault(count, []).append(doc["phases"])
                    streamed[count] = doc["bytes"]
                    again = timed(lambda: commands[tool]())
                    times.setdefault(("again", count), []).append(again)
                log(f"load into {count} worker(s), {tool}: {seconds:.1f}s")
    forget(tag, workers)
    speeds.append(disk_write_speed(dd_dir))
    buffered.append(disk_write_speed(dd_dir, how="conv=fsync"))
    down()
    if not args.load_image:
        log(f"{tag} kept for the next run (docker rmi {tag} removes it)")
    disk, disk_buffered = statistics.median(speeds), statistics.median(buffered)
    med = lambda key: statistics.median(times[key])  # noqa: E731
    lines = [f"Image {tag}: {size / 1e9:.2f} GB in Docker, {streamed[counts[0]] / 1e9:.2f} GB as `docker save` "
             f"streams it. Disk: {', '.join(f'{s / 1e9:.2f}' for s in speeds)} GB/s (`dd oflag=direct`, 1 GiB, "
             f"before and after), {', '.join(f'{s / 1e9:.2f}' for s in buffered)} GB/s through the page cache "
             "(`dd conv=fsync`, as containerd writes); medians used below. Bound: the bytes containerd writes "
             "(each layer twice per node: its blob, then the unpacked snapshot) at that speed.",
             "", "| measurement | runs | median | min – max |", "|---|---|---|---|"]
    for count in counts:
        lines += [row(f"`kind load docker-image`, into {count} worker(s)", times[("kind", count)]),
                  row(f"`invoke load`, into {count} worker(s)", times[("kindgpu", count)]),
                  row(f"`invoke load` again, into {count} worker(s) (every one has it)", times[("again", count)])]
    lines += ["", "| workers | `invoke load` | / kind load | placed GB/s | / disk (direct) | bound, direct | "
                  "/ bound | bound, buffered | / bound | docker save, stream, after (s) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for count in counts:
        took, placed = med(("kindgpu", count)), streamed[count] * count
        # containerd writes each layer twice in a node: its packed blob, then the unpacked snapshot.
        bound, bound_buffered = 2 * placed / disk, 2 * placed / disk_buffered
        p = {k: statistics.median(ph[k] for ph in phases[count]) for k in ("save", "stream", "finish")}
        lines.append(f"| {count} | {took:.1f} s | {took / med(('kind', count)):.2f} | {placed / took / 1e9:.2f} | "
                     f"{placed / took / disk:.2f} | {bound:.1f} s | {took / bound:.2f} | {bound_buffered:.1f} s | "
                     f"{took / bound_buffered:.2f} | {p['save']:.1f}, {p['stream']:.1f}, {p['finish']:.1f} |")
    hi, lo = max(counts), min(counts)
    lines += ["", f"{hi} / {lo} workers, `invoke load`: {med(('kindgpu', hi)) / med(('kindgpu', lo)):.2f} "
                  f"(`kind load`: {med(('kind', hi)) / med(('kind', lo)):.2f})."]
    return lines


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
    parser.add_argument("--load-workers", default="1,2,4", help="worker counts the load case loads into")
    parser.add_argument("--load-mib", type=int, default=2048, help="size of the load case's own image")
    parser.add_argument("--load-layers", type=int, default=4, help="layers of the load case's own image")
    parser.add_argument("--load-image", default="", help="load this image of the host's Docker instead")
    parser.add_argument("--load-real", action="store_true",
                        help="a GPU host: the load cluster has one GPU worker and CPU-only ones (no simulation)")
    parser.add_argument("--rebuild-node-image", action="store_true",
                        help="remove the node images kindgpu built that no container uses first, to time the build "
                             "(on a shared dockerd that removes other users' too)")
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
        lines = [machine, ""]
        if "load" in cases:
            lines += bench_load(args, log)
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
        if args.rebuild_node_image:  # every unused kindgpu node image goes, other sessions' too
            invoke("node-images", "--remove")
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
        lines += ["", *bench_load(args, log)]
    write(args.out, lines)


def write(out, lines):
    text = "\n".join(lines) + "\n"
    print(text)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).with_suffix(".latest.md").write_text(text)
    print(f"written to {Path(out).with_suffix('.latest.md')} (copy into {out} with notes)")


if __name__ == "__main__":
    main()
