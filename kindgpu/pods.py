"""What a pod's status says, read in one place: a container's waiting reason, an image that cannot
be pulled. Beside kube.py (which lists the pods); smoke, status and diagnostics read pods through it."""

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
