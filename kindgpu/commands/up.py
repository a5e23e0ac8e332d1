"""`invoke up`, and each step's task (`invoke create`, ...: up --until STEP): the steps of `up`
(kindgpu.steps, run by cluster.up), then kubectl's kubeconfig: merged unless --no-merge or the
spec's mergeKubeconfig: false, and the command that reaches the cluster shown."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import cluster, console, flags, kubeconfig
from ..errors import KindgpuError, Problem, SpecError
from ..report import Reporter


def run(config_file, checked: dict, *, until: str | None = None, dry_run: bool = False, force=(),
        recreate: bool = False, merge: bool = False, no_merge: bool = False) -> None:
    """`invoke up`, up to the step `until` (None: all of them); checked: the checked spec flags."""
    wants_merge({}, merge, no_merge)  # a contradiction exits 2 before anything is looked at
    plan = flags.plan_for(config_file, checked)
    console.warn(plan.warnings())  # the spec's, and what this host makes kindgpu do
    merging = wants_merge(plan.spec, merge, no_merge)
    reporter = Reporter()
    cluster.up(plan, reporter, force=tuple(force or ()), until=until, dry_run=dry_run, recreate=recreate)
    if dry_run:
        if merging:
            reporter.skipped("kubeconfig", f"would merge context {kubeconfig.key(plan.name)} "
                                           f"into {kubeconfig.merge_target()}")
        return
    after_up(plan.name, plan.kubeconfig, reporter, merging)



def wants_merge(doc, merge=False, no_merge=False):
    """Whether `up` merges: --merge or --no-merge, else the spec's mergeKubeconfig, else yes."""
    if merge and no_merge:
        raise SpecError([Problem("--merge", "cannot be given with --no-merge", "give one of them")],
                        title="invalid task flags")
    if merge or no_merge:
        return bool(merge)
    return doc.get("mergeKubeconfig", True) is not False


def after_up(cluster, private, reporter, merging, env=None):
    """Merge when asked (a no-op `up` leaves a kubeconfig that already has the entries alone),
    then print the kubeconfig and the one command that reaches the cluster from here.

    The cluster is up whatever happens here: a kubeconfig that cannot be merged into is a warning
    (on stderr), not a failure, and the command shown then uses the cluster's own kubeconfig."""
    if not Path(private).is_file():
        return  # no cluster yet (`up --until config`)
    if merging:
        try:
            change = kubeconfig.merge(cluster, private, only_if_changed=True, env=env)
        except KindgpuError as err:
            print(f"WARNING: context {kubeconfig.key(cluster)} not merged: {err}"
                  + (f"\nfix: {err.fix}" if err.fix else ""), file=sys.stderr)
        else:
            if change.changed:
                reporter.note(f"merged context {kubeconfig.key(cluster)} into {change.path}"
                              + (" (now the current context)" if change.current else ""))
    reporter.note(f"kubeconfig: {private}")
    reporter.note(f"next: {kubeconfig.reach_command(cluster, private, env)}")
