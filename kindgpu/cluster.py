"""Cluster lifecycle around the steps: up (locked, spec-checked), down, status."""

from __future__ import annotations

import re
import shutil

from . import (
    console,
    deviceplugin,
    drift,
    faults,
    kind,
    kubeconfig,
    lock,
    names,
    nodes,
    pods,
    record,
    runner,
    sharing,
    steps,
)
from .errors import KindgpuError
from .kube import Kube, attempt, wait_answering
from .state import StateDir


def cluster_lock(name, command, reporter):
    """One kindgpu command changes a cluster at a time; a second one waits for it (and says so)."""
    return lock.exclusive(StateDir.of(name).lock, name, command, reporter.note)


def check_same_spec(ctx, recreate, reporter):
    """Refuse to change a cluster made from another spec, unless asked to recreate it (kindgpu.drift)."""
    found = ctx.nodes()
    if not found or not ctx.plan.kubeconfig.exists() or not nodes.made_by_kindgpu(found.values()):
        return
    recorded, not_answering = attempt(lambda: record.read(ctx.kube))
    if not_answering:
        return  # the create step will say so
    diff = drift.spec_differences(recorded.spec, ctx.plan.spec) if recorded is not None else []
    if not diff:
        return
    if not drift.needs_recreate(recorded.spec, ctx.plan.spec):
        # Only what the steps change in place (devicePlugin.sharing): they do, and re-record the spec.
        reporter.note(f"changing {ctx.plan.name} in place: "
                      f"{'; '.join(drift.live_differences(recorded.spec, ctx.plan.spec))}")
        return
    if not recreate:
        raise KindgpuError(
            f"cluster {ctx.plan.name} was made from another spec:\n" + "\n".join(f"  {d}" for d in diff),
            "run `invoke up --recreate` to delete it and make it anew, or `invoke down` first")
    reporter.note(f"recreating {ctx.plan.name}: spec changed ({'; '.join(diff)})")
    delete(ctx.plan.name, reporter, force=False, keep_lock=True)


def up(plan, reporter, *, force=(), until=None, dry_run=False, recreate=False):
    nodes.docker_client()  # before anything is written: no Docker, nothing changes
    ctx = steps.Context(plan, reporter)
    if dry_run:  # changes nothing, so it needs no lock (whose file would be written)
        return runner.run(ctx, steps.pipeline(), force=force, until=until, dry_run=True)
    with cluster_lock(plan.name, "up", reporter):
        check_same_spec(ctx, recreate, reporter)
        return runner.run(ctx, steps.pipeline(), force=force, until=until)


def remove_state(state, *, keep_lock):
    if not keep_lock:
        shutil.rmtree(state.root)
        return
    for entry in state.root.iterdir():
        if entry != state.lock:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def delete(name, reporter, *, force=False, keep_lock=False):
    """Delete the cluster, its network and state; fine when nothing is there. keep_lock: the
    caller goes on under the lock (`up --recreate`), so its file stays."""
    client = nodes.docker_client()
    found = nodes.cluster_nodes(client, name)
    if found and not nodes.made_by_kindgpu(found) and not force:
        raise KindgpuError(
            f"kind cluster {name} was not made by kindgpu; refusing to delete it",
            f"`invoke down --name {name} --force` if you are sure")
    state = StateDir.of(name)
    removed = []
    if found:
        with reporter.step("delete", f"kind delete cluster --name {name}"):
            kind.delete(name)  # editing only the cluster's own kubeconfig
        removed.append(f"{len(found)} node container(s)")
    try:
        for path in kubeconfig.unmerge_recorded(name):  # what kindgpu merged, and nothing else
            removed.append(f"context {kubeconfig.key(name)} from {path}")
    except KindgpuError as err:  # the cluster goes anyway; its entries stay where they are
        reporter.note(f"WARNING: context {kubeconfig.key(name)} left in place: {err}"
                      + (f"\nfix: {err.fix}" if err.fix else ""))
    removed += [f"network {n}" for n in nodes.remove_networks(client, name)]
    left = nodes.cluster_nodes(client, name)
    if left:
        raise KindgpuError(f"containers of {name} are still there: {', '.join(c.name for c in left)}")
    if state.root.exists():  # last: a command waiting for the lock locks a new file from here on
        had_state = any(entry != state.lock for entry in state.root.iterdir())  # not only down's lock
        remove_state(state, keep_lock=keep_lock)
        if had_state:
            removed.append(f"state {state.root}")
    return removed


def down(name, reporter, *, force=False):
    nodes.docker_client()
    with cluster_lock(name, "down", reporter):
        removed = delete(name, reporter, force=force)
    reporter.note(f"removed {', '.join(removed)}" if removed else f"nothing to delete: no cluster {name}")
    return removed


UP_FIX = "run `invoke up`: it starts stopped node containers and waits for their kubelets and GPUs"


def status(name, note):
    """Nodes, roles, labels, assigned vs allocatable GPUs and plugin pods, as one document, with
    every reason it is NOT healthy and its fix. Docker is asked first (a stopped node is NOT healthy
    at once), then the API, waited for while it (re)starts. It reads the cluster alone (kind gives
    its kubeconfig): the state directory may be gone."""
    client = nodes.docker_client()
    found = {n.name: n for n in nodes.cluster_nodes(client, name)}
    if not found:
        raise KindgpuError(f"no cluster {name} on this host", "create it with `invoke up`")
    if not nodes.made_by_kindgpu(found.values()):
        raise KindgpuError(f"cluster {name} is a kind cluster kindgpu did not make",
                           "`invoke smoke --kubeconfig FILE` tests any GPU cluster")
    stopped = sorted(n for n, node in found.items() if not node.running)
    problems = [{"node": n, "problem": f"node container {found[n].container.status}", "fix": UP_FIX} for n in stopped]
    if f"{name}-control-plane" in stopped:
        return {"cluster": name, "healthy": False, "problems": problems,
                "nodes": [{"node": n, "role": node.role, "ready": False, "container": node.container.status}
                          for n, node in sorted(found.items(), key=lambda item: node_order(item[0]))]}
    kube = Kube.for_kind_cluster(name)
    wait_answering(kube, name, note)
    plan = record.require(kube, name)
    injected = faults.read(kube)
    downed = {f.node for f in injected if f.kind == faults.WORKER_DOWN}
    failed = faults.unhealthy_per_node(injected)
    gone = faults.withheld(injected)
    problems = [{**p, "fix": "`invoke heal` starts it (`invoke fault --down` stopped it)"} if p["node"] in downed
                else p for p in problems]
    started = nodes.start_times({n: node for n, node in found.items() if node.running})
    assigned = {w.node: w for w in plan.workers}
    sim = plan.simulated
    ts = sharing.of(plan.spec)
    selector = deviceplugin.plugin_selector(plan)
    plugins = {p.spec.node_name: p for p in kube.pods(names.SYSTEM_NAMESPACE, selector)}
    # Under DRA: what each worker's ResourceSlice publishes (UUIDs), against what it was assigned.
    published = record.published_gpus(kube.resource_slices()) if plan.dra else None
    rows = []
    for node in sorted(kube.nodes(), key=lambda n: node_order(n.metadata.name)):
        labels = node.metadata.labels or {}
        worker = assigned.get(node.metadata.name)
        cpu_only = bool(worker) and not worker.gpus
        pod = plugins.get(node.metadata.name)
        rows.append({
            "node": node.metadata.name,
            "role": "control-plane" if "node-role.kubernetes.io/control-plane" in labels else "worker",
            "ready": node.metadata.name not in stopped and record.reported_ready(node, started.get(node.metadata.name)),
            "gpuWorker": labels.get(names.LABEL_GPU_WORKER, ""),
            "gpuIds": labels.get(names.LABEL_GPU_IDS, ""),
            "cpuOnly": cpu_only,
            "assignedGPUs": len(worker.gpus) if worker else 0,
            # Time-sliced: each assigned GPU is offered `replicas` times (as ts.resource).
            "allocatableGPUs": int((node.status.allocatable or {}).get(ts.resource, "0")),
            "replicas": ts.replicas,
            "uuids": [g.uuid for g in worker.gpus] if worker else [],
            "plugin": "(node container stopped)" if node.metadata.name in stopped
                      else worker_plugin(worker, cpu_only, pod),
        })
        if published is not None:
            rows[-1]["publishedGPUs"] = published.get(node.metadata.name, [])
    for r in rows:
        if r["node"] in stopped:
            continue
        if not r["ready"]:
            problems.append({"node": r["node"], "problem": "not Ready (or not reported since its container started)",
                             "fix": UP_FIX})
        elif published is not None:
            # A GPU left out on purpose (a fault under a Kubernetes without device taints, a file taken away)
            if r["role"] == "worker" and r["publishedGPUs"] != sorted(set(r["uuids"]) - gone.get(r["node"], set())):
                problems.append({"node": r["node"], "problem": f"its ResourceSlice publishes "
                                 f"{len(r['publishedGPUs'])} GPU(s) {r['publishedGPUs']}, {r['assignedGPUs']} "
                                 f"assigned {sorted(r['uuids'])} (DRA plugin {r['plugin'] or 'none'})",
                                 "fix": UP_FIX})
        elif ts.allocatable(r["assignedGPUs"] - failed.get(r["node"], 0)) != r["allocatableGPUs"]:
            problems.append({"node": r["node"], "problem": f"offers {r['allocatableGPUs']} GPUs, "
                                                           f"{ts.allocatable(r['assignedGPUs'])} assigned "
                                                           f"(plugin {r['plugin'] or 'none'})", "fix": UP_FIX})
    problems += [{"node": f.node, "problem": f.describe(), "fix": "`invoke heal` undoes it"
                  + (" (`invoke up` puts the device node back too)" if f.kind == faults.DEVICE_REMOVED else "")}
                 for f in injected if f.kind in (faults.GPU, faults.DEVICE_REMOVED)]
    if not stopped:  # a node's own /dev/nvidiaN only: isolation, as the isolate step checks it
        problems += [{"node": w.node, "problem": f"sees GPU device node(s) not its own: {', '.join(foreign)}",
                      "fix": "run `invoke up`: its isolate step takes them away"}
                     for w, foreign, _ in steps.Isolate().survey(steps.Context(plan, None)) if foreign]
    return {"cluster": name, "simulated": sim, "gpuAllocation": "dra" if plan.dra else "devicePlugin",
            "specHash": plan.spec_hash, "healthy": not problems, "problems": problems,
            "faults": [f.__dict__ for f in injected], "sharing": sharing.describe(ts), "nodes": rows}


def node_order(node_name):
    """worker2 before worker10: numbers compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", node_name)]


def worker_plugin(worker, cpu_only, pod):
    if not worker:
        return ""
    if cpu_only:  # no plugin belongs there; one that is would be a stray
        return "" if pod is None else f"unexpected: {plugin_state(pod)}"
    return plugin_state(pod)


def plugin_state(pod):
    return "missing" if pod is None else pods.state(pod)


def show_status(doc, as_json):
    if as_json:
        console.print_json(doc)
        return
    if "simulated" not in doc:  # the control plane is stopped: Docker alone answered
        console.table(f"Cluster {doc['cluster']}: NOT healthy", ["node", "role", "container"],
                      [(r["node"], r["role"], r["container"]) for r in doc["nodes"]])
        show_problems(doc)
        return
    if doc.get("gpuAllocation") == "dra":
        show_dra_status(doc)
        return
    console.table(
        f"Cluster {doc['cluster']} ({'simulated' if doc['simulated'] else 'real'} GPUs): "
        f"{'healthy' if doc['healthy'] else 'NOT healthy'}",
        ["node", "role", "ready", "gpu-worker", "gpu-ids", "GPUs assigned/allocatable", "plugin"],
        [(r["node"], r["role"], "yes" if r["ready"] else "NO", "cpu-only" if r["cpuOnly"] else r["gpuWorker"],
          r["gpuIds"],
          (f"{r['assignedGPUs']}/{r['allocatableGPUs']}" + (f" (×{r['replicas']})" if r["replicas"] > 1 else ""))
          if r["role"] == "worker" else "",
          r["plugin"]) for r in doc["nodes"]])
    show_problems(doc)


def show_dra_status(doc):
    """Under DRA a worker's GPUs are the devices its ResourceSlice publishes, not allocatable counts."""
    console.table(
        f"Cluster {doc['cluster']} ({'simulated' if doc['simulated'] else 'real'} GPUs, DRA): "
        f"{'healthy' if doc['healthy'] else 'NOT healthy'}",
        ["node", "role", "ready", "gpu-worker", "gpu-ids", "GPUs assigned/published", "published UUIDs", "plugin"],
        [(r["node"], r["role"], "yes" if r["ready"] else "NO", "cpu-only" if r["cpuOnly"] else r["gpuWorker"],
          r["gpuIds"],
          f"{r['assignedGPUs']}/{len(r.get('publishedGPUs', []))}" if r["role"] == "worker" else "",
          ",".join(r.get("publishedGPUs", [])), r["plugin"]) for r in doc["nodes"]])
    show_problems(doc)


def show_problems(doc):
    for p in doc["problems"]:
        print(f"NOT healthy: {p['node']}: {p['problem']}\nfix: {p['fix']}")
