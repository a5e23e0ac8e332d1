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

from . import cmd, deviceplugin, images, names, nodes, render
from .errors import KindgpuError, Problem, SpecError
from .kube import Kube, manifest_hash, transient_errors
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

    def containers(self):
        return {c.name: c for c in nodes.cluster_containers(self.docker, self.plan.name)}

    def worker_containers(self):
        found = self.containers()
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
            gpus_total=sum(len(w.gpus) for w in plan.workers),
            cluster_name=plan.name, simulate=plan.spec["simulate"]["gpus"] if plan.simulated else None,
            api_address=plan.spec["apiServer"]["address"], node_image=plan.spec["nodeImage"])
        failed = [c for c in preflight.run_checks(request) if c.status == preflight.Status.FAIL]
        if failed:
            lines = "\n".join(f"  FAIL {c.name}: {c.found}" + (f"\n       fix: {c.fix}" if c.fix else "")
                              for c in failed)
            raise StepFailed(f"preflight found {len(failed)} problem(s):\n{lines}")


class Config(Step):
    needs_cluster = False
    name = "config"

    def reason(self, ctx):
        files = render.state_files(ctx.plan)
        stale = [rel for rel, content in files.items()
                 if not (ctx.plan.state_dir / rel).exists() or (ctx.plan.state_dir / rel).read_text() != content]
        return f"state files out of date: {', '.join(stale)}" if stale else ""

    def run(self, ctx, progress):
        render.write_state(ctx.plan)


def spec_configmap(plan):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names.SPEC_CONFIGMAP, "namespace": names.SYSTEM_NAMESPACE,
                     "labels": {"app.kubernetes.io/managed-by": "kindgpu", names.LABEL_OWNER: plan.name}},
        "data": {"spec.yaml": render.to_yaml(plan.spec), "spec.sha256": plan.spec_hash,
                 "plan.json": render.state_files(plan)["plan.json"]},
    }


def cluster_record(kube):
    """The spec and plan the cluster was made with (its ConfigMap); None before it records them."""
    import json

    import yaml
    from kubernetes.client.exceptions import ApiException

    try:
        cm = kube.core.read_namespaced_config_map(names.SPEC_CONFIGMAP, names.SYSTEM_NAMESPACE,
                                                  _request_timeout=10)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return {"spec": yaml.safe_load(cm.data["spec.yaml"]), "plan": json.loads(cm.data["plan.json"])}


def recorded_spec(ctx):
    record = cluster_record(ctx.kube)
    return record and record["spec"]


def ready_condition(node):
    return next((c for c in node.status.conditions or [] if c.type == "Ready"), None)


def node_readiness(ctx, since=None):
    """Nodes not Ready yet. A node restarted at `since` must report again after it: until its
    kubelet posts a fresh status, the API still shows the Ready of the node before the restart."""
    expected = {ctx.plan.control_plane, *(w.node for w in ctx.plan.workers)}
    ready = set()
    for node in ctx.kube.nodes():
        cond = ready_condition(node)
        restarted = since and node.metadata.name in since
        if cond and cond.status == "True" and (not restarted or cond.last_heartbeat_time >= since[node.metadata.name]):
            ready.add(node.metadata.name)
    return expected - ready


class Create(Step):
    needs_cluster = False
    name = "create"

    def reason(self, ctx):
        plan = ctx.plan
        found = ctx.containers()
        if not found:
            return f"cluster {plan.name} does not exist"
        if not nodes.made_by_kindgpu(found.values()):
            raise KindgpuError(
                f"a kind cluster named {plan.name} exists, but kindgpu did not make it",
                f"choose another --name (or delete it yourself: kind delete cluster --name {plan.name})")
        expected = [plan.control_plane, *(w.node for w in plan.workers)]
        missing = [n for n in expected if n not in found]
        if missing:
            raise KindgpuError(
                f"node container(s) {', '.join(missing)} of cluster {plan.name} are gone and kind cannot "
                "add nodes to a cluster", "run `invoke up --recreate` to make it anew")
        stopped = [n for n in expected if found[n].status != "running"]
        if stopped:
            return f"node container(s) not running: {', '.join(stopped)}"
        if not plan.kubeconfig.exists():
            return f"kubeconfig {plan.kubeconfig} is missing"
        try:
            not_ready = node_readiness(ctx)
            recorded = recorded_spec(ctx)
        except transient_errors() as err:
            return f"API server not answering: {type(err).__name__}"
        if not_ready:
            return f"node(s) not Ready: {', '.join(sorted(not_ready))}"
        if recorded is None:
            return "the cluster does not record its spec yet"
        return ""

    def run(self, ctx, progress):
        found = ctx.containers()
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
        wait_for(lambda: Seen(done=not (left := node_readiness(ctx, restarted)), last=f"not Ready: {sorted(left)}"),
                 what=f"the nodes of {plan.name} to be Ready", timeout=NODE_READY_TIMEOUT, interval=0.5,
                 transient=transient_errors(), progress=progress,
                 hint=f"see `docker logs {plan.control_plane}` and `invoke status`")
        ctx.kube.apply(spec_configmap(plan))


def start_stopped(containers, progress):
    """Start the node containers that are not running; {name: when} for the Ready check."""
    restarted = {}
    for container in containers.values():
        if container.status != "running":
            progress(f"starting {container.name}")
            restarted[container.name] = datetime.now(timezone.utc).replace(microsecond=0)
            container.start()
    return restarted


def load_once_booted(ctx, created):
    """Preload the plugin image as soon as every worker's containerd answers (or kind is done)."""
    from docker.errors import APIError

    def booted():
        found = ctx.worker_containers()
        waiting = [w.node for w in ctx.plan.workers
                   if w.node not in found or nodes.exec_in(found[w.node], ["ctr", "version"], check=False)[0]]
        return Seen(done=not waiting or created.is_set(), last=f"containerd not up in {waiting}")

    wait_for(booted, what="containerd in the new nodes", timeout=NODE_READY_TIMEOUT, interval=0.5,
             transient=(APIError,))
    load_plugin_image(ctx, lambda text: None)


def create_cluster(ctx):
    """kind create, keeping a failed cluster just long enough to export its logs."""
    plan = ctx.plan
    argv = ["kind", "create", "cluster", "--name", plan.name, "--config", render.kind_config_path(plan),
            "--kubeconfig", plan.kubeconfig, "--retain"]
    plan.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    result = cmd.run(argv, check=False, env=ctx.kind_env())
    if result.returncode != 0:
        from . import diagnostics

        where = diagnostics.collect(ctx, "create")
        # With its own kubeconfig: kind would otherwise edit every file kubectl reads.
        cmd.run(["kind", "delete", "cluster", "--name", plan.name, "--kubeconfig", plan.kubeconfig], check=False)
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


def gpu_devices(container):
    """{minor: path} of the GPU character devices a node container can see."""
    _, out = nodes.sh_in(container, LIST_GPU_DEVICES)
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
        containers = ctx.worker_containers()

        def one(worker):
            seen = gpu_devices(containers[worker.node])
            own = {g.minor for g in worker.gpus}  # none on a CPU-only worker: every GPU node goes
            foreign = sorted(path for minor, path in seen.items() if minor not in own)
            missing = sorted(m for m in own if m not in seen)
            return worker, foreign, missing

        return concurrently(one, [w for w in ctx.plan.workers if w.node in containers])

    def reason(self, ctx):
        survey = self.survey(ctx)
        if not ctx.plan.simulated:
            broken = [f"{w.node} lacks its GPU device(s) {', '.join(f'/dev/nvidia{m}' for m in missing)}"
                      for w, _, missing in survey if missing]
            if broken:
                raise KindgpuError(
                    "; ".join(broken) + ": the host's NVIDIA runtime did not give the node its GPUs",
                    "run `invoke preflight` (Docker's default runtime must be nvidia, with "
                    "accept-nvidia-visible-devices-as-volume-mounts = true), then `invoke up --recreate`")
        leaking = [f"{w.node} sees {len(foreign)} GPU(s) not its own" for w, foreign, _ in survey if foreign]
        return "; ".join(leaking)

    def run(self, ctx, progress):
        containers = ctx.worker_containers()
        concurrently(lambda item: nodes.exec_in(containers[item[0].node], ["rm", "-f", *item[1]]),
                     [(w, foreign) for w, foreign, _ in self.survey(ctx) if foreign])


def allocatable_gpus(ctx):
    """{node: allocatable nvidia.com/gpu} for the plan's workers."""
    found = {n.metadata.name: n for n in ctx.kube.nodes()}
    return {w.node: int((found[w.node].status.allocatable or {}).get(names.GPU_RESOURCE, "0"))
            if w.node in found else 0 for w in ctx.plan.workers}


def gpu_shortfall(ctx):
    """Workers offering another number of GPUs than assigned (a CPU-only worker must offer 0)."""
    have = allocatable_gpus(ctx)
    return [f"{w.node} offers {have[w.node]} of {len(w.gpus)} GPUs" for w in ctx.plan.workers
            if have[w.node] != len(w.gpus)]


def plugin_objects(ctx, image):
    """The plugin's objects; for real GPUs, with the driver's place in a GPU worker."""
    if ctx.plan.simulated:
        return deviceplugin.objects(ctx.plan, image)
    containers = ctx.worker_containers()
    first = next((containers[w.node] for w in ctx.plan.workers if w.gpus and w.node in containers), None)
    if first is None:
        raise KindgpuError(f"no GPU worker of {ctx.plan.name} is running", "run `invoke up`")
    if ctx.plan.spec["devicePlugin"]["deviceListStrategy"] == "cdi-cri":
        deviceplugin.check_node_cdi(first)
    return deviceplugin.objects(ctx.plan, image, deviceplugin.node_driver_layout(first))


class DevicePlugin(Step):
    name = "device-plugin"

    def reason(self, ctx):
        image = deviceplugin.image(ctx.plan)
        stale = [obj["metadata"]["name"] for obj in plugin_objects(ctx, image)
                 if ctx.kube.current_hash(obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"])
                 != manifest_hash(obj)]
        if stale:
            return f"device plugin {', '.join(stale)} not deployed as specified"
        return "; ".join(gpu_shortfall(ctx))

    def run(self, ctx, progress):
        plan = ctx.plan
        image = load_plugin_image(ctx, progress)
        for obj in plugin_objects(ctx, image):
            ctx.kube.apply(obj)
        from . import diagnostics

        def offered():
            short = gpu_shortfall(ctx)
            # A crashing plugin will not offer GPUs: say so now, not after the timeout.
            return Seen(done=not short, failed="" if not short else diagnostics.plugin_crash(ctx),
                        last="; ".join(short))

        wait_for(offered, what="every worker to offer its GPUs", timeout=PLUGIN_READY_TIMEOUT, interval=0.5,
                 transient=transient_errors(), progress=progress,
                 hint=lambda: diagnostics.plugin_hint(ctx))


def load_plugin_image(ctx, progress):
    """Build (simulated GPUs, first time only) and preload the device plugin's image; its tag."""
    image = deviceplugin.image(ctx.plan)
    if ctx.plan.simulated:
        from .simgpu.build import ensure_image

        progress(f"building {image} (first time only)")
        ensure_image(ctx.docker)
    images.preload(ctx.docker, ctx.worker_containers().values(), image, progress)
    return image


def steps():
    """The pipeline of `invoke up`, in order. The one place it is built."""
    return [Preflight(), Config(), Create(), Label(), Isolate(), DevicePlugin()]


def step_problems(flag, requested, known):
    return [Problem(flag, f"unknown step {s!r}", f"steps are {', '.join(known)}")
            for s in requested if s and s not in known]


def check_step_names(force, until, known):
    """The up task checks these first (kindgpu.flags); here for callers of run()."""
    problems = step_problems("--force", force, known) + step_problems("--until", [until], known)
    if problems:
        raise SpecError(problems, title="invalid task flags")


def run(ctx, *, force=(), until=None, dry_run=False, pipeline=None):
    """Run every step that must run, in order. Returns the number of steps that ran."""
    pending = pipeline or steps()
    known = [s.name for s in pending]
    check_step_names(force, until, known)
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
    if step.needs_cluster and (not ctx.plan.kubeconfig.exists() or not ctx.containers()):
        return "the cluster is not up yet"
    try:
        return step.reason(ctx)
    except KindgpuError:
        raise
    except transient_errors() + (FileNotFoundError,) as err:
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
                             "The cluster is left as it is.",
                             getattr(err, "fix", None) or "fix the cause and run `invoke up` again") from err
        if still:
            raise StepFailed(f"step {step.name} ran but is still not done: {still}{bundle(ctx, step)}")


def bundle(ctx, step):
    """Diagnostics of a cluster that exists, as a line naming where they are."""
    from . import diagnostics

    if not ctx.containers():
        return ""
    return f"\ndiagnostics: {diagnostics.collect(ctx, step.name)}"
