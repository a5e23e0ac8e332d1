"""The runner of `invoke up`: ask each step whether it must run, run it, ask again, report.

Its caller gives it the steps (kindgpu.steps.pipeline(); the contract is in steps/base.py). A
step still not done after it ran fails with what is wrong. The cluster is then left as it is,
with diagnostics, and the next run resumes where this one stopped.
"""

from __future__ import annotations

from . import diagnostics
from .errors import Problem, SpecError
from .kube import attempt
from .steps.base import Context, Step, StepFailed


def run(ctx: Context, steps: list[Step], *, force: tuple[str, ...] = (), until: str | None = None,
        dry_run: bool = False) -> int:
    """Run every step that must run, in order. Returns the number of steps that ran."""
    known = [s.name for s in steps]
    check_step_names(force, until, known)
    if until:
        steps = steps[: known.index(until) + 1]
    # A guard runs only when another step is due, so those are asked first, up to the first that
    # is due. What they answer stays true until a step runs, so each is asked once.
    asked = {}
    for step in steps:
        if not step.guard:
            asked[step.name] = reason_of(ctx, step, force)
            if asked[step.name]:
                break
    due = any(asked.values())
    if not due and not any(s.guard and s.name in force for s in steps):
        ctx.reporter.note("Nothing to be done.")
        return 0
    ran = 0
    for step in steps:
        if step.name in asked:
            why = asked.pop(step.name)
        elif step.guard and not due:
            why = "forced" if step.name in force else ""
        else:
            why = reason_of(ctx, step, force)
        if not why:
            ctx.reporter.skipped(step.name, "up to date")
            continue
        if dry_run:
            ctx.reporter.skipped(step.name, f"would run: {why}")
            continue
        run_step(ctx, step, why)
        asked.clear()  # a step ran: what the later steps answered before may have changed
        ran += 1
    return ran


def step_problems(flag: str, requested: list[str | None], known: list[str]) -> list[Problem]:
    return [Problem(flag, f"unknown step {s!r}", f"steps are {', '.join(known)}")
            for s in requested if s and s not in known]


def check_step_names(force: tuple[str, ...], until: str | None, known: list[str]) -> None:
    """The up task checks these first (kindgpu.flags); here for callers of run()."""
    problems = step_problems("--force", force, known) + step_problems("--until", [until], known)
    if problems:
        raise SpecError(problems, title="invalid task flags")


def reason_of(ctx: Context, step: Step, force: tuple[str, ...] = ()) -> str:
    """Why a step must run ("" when it is done). A cluster that is not there yet makes every
    step that reads it due."""
    if step.name in force:
        return "forced"
    if step.needs_cluster and (not ctx.plan.kubeconfig.exists() or not ctx.nodes()):
        return "the cluster is not up yet"
    why, err = attempt(lambda: step.reason(ctx))  # a KindgpuError is never transient: it is raised
    return f"cluster not reachable yet ({type(err).__name__})" if err is not None else why


def run_step(ctx: Context, step: Step, why: str) -> None:
    with ctx.reporter.step(step.name, why) as progress:
        try:
            step.run(ctx, progress)
            still = step.still_wrong(ctx)
        except StepFailed:
            raise
        except Exception as err:
            raise StepFailed(f"step {step.name} failed: {err}{diagnostics_line(ctx, step)}\n"
                             "The cluster is left as it is.",
                             getattr(err, "fix", None) or "fix the cause and run `invoke up` again") from err
        if still:
            raise StepFailed(f"step {step.name} ran but is still not done: {still}{diagnostics_line(ctx, step)}")


def diagnostics_line(ctx: Context, step: Step) -> str:
    """Collect the diagnostics of a cluster that exists; a line that says where they are."""
    if not ctx.nodes():
        return ""
    return f"\ndiagnostics: {diagnostics.collect(ctx, step.name)}"
