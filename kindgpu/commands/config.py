"""`invoke config`: show the GPU plan and write the cluster's files."""

from __future__ import annotations

from .. import console, flags, render, versions


def show_plan(plan, written, dry_run, as_json):
    if as_json:
        doc = plan.to_dict()
        doc["dryRun"] = dry_run
        doc["kindConfig"] = str(plan.state.kind_config)
        doc["written"] = [str(p) for p in written]
        doc["nodeImage"] = node_image_line(plan)
        console.print_json(doc)
        return
    where = "simulated" if plan.simulated else "host"
    rows = []
    for w in plan.workers:
        rows += [(w.number, w.node, g.index, g.uuid, g.minor if g.minor is not None else "?", g.name)
                 for g in w.gpus] or [("cpu-only", w.node, "-", "(no GPU)", "-", "-")]
    console.table(
        f"Cluster {plan.name}: {len(plan.workers)} workers, "
        f"{sum(len(w.gpus) for w in plan.workers)} of {len(plan.inventory.gpus)} {where} GPUs",
        ["worker", "node", "GPU", "UUID", "minor", "model"],
        rows,
    )
    print(f"node image: {node_image_line(plan)}")
    if dry_run:
        print(f"dry run: would write {plan.state.kind_config}")
    else:
        print(f"kind config: {plan.state.kind_config}"
              + ("" if written else " (unchanged)"))


def node_image_line(plan) -> str:
    """Which node image, why that one, its Kubernetes, and what kindgpu renders because of it."""
    image = plan.spec["nodeImage"]
    chosen = " (kind's default)" if image == versions.default_node_image() else ""
    told = "; kubelet told failCgroupV1: false (cgroup v1 host)" if plan.runtime.needs_cgroup_v1_override else ""
    return f"{image}{chosen}, Kubernetes {versions.show(plan.runtime.kubernetes)}{told}"


def run(config_file, checked: dict, *, dry_run: bool = False, as_json: bool = False) -> None:
    """The plan for the spec file and the checked flags; the kind config written unless dry_run."""
    plan = flags.plan_for(config_file, checked)
    console.warn(plan.warnings())
    written = [] if dry_run else render.write_state(plan)
    if dry_run:
        render.kind_config(plan)  # still validated
    show_plan(plan, written, dry_run, as_json)
