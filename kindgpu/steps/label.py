"""The label step: every node carries the labels of its plan."""

from __future__ import annotations

from .. import names
from ..parallel import concurrently
from .base import Context, Progress, Step


class Label(Step):
    """Label the nodes as the spec says (gpu-worker, gpu-ids, your labels)."""

    name = "label"

    def wrong_labels(self, ctx: Context) -> dict[str, dict[str, str]]:
        """{node: {key: value}} of the labels each node lacks or has wrong."""
        actual = {n.metadata.name: n.metadata.labels or {} for n in ctx.kube.nodes()}
        wrong = {}
        for worker in ctx.plan.workers:
            have = actual.get(worker.node, {})
            fix = {k: v for k, v in worker.labels.items() if have.get(k) != v}
            if fix:
                wrong[worker.node] = fix
        cp_have = actual.get(ctx.plan.control_plane, {})
        if cp_have.get(names.LABEL_OWNER) != ctx.plan.name:
            wrong[ctx.plan.control_plane] = {names.LABEL_OWNER: ctx.plan.name}
        return wrong

    def reason(self, ctx: Context) -> str:
        wrong = self.wrong_labels(ctx)
        if not wrong:
            return ""
        keys = sorted({k for fix in wrong.values() for k in fix})
        return f"{len(wrong)} node(s) lack label(s) {', '.join(keys)}"

    def run(self, ctx: Context, progress: Progress) -> None:
        wrong = self.wrong_labels(ctx)
        concurrently(lambda item: ctx.kube.core.patch_node(item[0], {"metadata": {"labels": item[1]}}),
                     wrong.items())
