"""The invoke tasks (`invoke --list`, or the `kindgpu` command). Thin: logic lives in the package.

Besides kindgpu.steps, whose list makes a task of each step, and the payloads' default level, the
tasks import what they need inside them, so that listing them costs little (the Kubernetes client
alone takes most of a second).
"""

from functools import wraps

from invoke import Collection, Exit, task

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
           "recreate": "delete and remake a cluster made from another spec"}


def user_errors(fn):
    """kindgpu's errors become a message and an exit code, never a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        from kindgpu.errors import KindgpuError, user_text

        try:
            return fn(*args, **kwargs)
        except KindgpuError as err:
            raise Exit(user_text(err), code=err.exit_code)

    return wrapper


def warn_about(doc):
    """What the spec asks for at the user's risk, on stderr: the warning, then the fix."""
    import sys

    from kindgpu import spec

    for w in spec.warnings(doc):
        print(f"WARNING: {w.field}: {w.message}\nfix: {w.fix}", file=sys.stderr)


def cluster_name(config, name):
    from kindgpu import flags, spec

    return spec.resolve(config_file=config, flags=flags.to_flags(name=name))["name"]


@task(help={**SPEC_HELP, "json": "print the plan as JSON", "dry_run": "write nothing"})
@user_errors
def config(c, config=None, name=None, workers=None, gpus=None, simulate=None, node_image=None,
           json=False, dry_run=False):
    """Plan which GPUs go to which worker and write the kind config."""
    from kindgpu import config_cmd, flags

    plan = flags.plan_from_flags(config, name=name, workers=workers, gpus=gpus,
                                 simulate=simulate, node_image=node_image)
    warn_about(plan.spec)
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


def bring_up(until, *, config, name, workers, gpus, simulate, node_image, dry_run, force, recreate):
    """`invoke up`, up to the step `until` (None: all of them)."""
    from kindgpu import cluster, flags
    from kindgpu.report import Reporter

    flags.parse(workers=workers, gpus=gpus, simulate=simulate, force=force, until=until)
    plan = flags.plan_from_flags(config, name=name, workers=workers, gpus=gpus,
                                 simulate=simulate, node_image=node_image)
    warn_about(plan.spec)
    reporter = Reporter()
    cluster.up(plan, reporter, force=tuple(force or ()), until=until, dry_run=dry_run, recreate=recreate)
    if not dry_run:
        reporter.note(f"kubeconfig: {plan.kubeconfig}  (export KUBECONFIG={plan.kubeconfig})")


def up(c, config=None, name=None, workers=None, gpus=None, simulate=None, node_image=None,
       dry_run=False, force=None, until=None, recreate=False):
    bring_up(until, config=config, name=name, workers=workers, gpus=gpus, simulate=simulate,
             node_image=node_image, dry_run=dry_run, force=force, recreate=recreate)


up.__doc__ = f"Create the cluster, or finish it: {', '.join(s.name for s in steps.pipeline())}."
up = task(help={**UP_HELP, "until": "stop after this step"}, iterable=["force"])(user_errors(up))


def step_task(step):
    """`invoke <step>`: the steps before it first, then the step, with up's flags (up --until <step>)."""

    def run_until(c, config=None, name=None, workers=None, gpus=None, simulate=None, node_image=None,
                  dry_run=False, force=None, recreate=False):
        bring_up(step.name, config=config, name=name, workers=workers, gpus=gpus, simulate=simulate,
                 node_image=node_image, dry_run=dry_run, force=force, recreate=recreate)

    summary = step.__doc__.splitlines()[0].rstrip(".")
    run_until.__doc__ = f"{summary}, after the steps before it (as `up --until {step.name}`)."
    return task(name=step.name, help=UP_HELP, iterable=["force"])(user_errors(run_until))


@task(help={**NAME_HELP, "force": "also delete a kind cluster kindgpu did not make"})
@user_errors
def down(c, config=None, name=None, force=False):
    """Delete the cluster, its Docker network and its state directory."""
    from kindgpu import cluster
    from kindgpu.report import Reporter

    cluster.down(cluster_name(config, name), Reporter(), force=force)


@task(help={**NAME_HELP, "json": "print as JSON"})
@user_errors
def status(c, config=None, name=None, json=False):
    """Show nodes, labels, assigned vs allocatable GPUs and device plugin health."""
    from kindgpu import cluster

    doc = cluster.status(cluster_name(config, name))
    cluster.show_status(doc, json)
    if not doc["healthy"]:
        raise Exit(code=1)


@task(help={**NAME_HELP, "level": "visibility (default), compute or collective",
            "json": "print the result as JSON", "junit": "where to write the JUnit XML report",
            "timeout": "seconds to wait for the Jobs (default 300)"})
@user_errors
def smoke(c, config=None, name=None, level=DEFAULT_LEVEL, json=False, junit=None, timeout=None):
    """Run GPU Jobs on every worker; pass only if each sees exactly its own GPUs."""
    from kindgpu import flags, smoke as smoke_test
    from kindgpu.report import Reporter

    # timeout defaults to None, not 300: invoke would parse `--timeout x` itself, with a traceback.
    checked = flags.parse(level=level, timeout=timeout)
    smoke_test.smoke(cluster_name(config, name), level, Reporter(quiet=json), junit=junit, as_json=json,
                     timeout=checked["timeout"] or flags.SMOKE_TIMEOUT)


# A step with a task of its own already (preflight, config) keeps it; every other step becomes one.
STEP_TASKS = [step_task(s) for s in steps.pipeline() if s.name not in ("preflight", "config")]
ns = Collection(config, preflight, up, down, status, smoke, *STEP_TASKS)
