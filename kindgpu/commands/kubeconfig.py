"""`invoke kubeconfig`: the path of the cluster's own kubeconfig; --merge or --unmerge its context
in the files kubectl reads (kindgpu.kubeconfig does the editing)."""

from __future__ import annotations

from .. import flags, kind, kubeconfig as kc
from ..errors import Problem, SpecError


def run(config_file, checked: dict, *, merge: bool = False, unmerge: bool = False) -> None:
    if merge and unmerge:
        raise SpecError([Problem("--merge", "cannot be given with --unmerge", "give one of them")],
                        title="invalid task flags")
    spec = flags.resolve(config_file, checked)
    cluster, private = spec["name"], kind.own_kubeconfig(spec)
    if merge:
        change = kc.merge(cluster, private)
        print(f"{'merged' if change.changed else 'already merged:'} context {kc.key(cluster)} into {change.path}"
              + (" (now the current context)" if change.current else ""))
        print(f"next: {kc.reach_command(cluster, private)}")
    elif unmerge:
        changed = kc.unmerge(cluster, private)
        where = ", ".join(str(p) for p in kc.kubectl_paths())
        print(f"removed context {kc.key(cluster)} from {', '.join(map(str, changed))}" if changed
              else f"no context {kc.key(cluster)} in {where}: nothing to remove")
    else:
        kc.own_entries(cluster, private)  # an error, with the fix, when the cluster has none
        print(private)
