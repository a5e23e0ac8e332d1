"""The invoke tasks (`invoke --list`, or the `kindgpu` command). Thin: logic lives in the package.

Besides kindgpu.steps, whose list makes a task of each step, and the payloads' default level, the
tasks import what they need inside them, so that listing them costs little (the Kubernetes client
alone takes most of a second).
"""

from functools import wraps

from invoke import Collection, Exit, Task, task

from kindgpu import steps
from kindgpu.payloads import DEFAULT_LEVEL

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


class KindgpuTask(Task):
    """invoke's Task, except that a flag never gets `--` as its short form (invoke 3 gives `-`, the
    third letter of `no-merge`, when `n` and `o` are taken, and `--` then stops being the remainder)."""

    def arg_opts(self, name, default, taken_names):
        return super().arg_opts(name, default, {*taken_names, "-"})


def user_errors(fn):
    """kindgpu's errors become a message and an exit code, never a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        from kindgpu.errors import KindgpuError, user_text

        try:
            return fn(*args, **kwargs)
        except KindgpuError as err:
            raise Exit(user_text(err), code=err.exit_code)
        except KeyboardInterrupt:  # Ctrl-C: what was left, and what to run, never a traceback
            raise Exit(user_text(KindgpuError(
                "interrupted", "run the same command again: `invoke up` finishes a cluster it left, or "
                "deletes one kind left half-made and makes it anew")), code=130)

    return wrapper


def warn_about(plan):
    """What the plan asks for at the user's risk, or does because of this host, on stderr: the warning, then the fix."""
    import sys

    for w in plan.warnings():
        print(f"WARNING: {w.field}: {w.message}\nfix: {w.fix}", file=sys.stderr)


def cluster_spec(config, name):
    """The spec as far as a task about an existing cluster needs it (no GPUs looked at)."""
    from kindgpu import flags, spec

    return spec.resolve(config_file=config, flags=flags.to_flags(name=name))


def cluster_name(config, name):
    return cluster_spec(config, name)["name"]


@task(help={**SPEC_HELP, "json": "print the plan as JSON", "dry_run": "write nothing"})
@user_errors
def config(c, config=None, name=None, workers=None, gpus=None, simulate=None, node_image=None,
           json=False, dry_run=False):
    """Plan which GPUs go to which worker and write the kind config."""
    from kindgpu import config_cmd, flags

    plan = flags.plan_from_flags(config, name=name, workers=workers, gpus=gpus,
                                 simulate=simulate, node_image=node_image)
    warn_about(plan)
    config_cmd.run(plan, dry_run=dry_run, as_json=json)


@task(help={**SPEC_HELP, "json": "print the checks as JSON",
            "fix": "apply the safe host fixes (inotify sysctls) and print what changed"})
@user_errors
def preflight(c, config=None, name=None, workers=None, gpus=None, simulate=None, node_image=None,
              json=False, fix=False):
    """Check that this host can run the cluster asked for; print how to fix what is missing."""
    from kindgpu import flags, preflight as checks, spec

    doc = spec.resolve(config_file=config, flags=flags.to_flags(
        name=name, workers=workers, gpus=gpus, simulate=simulate, node_image=node_image))
    listed = doc["workers"] if isinstance(doc["workers"], list) else None
    code = checks.main(
        workers=len(listed) if listed else doc["workers"],
        gpus=max(len(w.get("gpus", [])) for w in listed) if listed else doc["gpusPerWorker"],
        gpus_total=sum(len(w.get("gpus", [])) for w in listed) if listed else None,
        cluster_name=doc["name"], simulate=(doc.get("simulate") or {}).get("gpus"),
        api_address=doc["apiServer"]["address"], as_json=json, fix=fix, node_image=doc["nodeImage"])
    if code:
        raise Exit(code=code)


def bring_up(until, *, config, name, workers, gpus, simulate, node_image, dry_run, force, recreate,
             merge=False, no_merge=False):
    """`invoke up`, up to the step `until` (None: all of them); then kubectl's kubeconfig is merged
    (unless --no-merge or spec mergeKubeconfig: false) and the command that reaches the cluster shown."""
    from kindgpu import cluster, flags, kubeconfig
    from kindgpu.report import Reporter

    flags.parse(workers=workers, gpus=gpus, simulate=simulate, force=force, until=until)
    kubeconfig.wants_merge({}, merge, no_merge)  # a contradiction exits 2 before anything is looked at
    plan = flags.plan_from_flags(config, name=name, workers=workers, gpus=gpus,
                                 simulate=simulate, node_image=node_image)
    warn_about(plan)
    merging = kubeconfig.wants_merge(plan.spec, merge, no_merge)
    reporter = Reporter()
    cluster.up(plan, reporter, force=tuple(force or ()), until=until, dry_run=dry_run, recreate=recreate)
    if dry_run:
        if merging:
            reporter.skipped("kubeconfig", f"would merge context {kubeconfig.key(plan.name)} "
                                           f"into {kubeconfig.merge_target()}")
        return
    kubeconfig.after_up(plan.name, plan.kubeconfig, reporter, merging)


def up(c, config=None, name=None, workers=None, gpus=None, simulate=None, node_image=None,
       dry_run=False, force=None, until=None, recreate=False, merge=False, no_merge=False):
    bring_up(until, config=config, name=name, workers=workers, gpus=gpus, simulate=simulate,
             node_image=node_image, dry_run=dry_run, force=force, recreate=recreate, merge=merge,
             no_merge=no_merge)


up.__doc__ = f"Create the cluster, or finish it: {', '.join(s.name for s in steps.pipeline())}."
up = task(help={**UP_HELP, "until": "stop after this step"}, iterable=["force"], klass=KindgpuTask)(user_errors(up))


def step_task(step):
    """`invoke <step>`: the steps before it first, then the step, with up's flags (up --until <step>)."""

    def run_until(c, config=None, name=None, workers=None, gpus=None, simulate=None, node_image=None,
                  dry_run=False, force=None, recreate=False, merge=False, no_merge=False):
        bring_up(step.name, config=config, name=name, workers=workers, gpus=gpus, simulate=simulate,
                 node_image=node_image, dry_run=dry_run, force=force, recreate=recreate, merge=merge,
                 no_merge=no_merge)

    summary = step.__doc__.splitlines()[0].rstrip(".")
    run_until.__doc__ = f"{summary}, after the steps before it (as `up --until {step.name}`)."
    return task(name=step.name, help=UP_HELP, iterable=["force"], klass=KindgpuTask)(user_errors(run_until))


@task(help={**NAME_HELP, "force": "also delete a kind cluster kindgpu did not make",
            "images": "also remove the node images kindgpu built that no container uses (see node-images)"})
@user_errors
def down(c, config=None, name=None, force=False, images=False):
    """Delete the cluster, its Docker network and its state directory."""
    from kindgpu import cluster, nodeimage
    from kindgpu.report import Reporter

    reporter = Reporter()
    cluster.down(cluster_name(config, name), reporter, force=force)
    if images:
        nodeimage.show_removal(*nodeimage.remove_unused(nodes_client(), reporter.note), reporter.note)


def nodes_client():
    from kindgpu import nodes

    return nodes.docker_client()


@task(help={"remove": "remove those no container uses (a cluster's nodes keep theirs)", "json": "print as JSON"})
@user_errors
def node_images(c, remove=False, json=False):
    """List the node images kindgpu built (spec prepareNodeImage); --remove those no container uses."""
    from kindgpu import nodeimage
    from kindgpu.report import Reporter

    client = nodes_client()
    if remove:
        nodeimage.show_removal(*nodeimage.remove_unused(client, Reporter(quiet=json).note),
                               Reporter(quiet=json).note)
    nodeimage.show(nodeimage.built(client), json)


@task(help={**NAME_HELP, "json": "print as JSON"})
@user_errors
def status(c, config=None, name=None, json=False):
    """Show nodes, labels, assigned vs allocatable GPUs and device plugin health."""
    from kindgpu import cluster, kubeconfig

    spec = cluster_spec(config, name)
    doc = cluster.status(spec["name"])
    private = kubeconfig.private_path(spec)
    doc["kubeconfig"] = str(private)
    doc["next"] = kubeconfig.reach_command(spec["name"], private)
    cluster.show_status(doc, json)
    if not json:
        print(f"next: {doc['next']}")
    if not doc["healthy"]:
        raise Exit(code=1)


@task(help={**NAME_HELP,
            "merge": "add or refresh context kind-<name> in $KUBECONFIG or ~/.kube/config, and make it current",
            "unmerge": "remove context kind-<name> (and its cluster and user) from those files"})
@user_errors
def kubeconfig(c, config=None, name=None, merge=False, unmerge=False):
    """Print the cluster's own kubeconfig; --merge or --unmerge its context where kubectl looks."""
    from kindgpu import kubeconfig as kc
    from kindgpu.errors import Problem, SpecError

    if merge and unmerge:
        raise SpecError([Problem("--merge", "cannot be given with --unmerge", "give one of them")],
                        title="invalid task flags")
    spec = cluster_spec(config, name)
    cluster, private = spec["name"], kc.private_path(spec)
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


@task(help={"images": "IMAGE[,IMAGE...]: images in this host's Docker (commas between them)",
            **NAME_HELP, "workers": "only these workers, e.g. 1,3 (1 is <name>-worker); default every node",
            "json": "print what went where as JSON"})
@user_errors
def load(c, images, config=None, name=None, workers=None, json=False):
    """Put local Docker images into the cluster's nodes at once, skipping nodes that have them."""
    from kindgpu import load as loading
    from kindgpu.report import Reporter

    listed, numbers = loading.parse_images(images), loading.parse_worker_numbers(workers)
    results = loading.load(cluster_name(config, name), listed, Reporter(quiet=json), workers=numbers)
    loading.show(results, json)


@task(help={**NAME_HELP, "level": "visibility (default), compute or collective",
            "json": "print the result as JSON", "junit": "where to write the JUnit XML report",
            "timeout": "seconds to wait for the Jobs (default 300)",
            "kubeconfig": "a GPU cluster kindgpu did not make: every node offering nvidia.com/gpu is checked",
            "image": "the image every smoke pod runs (default: the spec's smoke images)"})
@user_errors
def smoke(c, config=None, name=None, level=DEFAULT_LEVEL, json=False, junit=None, timeout=None,
          kubeconfig=None, image=None):
    """Run GPU Jobs on every worker; pass only if each sees exactly its own GPUs."""
    from kindgpu import flags, foreign, smoke as smoke_test
    from kindgpu.errors import Problem, SpecError
    from kindgpu.report import Reporter

    # timeout defaults to None, not 300: invoke would parse `--timeout x` itself, with a traceback.
    checked = flags.parse(level=level, timeout=timeout)
    if kubeconfig and name:
        raise SpecError([Problem("--name", "cannot be given with --kubeconfig",
                                 "--kubeconfig names the cluster (its current context); drop --name")],
                        title="invalid task flags")
    timeout = checked["timeout"] or flags.SMOKE_TIMEOUT
    if kubeconfig:
        foreign.smoke(kubeconfig, level, Reporter(quiet=json), doc=cluster_spec(config, None), image=image,
                      junit=junit, as_json=json, timeout=timeout)
        return
    smoke_test.smoke(cluster_name(config, name), level, Reporter(quiet=json), junit=junit, as_json=json,
                     timeout=timeout, image=image)


# A step with a task of its own already (preflight, config) keeps it; every other step becomes one.
STEP_TASKS = [step_task(s) for s in steps.pipeline() if s.name not in ("preflight", "config")]
ns = Collection(config, preflight, up, down, status, smoke, kubeconfig, load, node_images, *STEP_TASKS)
