"""`invoke smoke`: GPU Jobs on every worker; pass only if each sees exactly its own GPUs.

Also checks that the GPU limit is enforced: a pod asking one GPU more than a worker has
must stay Pending. A CPU-only worker gets a Job without a GPU limit that must see no GPU,
and a pod asking for 1 GPU that must stay Pending. With time-slicing a worker offers its GPUs
× replicas: its Job asks for all of them, and two pods given a replica each may see the same
GPU (smoke.checks). A pod selecting by nvidia.com/gpu.product must land on a worker
with that product. Jobs are deleted afterwards; the verdict comes from kindgpu.payloads.judge.

Where a change goes: the objects a run makes, jobs.py; a new check of what schedulers read,
checks.py; how the logs make the verdict, verdict.py (each log's judge: payloads/judge.py); the
order of the run against the cluster, run.py; the JUnit file and the table, report.py; a new
level, payloads/levels.py. Nothing here imports a module above it (flags, tasks, foreign).
"""

from __future__ import annotations

from pathlib import Path

from .. import faults, nodes, record
from ..errors import KindgpuError, Problem, SpecError
from ..kube import Kube, wait_answering
from ..payloads import levels
from ..state import StateDir
from .report import junit_xml, show
from .run import SmokeRun


def check_level(plan, level):
    """The level against the cluster (levels.problem): simulated GPUs run visibility only."""
    found = levels.problem(level, plan.simulated)
    if found:
        raise SpecError([Problem("--level", *found)], title="invalid task flags")


def smoke(name, level, reporter, *, junit=None, as_json=False, timeout=300, image=None):
    """`invoke smoke` on a cluster kindgpu made: its recorded plan, the level's Jobs, the report."""
    found = nodes.cluster_nodes(nodes.docker_client(), name)  # no Docker: say so, not what kind says
    if found and not nodes.made_by_kindgpu(found):
        raise KindgpuError(f"cluster {name} is a kind cluster kindgpu did not make",
                           f"test it with `invoke smoke --kubeconfig FILE` (`kind get kubeconfig --name {name}` "
                           "writes one)")
    stopped = sorted(n.name for n in found if not n.running)
    if stopped:
        raise KindgpuError(f"node container(s) of {name} not running: {', '.join(stopped)}",
                           "run `invoke up`: it starts them and waits for their kubelets and GPUs")
    kube = Kube.for_kind_cluster(name)
    wait_answering(kube, name, reporter.note)
    plan = record.require(kube, name)
    check_level(plan, level)
    injected = faults.read(kube)
    if blocking := faults.out_of_service(injected):
        # Those workers offer fewer GPUs than smoke asks of them, on purpose: that is the reason, said at once.
        raise KindgpuError("smoke cannot pass while GPUs are Unhealthy on purpose: "
                           f"{'; '.join(f.describe() for f in blocking)}",
                           "`invoke heal` undoes them; then run smoke again")
    return run_and_report(kube, plan, level, reporter, junit or StateDir.of(name).junit(level),
                          as_json=as_json, timeout=timeout, image=image)


def run_and_report(kube, plan, level, reporter, junit, *, as_json=False, timeout=300, foreign=False, image=None):
    """Run the level's Jobs on the plan's workers, write the JUnit report, show the outcome."""
    name = plan.name
    with reporter.step("smoke", f"{level} Jobs on {len(plan.workers)} worker(s)") as progress:
        outcome = SmokeRun(kube, plan, level, progress, timeout, foreign=foreign, image=image).run()
    path = junit
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(junit_xml(outcome, name, dra=plan.dra))
    show(outcome, name, as_json)
    if not as_json:
        print(f"JUnit report: {path}")
    if not outcome.ok:
        raise KindgpuError(f"smoke failed: {outcome.message}", outcome.fix or None)
    return outcome
