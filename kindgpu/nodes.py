"""kind node containers, seen through Docker: the live state kind keeps on its containers.

"Node" here means a node's container; kube.py's nodes are the Kubernetes Node objects.
"""

from __future__ import annotations

from . import names
from .cmd import Result
from .errors import CommandError, KindgpuError

# Docker's client is imported where used: listing the tasks must not pay for it.


def docker_client():
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
        return client
    except DockerException as err:
        raise KindgpuError(f"cannot reach the Docker daemon: {err}",
                           "start it (`sudo systemctl start docker`) and run `invoke preflight`") from err


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

    def run(self, argv: list[str], *, check: bool = True) -> Result:
        """Run argv inside the node. Docker's exec gives one stream: stdout holds stderr too."""
        result = self.container.exec_run(argv, demux=False)
        output = (result.output or b"").decode(errors="replace")
        if check and result.exit_code != 0:
            raise CommandError(["docker", "exec", self.name, *argv], result.exit_code, output)
        return Result(list(argv), result.exit_code, output, "")

    def sh(self, script: str, *, check: bool = True) -> Result:
        return self.run(["sh", "-c", script], check=check)

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


def owner_mount_source(mounts):
    """The host directory kindgpu mounts into every node it makes (None in others' clusters).

    mounts: a container's "Mounts" as Docker reports them.
    """
    return next((m.get("Source") for m in mounts or [] if m.get("Destination") == names.OWNER_MOUNT), None)


def has_owner_mount(mounts):
    """kindgpu mounts its state into every node it makes; kind clusters of others lack it."""
    return owner_mount_source(mounts) is not None


def made_by_kindgpu(nodes) -> bool:
    """A cluster is kindgpu's when every one of its node containers carries the mark."""
    return all(node.owner_mount is not None for node in nodes)


def kind_networks(client, cluster):
    return client.networks.list(names=[network_name(cluster)])


def network_name(cluster):
    """Each kindgpu cluster gets its own Docker network, so `down` can remove it."""
    return f"kindgpu-{cluster}"
