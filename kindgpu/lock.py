"""One kindgpu command changes a cluster at a time: an exclusive flock on the cluster's StateDir.lock.

A second `invoke up` (or `down`) of the same cluster says once whom it waits for, then waits.
The lock file lives in the state directory, which `down` removes while it holds the lock: a
command that was waiting then holds a lock on a file that is gone, so it locks the new one
instead (otherwise a third command would lock a new file beside it and run at the same time).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .wait import Seen, WaitTimeout, wait_for


def holder_of(fd: int) -> str:
    """What the lock file says about the command that holds it: "up 1234"."""
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def holder_once_written(fd: int) -> str:
    """holder_of, given a moment: the holder writes the file just after taking the lock, so a
    waiter that came in between reads it empty."""
    try:
        return wait_for(lambda: Seen(done=bool(text := holder_of(fd)), last=text), what="the lock's holder",
                        timeout=1, interval=0.02).last
    except WaitTimeout:
        return ""


def waiting_text(name: str, holder: str) -> str:
    command, _, pid = holder.partition(" ")
    who = f"`invoke {command}`" if command else "kindgpu command"
    return f"waiting for another {who} of {name}" + (f" (pid {pid})" if pid else "")


def still_there(fd: int, path: Path) -> bool:
    """Whether the file locked through fd is still the one at path (`down` may have removed it)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


@contextmanager
def exclusive(path: Path, name: str, command: str, note: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock at path for the body; wait for it when another command holds it, telling
    note() once whom it waits for."""
    told = False
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not told:
                    note(waiting_text(name, holder_once_written(fd)))
                    told = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if not still_there(fd, path):
                continue  # removed while this one waited: lock the file there now
            holder = f"{command} {os.getpid()}\n".encode()
            os.pwrite(fd, holder, 0)
            os.ftruncate(fd, len(holder))
            try:
                yield
            finally:
                leave_nothing(path)
            return
        finally:
            os.close(fd)


def leave_nothing(path: Path) -> None:
    """A command that made nothing (refused, or a cluster that is not there) leaves no directory behind
    for its lock; still holding it, so a waiter finds the file gone and locks the next one (still_there)."""
    try:
        if [entry.name for entry in path.parent.iterdir()] == [path.name]:
            path.unlink()
            path.parent.rmdir()
    except OSError:
        pass  # something else is there now: it stays
