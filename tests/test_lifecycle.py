"""Around the steps: one command at a time per cluster, and what changed in its spec."""

import fcntl
import os
import shutil
import threading
import time

import pytest

from fakes import Notes
from kindgpu import cluster, drift
from kindgpu.errors import KindgpuError
from kindgpu.state import StateDir


def test_a_second_command_on_the_same_cluster_waits_for_the_first_and_says_so(state_dir):
    first_in, first_out, order = threading.Event(), threading.Event(), []
    notes = Notes()

    def first():
        with cluster.cluster_lock("busy", "up", Notes()):
            first_in.set()
            first_out.wait(10)
            order.append("first")

    holder = threading.Thread(target=first)
    holder.start()
    first_in.wait(10)

    def then():
        with cluster.cluster_lock("busy", "up", notes):
            order.append("second")

    second = threading.Thread(target=then)
    second.start()
    wait_until(lambda: notes.lines)
    assert notes.lines == [f"waiting for another `invoke up` of busy (pid {os.getpid()})"]
    assert order == []  # still waiting
    first_out.set()
    holder.join(10)
    second.join(10)
    assert order == ["first", "second"] and len(notes.lines) == 1
    with cluster.cluster_lock("busy", "down", Notes()):  # released after both
        assert StateDir.of("busy").lock.read_text() == f"down {os.getpid()}\n"


def test_a_waiting_command_locks_the_new_file_when_down_removed_the_state_dir(state_dir):
    """`down` removes the state dir, lock file included, while it holds the lock: the one that
    waited must then hold the lock of the file at that path, or a third would run beside it."""
    state = StateDir.of("gone")
    down_in, down_out, up_in, up_out = (threading.Event() for _ in range(4))

    def down():
        with cluster.cluster_lock("gone", "down", Notes()):
            down_in.set()
            down_out.wait(10)
            shutil.rmtree(state.root)

    def up():
        with cluster.cluster_lock("gone", "up", Notes()):
            up_in.set()
            up_out.wait(10)

    threads = [threading.Thread(target=down), threading.Thread(target=up)]
    threads[0].start()
    down_in.wait(10)
    threads[1].start()
    time.sleep(0.2)  # up is waiting on the file down is about to remove
    down_out.set()
    assert up_in.wait(10)
    assert state.lock.exists()
    fd = os.open(state.lock, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):  # a third command would wait for up
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    up_out.set()
    for t in threads:
        t.join(10)


def wait_until(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_spec_differences_name_the_fields():
    diff = drift.spec_differences({"workers": 2, "gpusPerWorker": 4, "name": "a"},
                                    {"workers": 3, "gpusPerWorker": 4, "name": "a"})
    assert diff == ["workers: 2 -> 3"]


def test_down_of_nothing_says_so_and_leaves_no_state_dir_for_its_lock(state_dir, monkeypatch):
    from types import SimpleNamespace

    from kindgpu import nodes

    empty = SimpleNamespace(containers=SimpleNamespace(list=lambda **kw: []),
                            networks=SimpleNamespace(list=lambda **kw: []))
    monkeypatch.setattr(nodes, "docker_client", lambda: empty)  # Docker's client, with no cluster
    notes = Notes()
    assert cluster.down("none", notes) == []
    assert notes.lines == ["nothing to delete: no cluster none"]
    assert not StateDir.of("none").root.exists()


def test_a_waiter_that_comes_before_the_holder_wrote_its_name_still_names_it(tmp_path):
    """The holder takes the lock, then writes "up PID": a waiter in between must not say
    "another kindgpu command" (the two-ups e2e test saw it once)."""
    from kindgpu import lock

    path = tmp_path / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # taken, nothing written yet
    said = []

    def write_then_release():
        time.sleep(0.2)
        os.pwrite(fd, b"up 4242\n", 0)
        time.sleep(0.2)
        os.close(fd)

    holder = threading.Thread(target=write_then_release)
    holder.start()
    with lock.exclusive(path, "busy", "down", said.append):
        pass
    holder.join()
    assert said == ["waiting for another `invoke up` of busy (pid 4242)"]


def test_a_command_that_made_nothing_leaves_no_state_dir_for_its_lock(state_dir):
    """A refused command (a cluster kindgpu did not make, say) must not leave <state root>/<name>/lock."""
    with pytest.raises(KindgpuError):
        with cluster.cluster_lock("plainkind", "up", Notes()):
            raise KindgpuError("refused")
    assert not (state_dir / "plainkind").exists()
    with cluster.cluster_lock("kept", "up", Notes()):
        (StateDir.of("kept").root / "spec.yaml").write_text("made\n")
    assert sorted(p.name for p in (state_dir / "kept").iterdir()) == ["lock", "spec.yaml"]
