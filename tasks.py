"""kindgpu tasks: `invoke --list` shows them; logic lives in the kindgpu package."""

from functools import wraps

from invoke import Collection, Exit, task

SPEC_HELP = {
    "config": "spec file (see configs/), e.g. configs/default.yaml",
    "name": "cluster name (default gpu-cluster; env CLUSTER_NAME)",
    "workers": "number of GPU workers (default 2)",
    "gpus": "GPUs per worker (default 4)",
    "simulate": "simulate a host with this many GPUs (no NVIDIA GPU needed)",
    "node_image": "kind node image (env KINDGPU_NODE_IMAGE)",
}


def user_errors(fn):
    """Turn kindgpu's errors into a message and an exit code, never a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        from kindgpu.errors import KindgpuError

        try:
            return fn(*args, **kwargs)
        except KindgpuError as err:
            raise Exit(f"ERROR: {err}", code=err.exit_code)

    return wrapper


@task(help={**SPEC_HELP, "json": "print the plan as JSON", "dry_run": "write nothing"})
@user_errors
def config(c, config=None, name=None, workers=None, gpus=None, simulate=None, node_image=None,
           json=False, dry_run=False):
    """Plan which GPUs go to which worker and write the kind config."""
    from kindgpu import config_cmd, flags

    plan = flags.plan_from_flags(config, name=name, workers=workers, gpus=gpus,
                                 simulate=simulate, node_image=node_image)
    config_cmd.run(plan, dry_run=dry_run, as_json=json)


ns = Collection(config)
