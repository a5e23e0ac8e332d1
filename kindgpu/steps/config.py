"""The config step: the cluster's state directory, with the kind config."""

from __future__ import annotations

from .. import render
from .base import Context, Progress, Step


class Config(Step):
    """Write the cluster's kind config and state files."""

    name = "config"
    needs_cluster = False

    def reason(self, ctx: Context) -> str:
        files = render.state_files(ctx.plan)
        root = ctx.plan.state.root
        stale = [rel for rel, content in files.items()
                 if not (root / rel).exists() or (root / rel).read_text() != content]
        return f"state files out of date: {', '.join(stale)}" if stale else ""

    def run(self, ctx: Context, progress: Progress) -> None:
        render.write_state(ctx.plan)
