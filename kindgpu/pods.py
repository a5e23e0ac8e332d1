"""What a pod's status says, read in one place: a container's waiting reason, an image that cannot
be pulled, a container that keeps crashing. Beside kube.py (which lists the pods); smoke, status
and diagnostics read pods through it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubernetes.client import V1ContainerStatus, V1Pod


def waiting(pod: V1Pod) -> str | None:
    """The reason the first waiting container of the pod gives (ContainerCreating, ImagePullBackOff, ...)."""
    return next((cs.state.waiting.reason for cs in pod.status.container_statuses or [] if cs.state.waiting), None)


def state(pod: V1Pod) -> str:
    """What a pod is doing, in a word: a container's waiting reason, else its phase."""
    return waiting(pod) or pod.status.phase


def waiting_reason(pod: V1Pod) -> str:
    """Why a pod is not done yet: a container's waiting reason, else why it is not scheduled, else its phase."""
    reason = waiting(pod)
    if reason:
        return reason
    cond = next((c for c in pod.status.conditions or [] if c.type == "PodScheduled" and c.status == "False"), None)
    return cond.reason if cond else pod.status.phase


def pull_backoff(pods: list[V1Pod]) -> tuple[V1Pod, V1ContainerStatus] | None:
    """The first pod, and its container, whose image could not be pulled after retries (ImagePullBackOff:
    a first ErrImagePull may be a registry hiccup); None if none."""
    for pod in pods:
        for cs in pod.status.container_statuses or []:
            if cs.state.waiting and cs.state.waiting.reason == "ImagePullBackOff":
                return pod, cs
    return None


def not_running(pod: V1Pod) -> list[tuple[str, object]]:
    """(container, its waiting or terminated state) of each container of the pod that is not running."""
    return [(cs.name, cs.state.waiting or cs.state.terminated) for cs in pod.status.container_statuses or []
            if cs.state.waiting or cs.state.terminated]


# Exit codes of a container killed from outside (SIGKILL, SIGTERM, its node gone): not a crash of
# its own; were it one, CrashLoopBackOff says so seconds later.
KILLED = (137, 143, 255)


def crash(pod: V1Pod) -> tuple[str, str] | None:
    """(container, what happened) of a container that keeps failing; None if none does."""
    for cs in pod.status.container_statuses or []:
        waiting, ended = cs.state.waiting, cs.state.terminated
        if waiting and waiting.reason in ("CrashLoopBackOff", "RunContainerError", "CreateContainerError"):
            return cs.name, waiting.reason
        if ended and ended.exit_code and ended.exit_code not in KILLED and (cs.restart_count or 0) >= 1:
            return cs.name, f"exited {ended.exit_code} ({ended.reason}) {cs.restart_count} time(s)"
    return None
