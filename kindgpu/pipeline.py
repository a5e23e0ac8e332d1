"""`invoke up`: an ordered list of steps, each knowing from live state whether it must run.

A step's reason() returns a sentence saying why it must run, or "" when it is done. The runner
asks, runs, and asks again: a step still not done after running fails with what is wrong.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from . import cmd, deviceplugin, images, names, nodes, record, render
from .errors import KindgpuError
from .kube import Kube, is_transient, manifest_hash
from .parallel import concurrently
from .wait import Seen, wait_for

NODE_READY_TIMEOUT = 300
PLUGIN_READY_TIMEOUT = 300


class StepFailed(KindgpuError):
    """A step ran and is still not done, or raised; the cluster is left for inspection."""


class Context:
    """What every step may look at: the plan, Docker and the cluster's API."""

    def __init__(self, plan, reporter):
        self.plan = plan
        self.reporter = reporter

    @cached_property
    def docker(self):
        return nodes.docker_client()

    @cached_property
    def kube(self):
        return Kube(self.plan.kubeconfig)

    def nodes(self):
        """{name: Node} of the cluster's node containers."""
        return {n.name: n for n in nodes.cluster_nodes(self.docker, self.plan.name)}

    def worker_nodes(self):
        """{name: Node} of the plan's workers that have a container."""
        found = self.nodes()
        return {w.node: found[w.node] for w in self.plan.workers if w.node in found}

    def kind_env(self):
        return {**os.environ, "KIND_EXPERIMENTAL_DOCKER_NETWORK": nodes.network_name(self.plan.name)}


class Step:
    name = ""
    needs_cluster = True  # its reason reads the cluster, so it is due while there is none

    def reason(self, ctx):
        raise NotImplementedError

    def still_wrong(self, ctx):
        """Asked after running: what is still not done ("" when all is well)."""
        return self.reason(ctx)

    def run(self, ctx, progress):
        raise NotImplementedError


class Preflight(Step):
    needs_cluster = False
    name = "preflight"

    def reason(self, ctx):
        return "check the host before changing anything"

    def still_wrong(self, ctx):
        return ""  # run() raised if a check failed

    def run(self, ctx, progress):
        from . import preflight

        plan = ctx.plan
        request = preflight.Request(
            workers=len(plan.workers), gpus=max(len(w.gpus) for w in plan.workers),
            cluster_name=plan.name, simulate=plan.spec["simulate"]["gpus"] if plan.simulated else None)
        failed = [c for c in preflight.run_checks(request) if c.status == preflight.Status.FAIL]
        if failed:
            lines = "\n".join(f"  FAIL {c.title}: {c.found}" + (f"\n       fix: {c.fix}" if c.fix else "")
                              for c in failed)
            raise StepFailed(f"preflight found {len(failed)} problem(s):\n{lines}")


class Config(Step):
    needs_cluster = False
    name = "config"

    def reason(self, ctx):
        files = render.state_files(ctx.plan)
        root = ctx.plan.state.root
        stale = [rel for rel, content in files.items()
                 if not (root / rel).exists() or (root / rel).read_text() != content]
        return f"state files out of date: {', '.join(stale)}" if stale else ""

    def run(self, ctx, progress):
        render.write_state(ctx.plan)


class Create(Step):
    needs_cluster = False
    name = "create"

    def reason(self, ctx):
        plan = ctx.plan
        found = ctx.nodes()
        if not found:
            return f"cluster {plan.name} does not exist"
        if not nodes.made_by_kindgpu(found.values()):
            raise KindgpuError(
                f"a kind cluster named {plan.name} exists, but kindgpu did not make it; "
                f"choose another --name (or delete it yourself: kind delete cluster --name {plan.name})")
        expected = [plan.control_plane, *(w.node for w in plan.workers)]
        missing = [n for n in expected if n not in found]
        if missing:
            raise KindgpuError(
                f"node container(s) {', '.join(missing)} of cluster {plan.name} are gone and kind cannot "
                f"add nodes to a cluster; run `invoke up --recreate` to make it anew")
        stopped = [n for n in expected if not found[n].running]
        if stopped:
            return f"node container(s) not running: {', '.join(stopped)}"
        if not plan.kubeconfig.exists():
            return f"kubeconfig {plan.kubeconfig} is missing"
        try:
            not_ready = record.node_readiness(ctx.kube, plan)
            recorded = record.read(ctx.kube)
        except Exception as err:
            if not is_transient(err):
                raise
            return f"API server not answering: {type(err).__name__}"
        if not_ready:
            return f"node(s) not Ready: {', '.join(sorted(not_ready))}"
        if recorded is None:
            return "the cluster does not record its spec yet"
        return ""

    def run(self, ctx, progress):
        found = ctx.nodes()
        if found:
            self.finish(ctx, progress, start_stopped(found, progress))
            return
        progress("kind create cluster (about a minute)")
        # kind leaves the workers idle while it sets up the control plane: load the device
        # plugin's image into them meanwhile (it takes seconds per 100 MB on a small host).
        created = threading.Event()
        with ThreadPoolExecutor(max_workers=1) as pool:
            loading = pool.submit(load_once_booted, ctx, created)
            try:
                create_cluster(ctx)
            finally:
                created.set()
            self.finish(ctx, progress, {})
            try:
                loading.result()
            except KindgpuError as err:  # the device-plugin step loads what is missing
                ctx.reporter.note(f"preloading the device plugin image failed: {err}")

    def finish(self, ctx, progress, restarted):
        plan = ctx.plan
        write_kubeconfig(ctx)
        wait_for(lambda: Seen(done=not (left := record.node_readiness(ctx.kube, plan, restarted)), last=f"not Ready: {sorted(left)}"),
                 what=f"the nodes of {plan.name} to be Ready", timeout=NODE_READY_TIMEOUT, interval=0.5,
                 transient=is_transient, progress=progress,
                 hint=f"see `docker logs {plan.control_plane}` and `invoke status`")
        ctx.kube.apply(record.spec_configmap(plan))


def start_stopped(found, progress):
    """Start the node containers that are not running; {name: when} for the Ready check."""
    restarted = {}
    for node in found.values():
        if not node.running:
            progress(f"starting {node.name}")
            restarted[node.name] = datetime.now(timezone.utc).replace(microsecond=0)
            node.start()
    return restarted


def load_once_booted(ctx, created):
    """Preload the plugin image as soon as every worker's containerd answers (or kind is done)."""
    from docker.errors import APIError

    def booted():
        found = ctx.worker_nodes()
        waiting = [w.node for w in ctx.plan.workers
                   if w.node not in found or found[w.node].run(["ctr", "version"], check=False).returncode]
        return Seen(done=not waiting or created.is_set(), last=f"containerd not up in {waiting}")

    wait_for(booted, what="containerd in the new nodes", timeout=NODE_READY_TIMEOUT, interval=0.5,
             transient=lambda err: isinstance(err, APIError))
    load_plugin_image(ctx, lambda text: None)


def create_cluster(ctx):
    """kind create, keeping a failed cluster just long enough to export its logs."""
    plan = ctx.plan
    argv = ["kind", "create", "cluster", "--name", plan.name, "--config", plan.state.kind_config,
            "--kubeconfig", plan.kubeconfig, "--retain"]
    plan.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    result = cmd.run(argv, check=False, env=ctx.kind_env())
    if result.returncode != 0:
        from . import diagnostics

        where = diagnostics.collect(ctx, "create")
        cmd.run(["kind", "delete", "cluster", "--name", plan.name], check=False)
        raise StepFailed(
            f"kind create cluster failed (exit {result.returncode}); kind cannot resume a half-made "
            f"cluster, so it was deleted after its logs were saved to {where}\n"
            f"{(result.stdout + result.stderr)[-3000:]}")


def write_kubeconfig(ctx):
    """The cluster's own kubeconfig, mode 0600; ~/.kube/config is never touched."""
    path = ctx.plan.kubeconfig
    text = cmd.run(["kind", "get", "kubeconfig", "--name", ctx.plan.name]).stdout
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    os.chmod(path, 0o600)


class Label(Step):
    name = "label"

    def wrong_labels(self, ctx):
        actual = {n.metadata.name: n.metadata.labels or {} for n in ctx.kube.nodes()}
        wrong = {}
        for worker in ctx.plan.workers:
            have = actual.get(worker.node, {})
            fix = {k: v for k, v in worker.labels.items() if have.get(k) != v}
            if fix:
                wrong[worker.node] = fix
        cp_have = actual.get(ctx.plan.control_plane, {})
        if cp_have.get(names.LABEL_OWNER) != ctx.plan.name:
            wrong[ctx.plan.control_plane] = {names.LABEL_OWNER: ctx.plan.name}
        return wrong

    def reason(self, ctx):
        wrong = self.wrong_labels(ctx)
        if not wrong:
            return ""
        keys = sorted({k for fix in wrong.values() for k in fix})
        return f"{len(wrong)} node(s) lack label(s) {', '.join(keys)}"

    def run(self, ctx, progress):
        wrong = self.wrong_labels(ctx)
        concurrently(lambda item: ctx.kube.core.patch_node(item[0], {"metadata": {"labels": item[1]}}),
                     wrong.items())


# Lists the NVIDIA GPU device nodes in a node container: "<path> <minor in hex>".
LIST_GPU_DEVICES = 'for f in /dev/nvidia[0-9]*; do [ -c "$f" ] && stat -c "%n %T" "$f"; done; true'


def gpu_devices(node):
    """{minor: path} of the GPU character devices a node container can see."""
    out = node.sh(LIST_GPU_DEVICES).stdout
    found = {}
    for line in out.splitlines():
        path, _, minor = line.strip().partition(" ")
        if path.startswith("/dev/nvidia") and minor:
            found[int(minor, 16)] = path
    return found


def host_has_gpu_devices(dev="/dev"):
    """Node containers are privileged: they get the host's /dev/nvidiaN when created, and no others."""
    import stat

    return any(stat.S_ISCHR(path.stat().st_mode) for path in Path(dev).glob("nvidia[0-9]*"))


class Isolate(Step):
    name = "isolate"

    def survey(self, ctx):
        """Per worker: (foreign device paths, missing own minors)."""
        if ctx.plan.simulated and not host_has_gpu_devices():
            return []  # no GPU device nodes to take away, and simulated GPUs need none
        workers = ctx.worker_nodes()

        def one(worker):
            seen = gpu_devices(workers[worker.node])
            own = {g.minor for g in worker.gpus}
            foreign = sorted(path for minor, path in seen.items() if minor not in own)
            missing = sorted(m for m in own if m not in seen)
            return worker, foreign, missing

        return concurrently(one, [w for w in ctx.plan.workers if w.node in workers])

    def reason(self, ctx):
        survey = self.survey(ctx)
        if not ctx.plan.simulated:
            broken = [f"{w.node} lacks its GPU device(s) {', '.join(f'/dev/nvidia{m}' for m in missing)}"
                      for w, _, missing in survey if missing]
            if broken:
                raise KindgpuError(
                    "; ".join(broken) + ". The host's NVIDIA runtime did not give the node its GPUs: "
                    "run `invoke preflight` (Docker's default runtime must be nvidia, with "
                    "accept-nvidia-visible-devices-as-volume-mounts = true), then `invoke up --recreate`")
        leaking = [f"{w.node} sees {len(foreign)} GPU(s) not its own" for w, foreign, _ in survey if foreign]
        return "; ".join(leaking)

    def run(self, ctx, progress):
        workers = ctx.worker_nodes()
        concurrently(lambda item: workers[item[0].node].run(["rm", "-f", *item[1]]),
                     [(w, foreign) for w, foreign, _ in self.survey(ctx) if foreign])


class DevicePlugin(Step):
    name = "device-plugin"

    def reason(self, ctx):
        image = deviceplugin.image(ctx.plan)
        stale = [obj["metadata"]["name"] for obj in deviceplugin.objects(ctx.plan, image)
                 if ctx.kube.current_hash(obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"])
                 != manifest_hash(obj)]
        if stale:
            return f"device plugin {', '.join(stale)} not deployed as specified"
        return "; ".join(record.gpu_shortfall(ctx.kube, ctx.plan))

    def run(self, ctx, progress):
        plan = ctx.plan
        image = load_plugin_image(ctx, progress)
        for obj in deviceplugin.objects(plan, image):
            ctx.kube.apply(obj)
        from . import diagnostics

        wait_for(lambda: Seen(done=not (short := record.gpu_shortfall(ctx.kube, plan)), last="; ".join(short)),
                 what="every worker to offer its GPUs", timeout=PLUGIN_READY_TIMEOUT, interval=0.5,
                 transient=is_transient, progress=progress,
                 hint=lambda: diagnostics.plugin_hint(ctx))


def load_plugin_image(ctx, progress):
    """Build (simulated GPUs, first time only) and preload the device plugin's image; its tag."""
    image = deviceplugin.image(ctx.plan)
    if ctx.plan.simulated:
        from .simgpu.build import ensure_image

        progress(f"building {image} (first time only)")
        ensure_image(ctx.docker)
    images.preload(ctx.docker, ctx.worker_nodes().values(), image, progress)
    return image


def steps():
    """The pipeline of `invoke up`, in order. The one place it is built."""
    return [Preflight(), Config(), Create(), Label(), Isolate(), DevicePlugin()]


def check_step_names(requested, known):
    unknown = [s for s in requested if s and s not in known]
    if unknown:
        from .errors import SpecError

        raise SpecError([f"--force/--until: unknown step {s!r}; steps are {', '.join(known)}"
                         for s in unknown])


def run(ctx, *, force=(), until=None, dry_run=False, pipeline=None):
    """Run every step that must run, in order. Returns the number of steps that ran."""
    pending = pipeline or steps()
    known = [s.name for s in pending]
    check_step_names([*force, until], known)
    if until:
        pending = pending[: known.index(until) + 1]
    reporter = ctx.reporter
    # Preflight guards changes: it runs only when a later step has something to do. Reasons found
    # before the first due step stay true until something runs, so they are asked once.
    reasons = {}
    for step in pending[1:]:
        reasons[step.name] = "forced" if step.name in force else reason_of(ctx, step)
        if reasons[step.name]:
            break
    else:
        if "preflight" not in force:
            reporter.note("Nothing to be done.")
            return 0
    ran = 0
    for step in pending:
        why = reasons.pop(step.name, None) if not ran else None
        if why is None:
            why = "forced" if step.name in force else reason_of(ctx, step)
        if not why:
            reporter.skipped(step.name, "up to date")
            continue
        if dry_run:
            reporter.skipped(step.name, f"would run: {why}")
            continue
        run_step(ctx, step, why)
        ran += 1
    return ran


def reason_of(ctx, step):
    """A step's reason; a cluster that is not there yet makes every later step due."""
    if step.needs_cluster and (not ctx.plan.kubeconfig.exists() or not ctx.nodes()):
        return "the cluster is not up yet"
    try:
        return step.reason(ctx)
    except Exception as err:
        if isinstance(err, KindgpuError) or not is_transient(err):
            raise
        return f"cluster not reachable yet ({type(err).__name__})"


def run_step(ctx, step, why):
    with ctx.reporter.step(step.name, why) as progress:
        try:
            step.run(ctx, progress)
            still = step.still_wrong(ctx)
        except StepFailed:
            raise
        except Exception as err:
            raise StepFailed(f"step {step.name} failed: {err}{bundle(ctx, step)}\n"
                             "The cluster is left as it is; fix the cause and run `invoke up` again.") from err
        if still:
            raise StepFailed(f"step {step.name} ran but is still not done: {still}{bundle(ctx, step)}")


def bundle(ctx, step):
    """Diagnostics of a cluster that exists, as a line naming where they are."""
    from . import diagnostics

    if not ctx.nodes():
        return ""
    return f"\ndiagnostics: {diagnostics.collect(ctx, step.name)}"
