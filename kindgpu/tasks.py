"""The invoke tasks (`invoke --list`, or the `kindgpu` command): thin and typed.

Each task checks its flags once (kindgpu.flags.parse: a bad one exits 2, naming it) and calls one
command function: `invoke X` runs kindgpu.commands.X.run, where **a command is added**. The step
tasks (`invoke create`, `label`, ...) are made from the step list (kindgpu.steps.pipeline): a step
whose name is not a task already becomes one.

Every kindgpu module is imported here; listing the tasks still costs little, since the heavy
libraries (the Kubernetes and Docker clients, jsonschema, rich) are imported where they are used.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from invoke import Collection, Context, Exit, Task, task

from kindgpu import commands, flags, steps
from kindgpu.errors import KindgpuError, user_text
from kindgpu.kube import is_transient, short_reason
from kindgpu.payloads.levels import DEFAULT_LEVEL, LEVELS
from kindgpu.steps import Step

SPEC_HELP = {
    "config": "spec file (see configs/), e.g. configs/default.yaml",
    "name": "cluster name (default gpu-cluster; env CLUSTER_NAME)",
    "workers": "number of GPU workers (default 2)",
    "gpus": "GPUs per worker (default 4)",
    "simulate": "simulate a host with this many GPUs (no NVIDIA GPU needed)",
    "node_image": "kind node image (env KINDGPU_NODE_IMAGE)",
}
NAME_HELP = {"config": SPEC_HELP["config"], "name": SPEC_HELP["name"]}
UP_HELP = {**SPEC_HELP,
           "dry_run": "print each step and why it would run; change nothing",
           "force": "run this step even if it is done (repeatable)",
           "recreate": "delete and remake a cluster made from another spec",
           "merge": "merge context kind-<name> into kubectl's kubeconfig (the default; spec mergeKubeconfig)",
           "no_merge": "leave kubectl's kubeconfig alone (spec mergeKubeconfig: false)"}
OTHER_LEVELS = " or ".join(level for level in LEVELS if level != DEFAULT_LEVEL)


class KindgpuTask(Task):
    """invoke's Task, except that a flag never gets `--` as its short form (invoke 3 gives `-`, the
    third letter of `no-merge`, when `n` and `o` are taken, and `--` then stops being the remainder)."""

    def arg_opts(self, name, default, taken_names):
        return super().arg_opts(name, default, {*taken_names, "-"})


def user_errors(fn: Callable) -> Callable:
    """kindgpu's errors become a message and an exit code, never a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KindgpuError as err:
            raise Exit(user_text(err), code=err.exit_code)
        except KeyboardInterrupt:  # Ctrl-C: what was left, and what to run, never a traceback
            raise Exit(user_text(KindgpuError(
                "interrupted", "run the same command again: `invoke up` finishes a cluster it left, or "
                "deletes one kind left half-made and makes it anew")), code=130)
        except Exception as err:
            if not is_transient(err):
                raise
            # A cluster that stopped answering mid-command (a restart between two calls): its state, not a traceback.
            raise Exit(user_text(KindgpuError(
                f"the cluster stopped answering: {short_reason(err)}",
                "if its control plane is restarting, run this again in a minute; `invoke status` says what "
                "state it is in")), code=1) from err

    return wrapper


@task(help={**SPEC_HELP, "json": "print the plan as JSON", "dry_run": "write nothing"})
@user_errors
def config(c: Context, config: str | None = None, name: str | None = None, workers: str | None = None,
           gpus: str | None = None, simulate: str | None = None, node_image: str | None = None,
           json: bool = False, dry_run: bool = False) -> None:
    """Plan which GPUs go to which worker and write the kind config."""
    checked = flags.parse(config=config, name=name, workers=workers, gpus=gpus, simulate=simulate,
                          node_image=node_image)
    commands.config.run(config, checked, dry_run=dry_run, as_json=json)


@task(help={**SPEC_HELP, "json": "print the checks as JSON",
            "fix": "apply the safe host fixes (inotify sysctls) and print what changed"})
@user_errors
def preflight(c: Context, config: str | None = None, name: str | None = None, workers: str | None = None,
              gpus: str | None = None, simulate: str | None = None, node_image: str | None = None,
              json: bool = False, fix: bool = False) -> None:
    """Check that this host can run the cluster asked for; print how to fix what is missing."""
    checked = flags.parse(config=config, name=name, workers=workers, gpus=gpus, simulate=simulate,
                          node_image=node_image)
    code = commands.preflight.run(config, checked, as_json=json, fix=fix)
    if code:
        raise Exit(code=code)


def bring_up(c: Context, until: str | None, config: str | None = None, name: str | None = None,
             workers: str | None = None, gpus: str | None = None, simulate: str | None = None,
             node_image: str | None = None, dry_run: bool = False, force: list[str] | None = None,
             recreate: bool = False, merge: bool = False, no_merge: bool = False) -> None:
    """`invoke up`, or a step's task: up to the step `until` (None: all of them)."""
    checked = flags.parse(config=config, name=name, workers=workers, gpus=gpus, simulate=simulate,
                          node_image=node_image, force=force, until=until)
    spec_flags = {k: checked[k] for k in ("name", "workers", "gpus", "simulate", "node_image")}
    commands.up.run(config, spec_flags, until=until, dry_run=dry_run, force=force, recreate=recreate, merge=merge,
                    no_merge=no_merge)


def up(c: Context, config: str | None = None, name: str | None = None, workers: str | None = None,
       gpus: str | None = None, simulate: str | None = None, node_image: str | None = None, dry_run: bool = False,
       force: list[str] | None = None, until: str | None = None, recreate: bool = False, merge: bool = False,
       no_merge: bool = False) -> None:
    bring_up(c, until, config, name, workers, gpus, simulate, node_image, dry_run, force, recreate, merge, no_merge)


up.__doc__ = f"Create the cluster, or finish it: {', '.join(s.name for s in steps.pipeline())}."
up = task(help={**UP_HELP, "until": "stop after this step"}, iterable=["force"], klass=KindgpuTask)(user_errors(up))


def step_task(step: Step) -> Task:
    """`invoke <step>`: the steps before it first, then the step, with up's flags (up --until <step>)."""

    def run_until(c: Context, config: str | None = None, name: str | None = None, workers: str | None = None,
                  gpus: str | None = None, simulate: str | None = None, node_image: str | None = None,
                  dry_run: bool = False, force: list[str] | None = None, recreate: bool = False,
                  merge: bool = False, no_merge: bool = False) -> None:
        bring_up(c, step.name, config, name, workers, gpus, simulate, node_image, dry_run, force, recreate, merge,
                 no_merge)

    summary = step.__doc__.splitlines()[0].rstrip(".")
    run_until.__doc__ = f"{summary}, after the steps before it (as `up --until {step.name}`)."
    return task(name=step.name, help=UP_HELP, iterable=["force"], klass=KindgpuTask)(user_errors(run_until))


@task(help={**NAME_HELP, "force": "also delete a kind cluster kindgpu did not make",
            "images": "also remove the node images kindgpu built that no container uses (see node-images)",
            "kubeconfig": "a cluster kindgpu did not make: remove only what `smoke --kubeconfig` kept for it"})
@user_errors
def down(c: Context, config: str | None = None, name: str | None = None, force: bool = False,
         images: bool = False, kubeconfig: str | None = None) -> None:
    """Delete the cluster, its Docker network and its state directory."""
    commands.down.run(config, flags.parse(config=config, name=name, kubeconfig=kubeconfig), force=force, images=images,
                      kubeconfig=kubeconfig)


@task(help={"remove": "remove those no container uses (a cluster's nodes keep theirs)", "json": "print as JSON"})
@user_errors
def node_images(c: Context, remove: bool = False, json: bool = False) -> None:
    """List the node images kindgpu built (spec prepareNodeImage); --remove those no container uses."""
    commands.node_images.run(remove=remove, as_json=json)


@task(help={**NAME_HELP, "json": "print as JSON"})
@user_errors
def status(c: Context, config: str | None = None, name: str | None = None, json: bool = False) -> None:
    """Show nodes, labels, assigned vs allocatable GPUs and device plugin health."""
    if not commands.status.run(config, flags.parse(config=config, name=name), as_json=json):
        raise Exit(code=1)


@task(help={**NAME_HELP, "gpu": "the GPU that fails, by UUID (simulated GPUs, or any under DRA)",
            "worker": "a worker, numbered as kind names them (1 is <name>-worker)",
            "index": "with --worker: the GPU's place on it, from 0", "xid": "the Xid it reports (default 79)",
            "effect": "under DRA: the device taint's effect, NoSchedule (NVIDIA's for a fatal Xid), NoExecute "
                      "(evicts the pods using it) or None",
            "via_api": "under DRA on simulated GPUs: a DeviceTaintRule, as on real GPUs, not the plugin's taint",
            "remove_device": "with --worker and --index: take that GPU's device node away inside the worker",
            "down": "with --worker: stop that worker's node container", "json": "print as JSON"})
@user_errors
def fault(c: Context, config: str | None = None, name: str | None = None, gpu: str | None = None,
          worker: str | None = None, index: str | None = None, xid: str | None = None, effect: str | None = None,
          via_api: bool = False, remove_device: bool = False, down: bool = False, json: bool = False) -> None:
    """Make a GPU fail (an Xid, a device taint), its device node go, or a worker go down; `invoke heal` undoes it."""
    checked = flags.parse(config=config, name=name, worker=worker, index=index, xid=xid, effect=effect)
    commands.fault.run(config, {"name": checked["name"]}, gpu=gpu, worker=checked["worker"], index=checked["index"],
                       xid=checked["xid"], effect=checked["effect"], via_api=via_api, remove_device=remove_device,
                       down=down, as_json=json)


@task(help={**NAME_HELP, "json": "print as JSON"})
@user_errors
def heal(c: Context, config: str | None = None, name: str | None = None, json: bool = False) -> None:
    """Undo every fault `invoke fault` injected (nothing to do when there is none)."""
    commands.heal.run(config, flags.parse(config=config, name=name), as_json=json)


@task(help={**NAME_HELP,
            "merge": "add or refresh context kind-<name> in $KUBECONFIG or ~/.kube/config, and make it current",
            "unmerge": "remove context kind-<name> (and its cluster and user) from those files"})
@user_errors
def kubeconfig(c: Context, config: str | None = None, name: str | None = None, merge: bool = False,
               unmerge: bool = False) -> None:
    """Print the cluster's own kubeconfig; --merge or --unmerge its context where kubectl looks."""
    commands.kubeconfig.run(config, flags.parse(config=config, name=name), merge=merge, unmerge=unmerge)


@task(help={"images": "IMAGE[,IMAGE...]: images in this host's Docker (commas between them)",
            **NAME_HELP, "workers": "only these workers, e.g. 1,3 (1 is <name>-worker); default every node",
            "json": "print what went where as JSON"})
@user_errors
def load(c: Context, images: str, config: str | None = None, name: str | None = None, workers: str | None = None,
         json: bool = False) -> None:
    """Put local Docker images into the cluster's nodes at once, skipping nodes that have them."""
    commands.load.run(images, config, flags.parse(config=config, name=name, images=images), workers=workers,
                      as_json=json)


@task(help={**NAME_HELP, "level": f"{DEFAULT_LEVEL} (default), {OTHER_LEVELS}",
            "json": "print the result as JSON", "junit": "where to write the JUnit XML report",
            "timeout": f"seconds to wait for the Jobs (default {flags.SMOKE_TIMEOUT})",
            "kubeconfig": "a GPU cluster kindgpu did not make: every node offering nvidia.com/gpu is checked",
            "image": "the image every smoke pod runs (default: the spec's smoke images)"})
@user_errors
def smoke(c: Context, config: str | None = None, name: str | None = None, level: str = DEFAULT_LEVEL,
          json: bool = False, junit: str | None = None, timeout: str | None = None, kubeconfig: str | None = None,
          image: str | None = None) -> None:
    """Run GPU Jobs on every worker; pass only if each sees exactly its own GPUs."""
    # timeout defaults to None, not 300: invoke would parse `--timeout x` itself, with a traceback.
    checked = flags.parse(config=config, name=name, level=level, timeout=timeout, junit=junit, kubeconfig=kubeconfig,
                          image=image)
    commands.smoke.run(config, {"name": checked["name"]}, checked["level"], timeout=checked["timeout"],
                       kubeconfig=kubeconfig, image=image, junit=junit, as_json=json)


COMMAND_TASKS = [config, preflight, up, down, status, smoke, kubeconfig, load, node_images, fault, heal]
# A step with a task of its own already (preflight, config) keeps it; every other step becomes one.
STEP_TASKS = [step_task(s) for s in steps.pipeline() if s.name not in {t.name for t in COMMAND_TASKS}]
ns = Collection(*COMMAND_TASKS, *STEP_TASKS)
