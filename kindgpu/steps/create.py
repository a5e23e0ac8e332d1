"""The create step: kind makes the cluster, or its stopped nodes are started; then every node must
be Ready, and the cluster records the plan it was made from. A cluster recording another plan
(a field `up` changes in place, drift.LIVE_FIELDS, or a new inventory) records this one again."""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor

from .. import deviceplugin, diagnostics, images, kind, nodeimage, nodes, record
from ..errors import KindgpuError
from ..kube import Kube, attempt, is_transient
from ..nodes import Node
from ..wait import Seen, wait_for
from .base import Context, Progress, Step, StepFailed

# Docker's client is imported where used: listing the tasks (which imports the steps) must not pay for it.

NODE_READY_TIMEOUT = 300
# Written in the control-plane container once `kind create cluster` exited 0: kind itself keeps no
# mark of a create that finished, and one interrupted (Ctrl-C) leaves its containers (--retain).
# In the node, not in the state directory: it goes with the cluster, and the state directory may
# be deleted by hand while the cluster is fine.
KIND_DONE = "/kind/kindgpu-created"


class Create(Step):
    """Create the kind cluster, or start its stopped nodes; record the plan in the cluster."""

    name = "create"
    needs_cluster = False

    def reason(self, ctx: Context) -> str:
        plan = ctx.plan
        found = ctx.nodes()
        if not found:
            return f"cluster {plan.name} does not exist"
        if not nodes.made_by_kindgpu(found.values()):
            raise KindgpuError(
                f"a kind cluster named {plan.name} exists, but kindgpu did not make it",
                "choose another --name; `invoke smoke --kubeconfig FILE` tests a cluster kindgpu did not make")
        if not kind_finished(ctx, found):
            return half_made(plan.name)
        expected = [plan.control_plane, *(w.node for w in plan.workers)]
        missing = [n for n in expected if n not in found]
        if missing:
            raise KindgpuError(
                f"node container(s) {', '.join(missing)} of cluster {plan.name} are gone and kind cannot "
                "add nodes to a cluster", "run `invoke up --recreate` to make it anew")
        stopped = [n for n in expected if not found[n].running]
        if stopped:
            return f"node container(s) not running: {', '.join(stopped)}"
        if not plan.kubeconfig.exists():
            return f"kubeconfig {plan.kubeconfig} is missing: writing it again (kind get kubeconfig)"
        answer, err = attempt(lambda: (record.node_readiness(ctx.kube, plan, nodes.start_times(found)),
                                       record.out_of_date(ctx.kube, plan)))
        if err is not None:
            return f"API server not answering: {type(err).__name__}"
        not_ready, stale = answer
        waiting = f"node(s) not Ready: {', '.join(sorted(not_ready))}" if not_ready else ""
        if stale == record.NOT_RECORDED:  # kind finished (kind_finished above), kindgpu did not
            return f"finishing cluster {plan.name}: kind made it, but {waiting or stale}"
        if waiting:
            return waiting
        return stale  # "" when it records this very plan; running the step records it

    def run(self, ctx: Context, progress: Progress) -> None:
        found = ctx.nodes()
        if found and not kind_finished(ctx, found):
            ctx.reporter.note(f"{half_made(ctx.plan.name)}: deleting it and making it anew")
            progress("deleting the half-made cluster")
            delete_cluster(ctx)
            found = {}
        if found:
            start_stopped(found, progress)
            wait_ready_and_record(ctx, progress)
            images.record_loads(ctx.plan.state.loads, self.name, {})
            return
        image = ctx.plan.spec["nodeImage"]
        held = {}
        if nodeimage.enabled(ctx.plan.spec):
            derived = nodeimage.ensure(ctx.plan, ctx.docker, ctx.reporter.note)
            image, held = derived.tag, derived.held
        progress("kind create cluster (about a minute)")
        # kind leaves the workers idle while it sets up the control plane: load the device
        # plugin's image into them meanwhile (it takes seconds per 100 MB on a small host), or,
        # when the node image holds it, unpack it.
        plugin_image = deviceplugin.image(ctx.plan)
        created, failed = threading.Event(), threading.Event()
        loaded = []
        with ThreadPoolExecutor(max_workers=1) as pool:
            loading = pool.submit(load_once_booted, ctx, created, failed, held)
            try:
                create_cluster(ctx, image)
            except BaseException:  # failed or interrupted: load nothing, leave at once
                failed.set()
                raise
            finally:
                created.set()
            wait_ready_and_record(ctx, progress)
            try:
                loaded = loading.result()
            except KindgpuError as err:  # the device-plugin step loads what is missing
                ctx.reporter.note(f"preparing the device plugin image in the workers failed: {err}")
        images.record_loads(ctx.plan.state.loads, self.name, {plugin_image: loaded}, nodeImage=image,
                            nodeImageHolds=sorted(held))


def wait_ready_and_record(ctx: Context, progress: Progress) -> None:
    """Write the kubeconfig, wait until every node is Ready, then record the plan in the cluster."""
    plan = ctx.plan
    write_kubeconfig(ctx)
    started = nodes.start_times(ctx.nodes())
    wait_for(lambda: Seen(done=not (left := record.node_readiness(ctx.kube, plan, started)),
                          last=f"not Ready: {sorted(left)}"),
             what=f"the nodes of {plan.name} to be Ready", timeout=NODE_READY_TIMEOUT, interval=0.5,
             transient=is_transient, progress=progress,
             hint=f"see `docker logs {plan.control_plane}` and `invoke status`")
    ctx.kube.apply(record.spec_configmap(plan))


def start_stopped(found: dict[str, Node], progress: Progress) -> None:
    """Start the node containers that are not running."""
    for node in found.values():
        if not node.running:
            progress(f"starting {node.name}")
            node.start()


def half_made(name: str) -> str:
    return f"cluster {name} was left half-made (kind create did not finish)"


def kind_finished(ctx: Context, found: dict[str, Node]) -> bool:
    """Whether `kind create cluster` finished making the cluster whose containers are `found`.

    A cluster kindgpu made carries KIND_DONE. One without it was interrupted, unless it records
    its spec (a cluster made before kindgpu wrote the mark), or its control plane is stopped or
    gone: then nothing can be asked, and the other checks of the create step say what to do.
    """
    control_plane = found.get(ctx.plan.control_plane)
    if control_plane is None:
        return True  # gone, or never made: the check for missing containers says what to do
    if control_plane.has_file(KIND_DONE):
        return True
    if not control_plane.running:
        return True
    if records_spec(ctx.plan.name):
        control_plane.run(["touch", KIND_DONE])
        return True
    return False


def records_spec(name: str) -> bool:
    """Whether the cluster answers with its recorded spec (kind gives the kubeconfig)."""
    try:
        return record.read(Kube.for_kind_cluster(name)) is not None
    except Exception:  # no kubeconfig, no API server, no answer: not a cluster that was finished
        return False


def delete_cluster(ctx: Context) -> None:
    """kind delete, editing only the cluster's own kubeconfig; the network goes too when empty."""
    kind.delete(ctx.plan.name, check=False)
    nodes.remove_networks(ctx.docker, ctx.plan.name)


def load_once_booted(ctx: Context, created: threading.Event, failed: threading.Event, held) -> list[str]:
    """Preload the plugin image as soon as every worker's containerd answers (or kind is done);
    the nodes it went into. The node image's `held` images are only unpacked."""
    from docker.errors import APIError

    def booted():
        found = ctx.worker_nodes()
        waiting = [w.node for w in ctx.plan.workers
                   if w.node not in found or found[w.node].run(["ctr", "version"], check=False).returncode]
        return Seen(done=not waiting or created.is_set(), last=f"containerd not up in {waiting}")

    wait_for(booted, what="containerd in the new nodes", timeout=NODE_READY_TIMEOUT, interval=0.5,
             transient=lambda err: isinstance(err, APIError))
    if failed.is_set():
        return []
    if deviceplugin.image(ctx.plan) in held:
        nodeimage.unpack(ctx.worker_nodes().values(), held)
        return []
    return deviceplugin.load_image(ctx.plan, ctx.docker, ctx.worker_nodes().values(), lambda text: None)[1]


def create_cluster(ctx: Context, image: str) -> None:
    """kind create from `image` (every node's), keeping a failed cluster just long enough to export its logs."""
    plan = ctx.plan
    result = kind.create(plan.name, plan.state.kind_config, plan.kubeconfig, image, ctx.kind_env())
    if result.returncode != 0:
        output = result.stdout + result.stderr
        where = diagnostics.collect(ctx, "create") if ctx.nodes() else None
        delete_cluster(ctx)
        raise kind_failed(plan.name, result.returncode, output, where)
    ctx.nodes()[plan.control_plane].run(["touch", KIND_DONE])


def kind_failed(name: str, returncode: int, output: str, where=None) -> StepFailed:
    """What `kind create cluster` failing says; kind cannot resume a half-made cluster, so the
    caller has deleted it (after saving its logs to `where`, if it had made any container)."""
    left = (f"kind cannot resume a half-made cluster, so it was deleted after its logs were saved to {where}"
            if where else f"nothing of cluster {name} was left behind")
    image = re.search(r'failed to pull image "([^"]+)"', output)
    if image:
        detail = re.search(r"Command Output: (.+)", output)
        why = f" ({detail.group(1).strip()})" if detail else ""
        return StepFailed(
            f"kind create cluster failed: the node image {image.group(1)} is not in the host's Docker and "
            f"could not be pulled{why}; {left}",
            f"get it: `docker pull {image.group(1)}` where a registry is reachable, or `docker load -i "
            "<archive>`; or name an image you have (`docker images`) with --node-image or KINDGPU_NODE_IMAGE")
    return StepFailed(f"kind create cluster failed (exit {returncode}); {left}\n{output[-3000:].rstrip()}",
                      "fix the cause kind names above and run `invoke up` again")


def write_kubeconfig(ctx: Context) -> None:
    """The cluster's own kubeconfig, mode 0600 (what kindgpu reads; merging is kindgpu.kubeconfig's)."""
    path = ctx.plan.kubeconfig
    text = kind.get_kubeconfig(ctx.plan.name).stdout
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    os.chmod(path, 0o600)
