"""kindgpu's tasks: `invoke --list`. They live in the package so the `kindgpu` command has them too;
`bench` is here alone, since it needs the repository."""

import sys

from invoke import task

from kindgpu.tasks import ns


@task(help={"runs": "runs per cluster measurement (default 3)", "scale": "worker counts, e.g. 1,4,8",
            "cases": "core (up, smoke, scaling), load (invoke load against kind load), or both (default)"})
def bench(c, runs=3, scale="1,4,8", cases="core,load"):
    """Measure kindgpu against bare kind on real clusters (see bench/run.py)."""
    import shlex

    c.run(f"{sys.executable} bench/run.py --runs {int(runs)} --scale {shlex.quote(scale)} "
          f"--cases {shlex.quote(cases)}", pty=False)


ns.add_task(bench)
