"""What kindgpu does when the host or the user breaks something (tests/e2e/test_faults.py runs the
same on real clusters): the decisions, with Docker's client and the host's commands faked at
their edge."""

import io
import os
from types import SimpleNamespace

import pytest
from docker.errors import NotFound
from invoke import Exit

from fakes import FakeDocker
from kindgpu import cmd, flags, images, names, nodes, steps, tasks
from kindgpu.errors import CommandError, KindgpuError
from kindgpu.report import Reporter
from kindgpu.steps import create

KIND_NO_IMAGE = """\
Creating cluster "kf-noimage" ...
 • Ensuring node image (kindgpu-e2e/no-such-node:v0.0.0) 🖼  ...
 ✗ Ensuring node image (kindgpu-e2e/no-such-node:v0.0.0) 🖼
ERROR: failed to create cluster: failed to pull image "kindgpu-e2e/no-such-node:v0.0.0": command "docker pull \
kindgpu-e2e/no-such-node:v0.0.0" failed with error: exit status 1
Command Output: Error response from daemon: pull access denied for kindgpu-e2e/no-such-node, repository does not \
exist or may require 'docker login'
"""


class FakeContainer:
    """A node container as Docker's SDK shows it: files by path, commands run recorded."""

    def __init__(self, name, role, status="running", files=(), mount_source="/state/c/node", exec_answer=None):
        self.name, self.status, self.files, self.ran = name, status, set(files), []
        self.labels = {names.KIND_ROLE_LABEL: role}
        self.attrs = {"Names": [f"/{name}"], "Labels": self.labels,
                      "Mounts": [{"Destination": names.OWNER_MOUNT, "Source": mount_source}]}
        self.exec_answer = exec_answer or (lambda argv: (0, b""))

    def get_archive(self, path):
        if path not in self.files:
            raise NotFound(f"Could not find the file {path} in container {self.name}")
        return iter([b"tar bytes"]), {"name": os.path.basename(path)}

    def exec_run(self, argv, demux=False):
        self.ran.append(list(argv))
        if argv[0] == "touch":
            self.files.add(argv[1])
        code, out = self.exec_answer(list(argv))
        return SimpleNamespace(exit_code=code, output=out)


@pytest.fixture
def plan(state_dir):
    return flags.plan_from_flags(name="c", workers=1, gpus=1, simulate=1)


def context(plan, containers):
    ctx = steps.Context(plan, Reporter(stream=io.StringIO()))
    ctx.__dict__["docker"] = FakeDocker(containers)  # the cached client, faked
    return ctx


@pytest.fixture
def host(monkeypatch):
    """The host's commands: none succeeds (no kind here) unless a test says otherwise; argv kept."""
    ran = []

    def run(argv, check=True, **kw):
        argv = [str(a) for a in argv]
        ran.append(argv)
        return cmd.Result(argv, 1, "", "ERROR: no control plane")

    monkeypatch.setattr(cmd, "run", run)
    return ran


# 7: Ctrl-C during `kind create`


def test_a_cluster_kind_finished_is_marked_and_is_not_half_made(plan, host):
    done = FakeContainer("c-control-plane", "control-plane", files=[create.KIND_DONE])
    ctx = context(plan, [done, FakeContainer("c-worker", "worker")])
    assert create.kind_finished(ctx, ctx.nodes())
    assert not any(argv[:2] == ["kind", "get"] for argv in host)  # the mark is enough: no API asked


def test_a_cluster_without_the_mark_that_records_no_spec_is_half_made(plan, host):
    ctx = context(plan, [FakeContainer("c-control-plane", "control-plane"), FakeContainer("c-worker", "worker")])
    assert not create.kind_finished(ctx, ctx.nodes())
    assert create.Create().reason(ctx) == "cluster c was left half-made (kind create did not finish)"


def test_a_stopped_control_plane_without_the_mark_is_started_not_deleted(plan, host):
    stopped = FakeContainer("c-control-plane", "control-plane", status="exited")
    ctx = context(plan, [stopped, FakeContainer("c-worker", "worker", status="exited")])
    assert create.kind_finished(ctx, ctx.nodes())
    assert create.Create().reason(ctx) == "node container(s) not running: c-control-plane, c-worker"


def test_an_older_cluster_that_records_its_spec_gets_the_mark(plan, monkeypatch):
    control_plane = FakeContainer("c-control-plane", "control-plane")
    ctx = context(plan, [control_plane, FakeContainer("c-worker", "worker")])
    monkeypatch.setattr(create, "records_spec", lambda name: name == "c")
    assert create.kind_finished(ctx, ctx.nodes())
    assert control_plane.ran == [["touch", create.KIND_DONE]]


def test_a_half_made_cluster_is_deleted_with_its_own_kubeconfig_only(plan, host):
    create.delete_cluster(context(plan, []))  # kind wrote none yet: kind is still told to edit only that one
    assert host == [["kind", "delete", "cluster", "--name", "c", "--kubeconfig", str(plan.kubeconfig)]]


def test_ctrl_c_is_a_message_and_exit_130_never_a_traceback():
    @tasks.user_errors
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(Exit) as caught:
        interrupted()
    assert caught.value.code == 130
    assert caught.value.message.startswith("ERROR: interrupted\nfix: run the same command again")


# 9: kind failing for a reason of its own


def test_a_node_image_kind_cannot_get_is_named_with_how_to_get_it():
    err = create.kind_failed("kf-noimage", 1, KIND_NO_IMAGE)
    assert str(err).startswith("kind create cluster failed: the node image kindgpu-e2e/no-such-node:v0.0.0 is not "
                               "in the host's Docker and could not be pulled (Error response from daemon: pull "
                               "access denied")
    assert str(err).endswith("nothing of cluster kf-noimage was left behind")
    assert "`docker pull kindgpu-e2e/no-such-node:v0.0.0`" in err.fix and "docker load" in err.fix
    assert "--node-image" in err.fix


def test_another_kind_failure_keeps_what_kind_said_and_where_its_logs_are():
    err = create.kind_failed("c", 1, "ERROR: failed to create cluster: failed to init node with kubeadm\n",
                             where="/state/c/diagnostics/x-create")
    assert "(exit 1); kind cannot resume a half-made cluster, so it was deleted after its logs were saved to " \
           "/state/c/diagnostics/x-create\nERROR: failed to create cluster: failed to init node" in str(err)


# 8: dockerd stopped


def test_docker_not_reachable_says_so_with_the_command_that_starts_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    monkeypatch.setattr(nodes, "_client", None)
    with pytest.raises(KindgpuError) as caught:
        nodes.docker_client()
    assert str(caught.value) == f"Docker is not reachable at DOCKER_HOST=unix://{tmp_path}/docker.sock: " \
                                "its socket is not there (dockerd is not running, or DOCKER_HOST names another socket)"
    assert "`sudo systemctl start docker`" in caught.value.fix


# 10: the state directory deleted while the cluster runs


FAKE_DOCKER = """#!/bin/sh
# docker save IMAGE prints the image; docker exec [-i] NODE ctr ... INPUT keeps what the importer read
log=$FAKE_LOG; echo "$*" >>"$log/argv"
case "$1" in
  save) if [ -n "$FAKE_SAVE_BYTES" ]; then head -c "$FAKE_SAVE_BYTES" /dev/zero; else printf 'an image'; fi ;;
  exec) shift; [ "$1" = -i ] && shift; node=$1; eval "input=\\${$#}"
        [ "$node" = "$FAKE_FAILS" ] && { echo "ctr: no space left on device"; exit 1; }
        if [ "$input" = - ]; then cat >"$log/$node.stdin"
        else cat "$FAKE_MOUNT/${input#/etc/kindgpu/}" >"$log/$node.pipe"; fi ;;
esac
"""


def node_seeing(name, mounted_dir):
    """A node whose /etc/kindgpu shows mounted_dir (the host directory it was made with)."""

    def answer(argv):
        if argv[:2] == ["sh", "-c"] and argv[2] == images.PROBE:
            path = argv[-1].replace(names.OWNER_MOUNT, str(mounted_dir))
            return 0, (b"pipe\n" if os.path.exists(path) else b"") + b"--local\n"
        return 0, b""

    return nodes.Node(FakeContainer(name, "worker", mount_source=str(mounted_dir), exec_answer=answer))


def test_a_node_whose_mount_no_longer_shows_the_state_dir_gets_the_image_streamed(tmp_path, monkeypatch):
    state_node_dir = tmp_path / "state" / "c" / "node"  # made anew after a `rm -rf` of the state dir
    state_node_dir.mkdir(parents=True)
    deleted = tmp_path / "what-the-old-mount-shows"  # the deleted directory, still mounted in the node
    deleted.mkdir()
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_MOUNT", str(state_node_dir))
    fresh = node_seeing("c-worker", state_node_dir)
    fresh.container.attrs["Mounts"][0]["Source"] = str(state_node_dir)
    stale = node_seeing("c-worker2", deleted)
    stale.container.attrs["Mounts"][0]["Source"] = str(state_node_dir)  # Docker names the path, not the inode
    streamed = images.import_into([fresh, stale], "img:1")
    assert (log / "c-worker.pipe").read_bytes() == b"an image"  # read through the named pipe in its mount
    assert (log / "c-worker2.stdin").read_bytes() == b"an image"  # streamed through docker exec -i
    argv = (log / "argv").read_text().splitlines()
    assert f"exec -i c-worker2 {' '.join(images.IMPORT)} --local -" in argv
    assert any(line.startswith(f"exec c-worker {' '.join(images.IMPORT)} --local {names.OWNER_MOUNT}/image-")
               for line in argv)
    assert argv.count("save img:1") == 1  # Docker's stream is read once for both
    assert (streamed.bytes, streamed.nodes, streamed.piped) == (8, ["c-worker", "c-worker2"], ["c-worker"])
    assert list(state_node_dir.iterdir()) == []  # the pipes are removed afterwards


def test_a_node_whose_import_fails_is_named_and_the_others_still_get_the_image(tmp_path, monkeypatch):
    mount, bin_dir, log = tmp_path / "node", tmp_path / "bin", tmp_path / "log"
    for d in (mount, bin_dir, log):
        d.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    for key, value in {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log), "FAKE_MOUNT": str(mount),
                       "FAKE_FAILS": "c-worker"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(CommandError) as caught:
        images.import_into([node_seeing("c-worker", mount), node_seeing("c-worker2", mount)], "img:1")
    assert "c-worker " in str(caught.value) and "no space left on device" in str(caught.value)
    assert (log / "c-worker2.pipe").read_bytes() == b"an image"
    assert list(mount.iterdir()) == []


def test_an_interrupted_stream_stops_docker_save_and_the_imports_instead_of_waiting_for_them(tmp_path, monkeypatch):
    mount, bin_dir, log = tmp_path / "node", tmp_path / "bin", tmp_path / "log"
    for d in (mount, bin_dir, log):
        d.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    for key, value in {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log), "FAKE_MOUNT": str(mount),
                       "FAKE_SAVE_BYTES": str(64 << 20)}.items():
        monkeypatch.setenv(key, value)

    def interrupted(streamed, done):  # e.g. Ctrl-C, or --json's stderr gone
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        images.import_into([node_seeing("c-worker", mount)], "img:1", interrupted)
    assert list(mount.iterdir()) == []
