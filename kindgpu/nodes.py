"""kind node containers, seen through Docker: the live state kind keeps on its containers.

"Node" here means a node's container; kube.py's nodes are the Kubernetes Node objects.
"""

from __future__ import annotations

import re
from datetime import datetime

from . import names
from .cmd import Result
from .errors import CommandError, KindgpuError

# Docker's client is imported where used: listing the tasks must not pay for it.


_client = None


def docker_client():
    """Docker's client, once per process; a KindgpuError when dockerd does not answer.

    Every task that needs Docker asks for it before anything else: with dockerd stopped, kind
    would print errors of its own, and nothing may be written first."""
    global _client
    if _client is None:
        _client = connect()
    return _client


def docker_client_or_none():
    """Docker's client where dockerd answers, else None (for what can be decided without it)."""
    try:
        return docker_client()
    except KindgpuError:
        return None


def connect():
    import os

    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
        return client
    except DockerException as err:
        where = f" at DOCKER_HOST={os.environ['DOCKER_HOST']}" if os.environ.get("DOCKER_HOST") else ""
        if "Permission denied" in str(err):
            raise KindgpuError(f"Docker is not reachable{where}: permission denied on its socket",
                               'join the docker group: `sudo usermod -aG docker "$USER" && newgrp docker` '
                               "(or run as root)") from err
        raise KindgpuError(f"Docker is not reachable{where}: {short_error(str(err))}",
                           "start dockerd: `sudo systemctl start docker` (then `invoke preflight` checks "
                           "the host), and run this again") from err


def short_error(text: str) -> str:
    """Docker's error in one line: the reason in its parentheses, without the errno."""
    m = re.search(r"\(([^()]*(?:No such file|refused|timed out|denied)[^()]*)\)", text)
    found = (m.group(1) if m else text.splitlines()[0] if text else "unknown error").strip(" '\"")
    found = re.sub(r"^\d+, '?", "", found)  # "2, 'No such file or directory": the errno goes
    if found.startswith("No such file"):  # the socket is not there: what that means, not the errno's words
        return "its socket is not there (dockerd is not running, or DOCKER_HOST names another socket)"
    return found


class Node:
    """One node container of a kind cluster. It runs commands the way the host does (cmd.run)."""

    def __init__(self, container):
        self.container = container  # the Docker SDK's Container

    def __repr__(self) -> str:
        return f"Node({self.name!r})"

    @property
    def name(self) -> str:
        return self.container.name

    @property
    def role(self) -> str:
        """"control-plane" or "worker", from kind's label (never from the name)."""
        return self.container.labels.get(names.KIND_ROLE_LABEL, "")

    @property
    def running(self) -> bool:
        return self.container.status == "running"

    @property
    def owner_mount(self) -> str | None:
        """The host directory kindgpu mounted into this node; None in clusters kindgpu did not make."""
        return owner_mount_source(self.container.attrs.get("Mounts"))

    def started_at(self) -> datetime:
        """When Docker last started the container (asked anew: a listing does not say)."""
        self.container.reload()
        return docker_time(self.container.attrs["State"]["StartedAt"])

    def run(self, argv: list[str], *, check: bool = True) -> Result:
        """Run argv inside the node. Docker's exec gives one stream: stdout holds stderr too."""
        result = self.container.exec_run(argv, demux=False)
        output = (result.output or b"").decode(errors="replace")
        if check and result.exit_code != 0:
            raise CommandError(["docker", "exec", self.name, *argv], result.exit_code, output)
        return Result(list(argv), result.exit_code, output, "")

    def sh(self, script: str, *, check: bool = True) -> Result:
        return self.run(["sh", "-c", script], check=check)

    def has_file(self, path: str) -> bool:
        """Whether the node's filesystem has path; asked of Docker, so a stopped node answers too."""
        from docker.errors import NotFound

        try:
            stream, _ = self.container.get_archive(path)
        except NotFound:
            return False
        for _ in stream:  # read to the end: the connection goes back to the client's pool
            pass
        return True

    def start(self) -> None:
        self.container.start()


def cluster_nodes(client, cluster: str) -> list[Node]:
    """The node containers of a kind cluster, found by kind's own label (never by their names).

    They are listed in one call. Sparse, because Docker's client would inspect each node once
    more. The sparse list has everything kindgpu reads, but under other keys, so those are
    copied to where the client looks for them.
    """
    found = client.containers.list(all=True, sparse=True,
                                   filters={"label": f"{names.KIND_CLUSTER_LABEL}={cluster}"})
    for container in found:
        container.attrs.setdefault("Name", container.attrs["Names"][0])
        container.attrs.setdefault("Config", {"Labels": container.attrs.get("Labels") or {}})
    return [Node(c) for c in found]


def image_id(client, name: str) -> str | None:
    """The ID of the image `name` in the host's Docker; None when Docker has no such image."""
    from docker.errors import ImageNotFound

    try:
        return client.images.get(name).id
    except ImageNotFound:
        return None


def real_gpus_of_other_clusters(client, cluster: str) -> dict[str, str]:
    """{GPU UUID: cluster} for the real GPUs that other kindgpu clusters' nodes on this host are given
    (their /dev/null mounts the NVIDIA runtime reads), running or stopped: a stopped node gets them back
    when it starts."""
    prefix = names.NVIDIA_DEVICE_MOUNT_DIR + "/"
    held = {}
    for container in client.containers.list(all=True, sparse=True, filters={"label": names.KIND_CLUSTER_LABEL}):
        other = (container.attrs.get("Labels") or {}).get(names.KIND_CLUSTER_LABEL)
        mounts = container.attrs.get("Mounts")
        if other == cluster or not has_owner_mount(mounts):
            continue
        for mount in mounts or []:
            destination = mount.get("Destination", "")
            if destination.startswith(prefix):
                held[destination.rsplit("/", 1)[-1]] = other
    return held


def owner_mount_source(mounts):
    """The host directory kindgpu mounts into every node it makes (None in others' clusters).

    mounts: a container's "Mounts" as Docker reports them.
    """
    return next((m.get("Source") for m in mounts or [] if m.get("Destination") == names.OWNER_MOUNT), None)


def has_owner_mount(mounts):
    """kindgpu mounts its state into every node it makes; kind clusters of others lack it."""
    return owner_mount_source(mounts) is not None


def kindgpu_cluster_here(cluster: str) -> bool:
    """Whether this host's Docker runs a cluster of that name that kindgpu made."""
    client = docker_client_or_none()
    found = cluster_nodes(client, cluster) if client is not None else []
    return bool(found) and made_by_kindgpu(found)


def made_by_kindgpu(nodes) -> bool:
    """A cluster is kindgpu's when every one of its node containers carries the mark."""
    return all(node.owner_mount is not None for node in nodes)


def kind_networks(client, cluster):
    return client.networks.list(names=[network_name(cluster)])


def remove_networks(client, cluster) -> list[str]:
    """Remove the cluster's own Docker network when no container is on it; the names removed."""
    removed = []
    for network in kind_networks(client, cluster):
        network.reload()
        if not network.attrs.get("Containers"):
            network.remove()
            removed.append(network.name)
    return removed


def network_name(cluster):
    """Each kindgpu cluster gets its own Docker network, so `down` can remove it."""
    return f"kindgpu-{cluster}"


def start_times(found: dict[str, Node]) -> dict[str, datetime]:
    """{name: when its container last started}, to the second as the API's times are: a node's
    kubelet must have reported after that for the API's view of the node to be current."""
    return {name: node.started_at().replace(microsecond=0) for name, node in found.items()}


def docker_time(text: str) -> datetime:
    """Docker's RFC 3339 time (nanoseconds, Z) as an aware datetime."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00"))
