"""What a failed step leaves behind: kind's logs, plugin pod logs and events, in the state dir."""

from __future__ import annotations

import json

from . import deviceplugin, kind, names, pods
from .kube import REQUEST_TIMEOUT


def collect(ctx, step_name):
    """Write a diagnostics bundle; never raises (it runs while something already failed)."""
    where = ctx.plan.state.diagnostics(step_name)
    where.mkdir(parents=True, exist_ok=True)
    kind.export_logs(ctx.plan.name, where / "kind")
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
    return ctx.kube.pods(names.SYSTEM_NAMESPACE, deviceplugin.plugin_selector(ctx.plan))


def pod_summary(ctx, pod, tail=20):
    """Phase, container states, recent events and the log tail of one pod."""
    core = ctx.kube.core
    lines = [f"pod {pod.metadata.name} on {pod.spec.node_name}: {pod.status.phase}"]
    lines += [f"  {name}: {state.reason} {state.message or ''}".rstrip() for name, state in pods.not_running(pod)]
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


# What a crashing plugin's log says -> what to do about it.
CRASH_FIXES = (
    (("NVML", "nvml"),
     "the plugin cannot load libnvidia-ml.so.1 from the node: check `docker exec {node} ldconfig -p | "
     "grep nvidia-ml` (the host's NVIDIA runtime puts the driver there; `invoke preflight` checks it), "
     "then `invoke up --force device-plugin`"),
    (("could not mask", "mount:", "sed:"),
     "the plugin image must have sh, sed, mount and grep (NVIDIA's has busybox) to mask "
     "/proc/driver/nvidia/params"),
    (("CDI", "cdi"),
     "the node's containerd must have CDI on (kindgpu enables it when it creates the cluster: "
     "`invoke up --recreate` for a cluster made before)"),
)


def crash_fix(log, node):
    for needles, fix in CRASH_FIXES:
        if any(n in log for n in needles):
            return fix.format(node=node)
    return f"read the whole log: kubectl -n {names.SYSTEM_NAMESPACE} logs -l name={deviceplugin.NVIDIA_APP} --previous"


def last_error_line(log):
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if any(w in line.lower() for w in ("error", "fail", "unable", "fatal"))]
    return (errors or lines or ["(empty log)"])[-1]


def crash_log(ctx, pod):
    """The log of the run that failed: the current container's, or (restarted since) the one before."""
    for previous in (False, True):
        try:
            log = ctx.kube.pod_log(pod.metadata.name, pod.metadata.namespace, tail_lines=50, previous=previous)
        except Exception:  # that container is gone, or none started yet
            continue
        if log.strip() and not log.startswith("unable to retrieve container logs"):
            return log
    return ""


def plugin_crash(ctx):
    """Why the wait for the plugin should stop now, and the fix: a plugin pod that keeps crashing
    (("", "") if none does)."""
    for pod in plugin_pods(ctx):
        found = pods.crash(pod)
        if not found:
            continue
        container, what = found
        log = crash_log(ctx, pod)
        return (f"device plugin pod {pod.metadata.name} on {pod.spec.node_name}: {container} {what}; "
                f"its log says: {last_error_line(log)}", crash_fix(log, pod.spec.node_name))
    return "", ""


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
