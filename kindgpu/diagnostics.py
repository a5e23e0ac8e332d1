"""What a failed step leaves behind: kind's logs, plugin pod logs and events, in the state dir."""

from __future__ import annotations

import json

from . import cmd, deviceplugin, names
from .kube import REQUEST_TIMEOUT


def collect(ctx, step_name):
    """Write a diagnostics bundle; never raises (it runs while something already failed)."""
    where = ctx.plan.state.diagnostics(step_name)
    where.mkdir(parents=True, exist_ok=True)
    cmd.run(["kind", "export", "logs", where / "kind", "--name", ctx.plan.name], check=False, timeout=300)
    try:
        (where / "plugin-pods.txt").write_text(plugin_report(ctx, tail=200))
        events = ctx.kube.core.list_namespaced_event(names.SYSTEM_NAMESPACE, _request_timeout=REQUEST_TIMEOUT).items
        (where / "events.json").write_text(json.dumps(
            [{"object": f"{e.involved_object.kind}/{e.involved_object.name}", "type": e.type,
              "reason": e.reason, "message": e.message} for e in events], indent=2))
    except Exception as err:  # the API may be what broke; kind's logs are still there
        (where / "api-error.txt").write_text(f"{type(err).__name__}: {err}\n")
    return where


def plugin_pods(ctx):
    return ctx.kube.pods(names.SYSTEM_NAMESPACE, deviceplugin.plugin_selector(ctx.plan.simulated))


def pod_summary(ctx, pod, tail=20):
    """Phase, container states, recent events and the log tail of one pod."""
    core = ctx.kube.core
    lines = [f"pod {pod.metadata.name} on {pod.spec.node_name}: {pod.status.phase}"]
    for cs in pod.status.container_statuses or []:
        state = cs.state.waiting or cs.state.terminated
        if state:
            lines.append(f"  {cs.name}: {state.reason} {state.message or ''}".rstrip())
    events = core.list_namespaced_event(pod.metadata.namespace,
                                        field_selector=f"involvedObject.name={pod.metadata.name}").items
    lines += [f"  event {e.type} {e.reason}: {e.message}" for e in events[-5:]]
    try:
        log = ctx.kube.pod_log(pod.metadata.name, pod.metadata.namespace, tail_lines=tail)
        lines += [f"  log | {line}" for line in log.splitlines()]
    except Exception as err:  # no log yet: the container never started
        lines.append(f"  (no log: {getattr(err, 'reason', err)})")
    return "\n".join(lines)


def plugin_report(ctx, tail=20):
    pods = plugin_pods(ctx)
    if not pods:
        return "no device plugin pod exists: are the workers labelled nvidia.com/gpu.present=true?"
    return "\n".join(pod_summary(ctx, p, tail) for p in pods)


def plugin_hint(ctx):
    """Called when the wait for GPUs times out: what the plugin pods show, and what to try."""
    try:
        report = plugin_report(ctx)
    except Exception as err:
        report = f"(could not read the plugin pods: {err})"
    fix = ("the simulated plugin reads /var/run/kindgpu/sim-gpus in each worker"
           if ctx.plan.simulated else
           "an image that cannot be pulled shows ErrImagePull: `docker pull "
           f"{deviceplugin.nvidia_image(ctx.plan.spec)}` on the host, then `invoke up` loads it into the nodes; "
           "a plugin that finds no GPU means the node got none: run `invoke preflight`")
    return f"{fix}\n{report}"
