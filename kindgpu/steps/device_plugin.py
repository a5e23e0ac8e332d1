"""The device-plugin step: the plugin runs on every GPU worker, and each offers exactly its GPUs."""

from __future__ import annotations

from .. import deviceplugin, diagnostics, record
from ..kube import is_transient, manifest_hash
from ..wait import Seen, wait_for
from .base import Context, Progress, Step

PLUGIN_READY_TIMEOUT = 300


class DevicePlugin(Step):
    """Deploy the device plugin and wait until every worker offers its GPUs."""

    name = "device-plugin"

    def reason(self, ctx: Context) -> str:
        image = deviceplugin.image(ctx.plan)
        stale = [obj["metadata"]["name"] for obj in deviceplugin.objects(ctx.plan, image)
                 if ctx.kube.current_hash(obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"])
                 != manifest_hash(obj)]
        if stale:
            return f"device plugin {', '.join(stale)} not deployed as specified"
        return "; ".join(record.gpu_shortfall(ctx.kube, ctx.plan))

    def run(self, ctx: Context, progress: Progress) -> None:
        plan = ctx.plan
        image = deviceplugin.load_image(plan, ctx.docker, ctx.worker_nodes().values(), progress)
        for obj in deviceplugin.objects(plan, image):
            ctx.kube.apply(obj)
        wait_for(lambda: Seen(done=not (short := record.gpu_shortfall(ctx.kube, plan)), last="; ".join(short)),
                 what="every worker to offer its GPUs", timeout=PLUGIN_READY_TIMEOUT, interval=0.5,
                 transient=is_transient, progress=progress,
                 hint=lambda: diagnostics.plugin_hint(ctx))
