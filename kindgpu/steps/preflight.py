"""The preflight step: the host's checks, before anything changes."""

from __future__ import annotations

from .. import preflight as checks
from .base import Context, Progress, Step, StepFailed


class Preflight(Step):
    """Check that this host can run the cluster."""

    name = "preflight"
    needs_cluster = False
    guard = True

    def reason(self, ctx: Context) -> str:
        return "check the host before changing anything"

    def still_wrong(self, ctx: Context) -> str:
        return ""  # run() raised if a check failed

    def run(self, ctx: Context, progress: Progress) -> None:
        request = checks.Request.from_spec(ctx.plan.spec)  # what `invoke preflight` asks, from the same spec
        failed = [c for c in checks.run_checks(request) if c.status == checks.Status.FAIL]
        if failed:
            lines = "\n".join(f"  FAIL {c.title}: {c.found}" + (f"\n       fix: {c.fix}" if c.fix else "")
                              for c in failed)
            raise StepFailed(f"preflight found {len(failed)} problem(s):\n{lines}")
