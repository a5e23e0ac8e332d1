"""The isolate step: each worker keeps the device nodes of its own GPUs and no others."""

from __future__ import annotations

import stat
from pathlib import Path

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

    def reason(self, ctx: Context) -> str:
        survey = self.survey(ctx)
        if not ctx.plan.simulated:
            broken = [f"{w.node} lacks its GPU device(s) {', '.join(f'/dev/nvidia{m}' for m in missing)}"
                      for w, _, missing in survey if missing]
            if broken:
                raise KindgpuError(
                    "; ".join(broken) + ": the host's NVIDIA runtime did not give the node its GPUs",
                    "run `invoke preflight` (Docker's default runtime must be nvidia, with "
                    "accept-nvidia-visible-devices-as-volume-mounts = true), then `invoke up --recreate`")
        leaking = [f"{w.node} sees {len(foreign)} GPU(s) not its own" for w, foreign, _ in survey if foreign]
        return "; ".join(leaking)

    def run(self, ctx: Context, progress: Progress) -> None:
        workers = ctx.worker_nodes()
        concurrently(lambda item: workers[item[0].node].run(["rm", "-f", *item[1]]),
                     [(w, foreign) for w, foreign, _ in self.survey(ctx) if foreign])
