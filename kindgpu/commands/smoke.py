"""`invoke smoke`: the level's Jobs on the cluster kindgpu made (kindgpu.smoke), or, with
--kubeconfig, on any GPU cluster (kindgpu.foreign)."""

from __future__ import annotations

from .. import flags, foreign, smoke
from ..errors import Problem, SpecError
from ..report import Reporter


def run(config_file, checked: dict, level: str, *, timeout: float | None = None, kubeconfig=None, image=None,
        junit=None, as_json: bool = False) -> None:
    """checked: the checked spec flags (--name); timeout None: flags.SMOKE_TIMEOUT."""
    if kubeconfig and checked.get("name"):
        raise SpecError([Problem("--name", "cannot be given with --kubeconfig",
                                 "--kubeconfig names the cluster (its current context); drop --name")],
                        title="invalid task flags")
    timeout = timeout or flags.SMOKE_TIMEOUT
    reporter = Reporter(quiet=as_json)
    if kubeconfig:
        foreign.smoke(kubeconfig, level, reporter, doc=flags.resolve(config_file, {}), image=image,
                      junit=junit, as_json=as_json, timeout=timeout)
        return
    smoke.smoke(flags.resolve(config_file, checked)["name"], level, reporter, junit=junit, as_json=as_json,
                timeout=timeout, image=image)
