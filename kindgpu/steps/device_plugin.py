"""The device-plugin step: the plugin runs on every GPU worker, and each offers exactly its GPUs
(under `gpuAllocation: dra`: a DRA kubelet plugin, NVIDIA's or the simulated one, and each worker's
ResourceSlice publishes exactly its GPUs' UUIDs)."""

from __future__ import annotations

from .. import deviceplugin, diagnostics, images, nvdra, nvdriver, record
from ..errors import KindgpuError
from ..kube import is_transient, manifest_hash
from ..wait import Seen, wait_for
from .base import Context, Progress, Step

PLUGIN_READY_TIMEOUT = 300


def plugin_objects(ctx: Context, image: str) -> list[dict]:
    """The plugin's objects; for real GPUs, with the driver's place in a GPU worker."""
    if ctx.plan.simulated:  # the simulated device plugin, or under DRA the simulated DRA plugin
        return deviceplugin.objects(ctx.plan, image)
    workers = ctx.worker_nodes()
    first = next((workers[w.node] for w in ctx.plan.workers if w.gpus and w.node in workers), None)
    if first is None:
        raise KindgpuError(f"no GPU worker of {ctx.plan.name} is running", "run `invoke up`")
    driver, cdi = nvdriver.node_facts(first, ctx.plan.state.probes)
    if ctx.plan.dra or ctx.plan.spec["devicePlugin"]["deviceListStrategy"] == "cdi-cri":
        nvdriver.check_cdi(first.name, cdi)  # DRA hands devices to pods through CDI alone
    if ctx.plan.dra:
        return deviceplugin.objects(ctx.plan, image, driver, nvdra.driver_root(first.name, driver))
    return deviceplugin.objects(ctx.plan, image, driver)


class DevicePlugin(Step):
    """Deploy the device plugin and wait until every worker offers its GPUs."""

    name = "device-plugin"

    def reason(self, ctx: Context) -> str:
        image = deviceplugin.image(ctx.plan)
        stale = [obj["metadata"]["name"] for obj in plugin_objects(ctx, image)
                 if ctx.kube.current_hash(obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
                 != manifest_hash(obj)]
        if stale:
            return f"device plugin {', '.join(stale)} not deployed as specified"
        return "; ".join(record.allocation_shortfall(ctx.kube, ctx.plan))

    def run(self, ctx: Context, progress: Progress) -> None:
        plan = ctx.plan
        image, loaded = deviceplugin.load_image(plan, ctx.docker, ctx.worker_nodes().values(), progress)
        images.record_loads(plan.state.loads, self.name, {image: loaded})
        for obj in plugin_objects(ctx, image):
            ctx.kube.apply(obj)

        def offered():
            short = record.allocation_shortfall(ctx.kube, plan)
            # A crashing plugin will not offer GPUs: say so now, not after the timeout.
            failed, fix = diagnostics.plugin_crash(ctx) if short else ("", "")
            return Seen(done=not short, failed=failed, fix=fix, last="; ".join(short))

        what = ("every worker's ResourceSlice to publish its GPUs" if plan.dra
                else "every worker to offer its GPUs")
        wait_for(offered, what=what, timeout=PLUGIN_READY_TIMEOUT, interval=0.5,
                 transient=is_transient, progress=progress,
                 hint=lambda: diagnostics.plugin_hint(ctx))
