"""kind node containers, seen through Docker: the live state kind keeps on its containers."""

from __future__ import annotations

from . import names
from .errors import CommandError, KindgpuError


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


def cluster_containers(client, cluster):
    """Node containers of a kind cluster, from kind's own label (never from names).

    Listed in one call (sparse: Docker's client would inspect each node once more); the list
    has all kindgpu reads, under other keys, which are copied where the client looks."""
    found = client.containers.list(all=True, sparse=True,
                                   filters={"label": f"{names.KIND_CLUSTER_LABEL}={cluster}"})
    for container in found:
        container.attrs.setdefault("Name", container.attrs["Names"][0])
        container.attrs.setdefault("Config", {"Labels": container.attrs.get("Labels") or {}})
    return found


def role(container):
    return container.labels.get(names.KIND_ROLE_LABEL, "")


def owner_mount_source(mounts):
    """The host directory kindgpu mounts into every node it makes (None in others' clusters).

    mounts: a container's "Mounts" as Docker reports them.
    """
    return next((m.get("Source") for m in mounts or [] if m.get("Destination") == names.OWNER_MOUNT), None)


def has_owner_mount(mounts):
    """kindgpu mounts its state into every node it makes; kind clusters of others lack it."""
    return owner_mount_source(mounts) is not None


def made_by_kindgpu(containers):
    """A cluster is kindgpu's when every one of its node containers carries the mark."""
    return all(has_owner_mount(c.attrs.get("Mounts")) for c in containers)


def exec_in(container, argv, check=True):
    """Run argv inside a node container; the one way kindgpu runs commands in nodes."""
    result = container.exec_run(argv, demux=False)
    output = (result.output or b"").decode(errors="replace")
    if check and result.exit_code != 0:
        raise CommandError(["docker", "exec", container.name, *argv], result.exit_code, output)
    return result.exit_code, output


def sh_in(container, script, check=True):
    return exec_in(container, ["sh", "-c", script], check=check)


def kind_networks(client, cluster):
    return client.networks.list(names=[network_name(cluster)])


def network_name(cluster):
    """Each kindgpu cluster gets its own Docker network, so `down` can remove it."""
    return f"kindgpu-{cluster}"
