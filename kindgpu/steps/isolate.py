"""The isolate step: each worker keeps the device nodes of its own GPUs and no others."""

from __future__ import annotations

import stat
from pathlib import Path

from .. import faults
from ..errors import KindgpuError
from ..nodes import Node
from ..parallel import concurrently
from ..plan import WorkerPlan
from .base import Context, Progress, Step

# Lists the NVIDIA GPU device nodes in a node container: "<path> <minor in hex>".
LIST_GPU_DEVICES = 'for f in /dev/nvidia[0-9]*; do [ -c "$f" ] && stat -c "%n %T" "$f"; done; true'


def gpu_devices(node: Node) -> dict[int, str]:
    """{minor: path} of the GPU character devices a node container can see."""
    out = node.sh(LIST_GPU_DEVICES).stdout
    found = {}
    for line in out.splitlines():
        path, _, minor = line.strip().partition(" ")
        if path.startswith("/dev/nvidia") and minor:
            found[int(minor, 16)] = path
    return found


def host_has_gpu_devices(dev: str | Path = "/dev") -> bool:
    """Node containers are privileged: they get the host's /dev/nvidiaN when created, and no others."""
    return any(stat.S_ISCHR(path.stat().st_mode) for path in Path(dev).glob("nvidia[0-9]*"))


class Isolate(Step):
    """Take every GPU device node that is not its own away from each worker."""

    name = "isolate"

    def survey(self, ctx: Context) -> list[tuple[WorkerPlan, list[str], list[int]]]:
        """Per worker: (foreign device paths, missing own minors)."""
        if ctx.plan.simulated and not host_has_gpu_devices():
            return []  # no GPU device nodes to take away, and simulated GPUs need none
        workers = ctx.worker_nodes()

        def one(worker):
            seen = gpu_devices(workers[worker.node])
            own = {g.minor for g in worker.gpus}  # none on a CPU-only worker: every GPU node goes
            foreign = sorted(path for minor, path in seen.items() if minor not in own)
            missing = sorted(m for m in own if m not in seen)
            return worker, foreign, missing

        return concurrently(one, [w for w in ctx.plan.workers if w.node in workers])

    def taken(self, ctx: Context, survey) -> dict[str, list[str]]:
        """{node: device paths} of its own GPUs a worker lacks and kindgpu can put back: a simulated GPU's
        file (Docker's bind mount of /dev/null), or a real GPU's device node `invoke fault --remove-device`
        took away (recorded, so its number is known). survey: this step's survey, already taken."""
        workers = ctx.worker_nodes()
        if ctx.plan.simulated:
            def lacking(worker):
                paths = [faults.device_path(ctx.plan, g) for g in worker.gpus]
                out = workers[worker.node].sh(f'for f in {" ".join(paths)}; do [ -e "$f" ] || echo "$f"; done; true')
                return worker.node, out.stdout.split()

            return {n: paths for n, paths in concurrently(lacking, [w for w in ctx.plan.gpu_workers
                                                                     if w.node in workers]) if paths}
        removed = [f for f in faults.read(ctx.kube) if f.kind == faults.DEVICE_REMOVED and f.node in workers]
        missing = {(w.node, f"/dev/nvidia{m}") for w, _, lost in survey for m in lost}
        found: dict[str, list[str]] = {}
        for f in removed:
            if (f.node, f.device) in missing:
                found.setdefault(f.node, []).append(f.device)
        return found

    def reason(self, ctx: Context) -> str:
        survey = self.survey(ctx)
        taken = self.taken(ctx, survey)
        if not ctx.plan.simulated:
            broken = [f"{w.node} lacks its GPU device(s) {', '.join(lost)}" for w, _, missing in survey
                      if (lost := [p for m in missing if (p := f'/dev/nvidia{m}') not in taken.get(w.node, [])])]
            if broken:
                raise KindgpuError(
                    "; ".join(broken) + ": the host's NVIDIA runtime did not give the node its GPUs",
                    "run `invoke preflight` (Docker's default runtime must be nvidia, with "
                    "accept-nvidia-visible-devices-as-volume-mounts = true), then `invoke up --recreate`")
        leaking = [f"{w.node} sees {len(foreign)} GPU(s) not its own" for w, foreign, _ in survey if foreign]
        lacking = [f"{node} lacks {', '.join(paths)}" for node, paths in taken.items()]
        return "; ".join(leaking + lacking)

    def run(self, ctx: Context, progress: Progress) -> None:
        workers = ctx.worker_nodes()
        survey = self.survey(ctx)  # taking the foreign ones away leaves a worker's own as they are
        concurrently(lambda item: workers[item[0].node].run(["rm", "-f", *item[1]]),
                     [(w, foreign) for w, foreign, _ in survey if foreign])
        taken = self.taken(ctx, survey)
        if not taken:
            return
        injected = faults.read(ctx.kube)
        recorded = {(f.node, f.device): f.devnum for f in injected if f.kind == faults.DEVICE_REMOVED}
        for node, paths in taken.items():
            for path in paths:
                faults.restore_device(workers[node], path, recorded.get((node, path), ""))
        # Put back: no longer a fault to show or heal.
        faults.write(ctx.kube, ctx.plan.name, [f for f in injected if not (
            f.kind == faults.DEVICE_REMOVED and f.device in taken.get(f.node, []))])
