"""A node runs commands the way the host does: its Docker container is faked at the SDK's edge."""

from types import SimpleNamespace

import pytest

from kindgpu import cmd, names, nodes
from kindgpu.errors import CommandError


class FakeContainer:
    """What kindgpu reads of the Docker SDK's Container; exec_run answers from a table."""

    def __init__(self, name, role, answers, mounts=()):
        self.name, self.status, self.answers = name, "running", answers
        self.labels = {names.KIND_ROLE_LABEL: role}
        self.attrs = {"Mounts": list(mounts)}

    def exec_run(self, argv, demux=False):
        code, out = self.answers[tuple(argv)]
        return SimpleNamespace(exit_code=code, output=out)


def test_a_node_runs_argv_and_returns_what_the_host_would():
    node = nodes.Node(FakeContainer("c-worker", "worker", {("ctr", "version"): (0, b"1.7\n")}))
    assert node.run(["ctr", "version"]) == cmd.Result(["ctr", "version"], 0, "1.7\n", "")
    assert node.role == "worker" and node.running


def test_a_failing_command_in_a_node_names_the_node_and_the_command():
    node = nodes.Node(FakeContainer("c-worker2", "worker", {("sh", "-c", "false"): (1, b"oops")}))
    assert node.sh("false", check=False).returncode == 1
    with pytest.raises(CommandError, match="docker exec c-worker2 sh -c false") as caught:
        node.sh("false")
    assert "oops" in str(caught.value)


def test_a_cluster_is_kindgpus_when_every_node_has_its_mount():
    mark = {"Destination": names.OWNER_MOUNT, "Source": "/state/c/node"}
    ours = nodes.Node(FakeContainer("c-control-plane", "control-plane", {}, [mark]))
    theirs = nodes.Node(FakeContainer("c-worker", "worker", {}))
    assert ours.owner_mount == "/state/c/node" and theirs.owner_mount is None
    assert nodes.made_by_kindgpu([ours]) and not nodes.made_by_kindgpu([ours, theirs])


def test_docker_start_times_read_to_the_microsecond_as_aware_times():
    from datetime import datetime, timezone

    assert nodes.docker_time("2026-12-01T17:43:51.123456789Z") == datetime(2026, 12, 1, 17, 43, 51, 123456,
                                                                          tzinfo=timezone.utc)
    assert nodes.docker_time("2026-12-01T17:43:51Z").tzinfo is not None


def test_a_node_is_ready_only_as_its_kubelet_reported_after_its_container_started():
    from datetime import datetime, timezone

    from kubernetes.client import V1Node, V1NodeCondition, V1NodeStatus

    from kindgpu import record

    def at(second):
        return datetime(2026, 12, 1, 18, 0, second, tzinfo=timezone.utc)

    def node(status, beat):
        return V1Node(status=V1NodeStatus(conditions=[V1NodeCondition(type="Ready", status=status,
                                                                       last_heartbeat_time=beat)]))

    assert record.reported_ready(node("True", at(5)), started=at(3))
    assert record.reported_ready(node("True", at(5)), started=at(5))  # whole seconds, as the API's
    assert not record.reported_ready(node("True", at(5)), started=at(9))  # restarted since: stale
    assert not record.reported_ready(node("False", at(9)), started=at(5))
    assert record.reported_ready(node("True", at(5)))
    assert not record.reported_ready(V1Node(status=V1NodeStatus(conditions=None)))


def listed(cluster, mounts):
    """A node container as Docker's sparse listing gives it."""
    return SimpleNamespace(attrs={"Labels": {names.KIND_CLUSTER_LABEL: cluster}, "Mounts": mounts})


def gpu_mount(uuid):
    return {"Destination": f"{names.NVIDIA_DEVICE_MOUNT_DIR}/cdi/runtime.nvidia.com/gpu/{uuid}", "Source": "/dev/null"}


def test_real_gpus_given_to_other_kindgpu_clusters_are_found_by_their_mounts(h200_inventory):
    from kindgpu import plan, spec

    mark = {"Destination": names.OWNER_MOUNT, "Source": "/state/x/node"}
    first, second = (g.uuid for g in h200_inventory.gpus)
    containers = [
        listed("mine", [mark, gpu_mount(first)]),          # this cluster's own: never a conflict
        listed("train", [mark, gpu_mount(second)]),        # another kindgpu cluster
        listed("plainkind", [gpu_mount(first)]),           # not kindgpu's: its mounts are its own business
    ]
    client = SimpleNamespace(containers=SimpleNamespace(list=lambda **kw: containers))
    assert nodes.real_gpus_of_other_clusters(client, "mine") == {second: "train"}

    doc = spec.resolve(env={}, flags={"name": "mine", "workers": 2, "gpusPerWorker": 1})
    assignments, _ = plan.allocate(doc, h200_inventory)
    [problem] = plan.held_by_other_clusters("mine", assignments, client)
    assert problem.field == "workers[1]" and "given to kindgpu cluster 'train'" in problem.message
    assert "invoke down --name train" in problem.fix and "devicePlugin.sharing" in problem.fix
    assert plan.held_by_other_clusters("mine", assignments[:1], client) == []
    assert plan.held_by_other_clusters("mine", assignments, None) == []  # no Docker: nothing to ask
