"""Every path a user gives (a spec file, the state directory, a kubeconfig, a report to write) is checked
here, once, at the edge: before anything runs, a bad one is an error naming the flag or variable, with
its fix (exit 2), and nothing is written."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import Problem

STATE_VARIABLE = "KINDGPU_STATE_DIR"


def readable_file(flag: str, value) -> list[Problem]:
    """A file to read: there, a file, readable."""
    path = Path(str(value)).expanduser()
    if not path.exists():
        return [Problem(flag, f"{value} does not exist", "give the path of an existing file")]
    if path.is_dir():
        return [Problem(flag, f"{value} is a directory, not a file", "give the path of a file in it")]
    if not os.access(path, os.R_OK):
        return [Problem(flag, f"{value} is not readable", f"chmod u+r {value}, or run as its owner")]
    return []


def writable_file(flag: str, value) -> list[Problem]:
    """A file to write: not a directory, in a directory that is (or can be made) and can be written."""
    path = Path(str(value)).expanduser()
    if path.is_dir():
        return [Problem(flag, f"{value} is a directory, not a file", f"name a file: {path / 'report.xml'}")]
    return writable_dir(flag, path.parent, what="its directory ")


def writable_dir(flag: str, value, what: str = "") -> list[Problem]:
    """A directory kindgpu writes in: a directory (or nothing yet, under one it can write), writable."""
    path = Path(str(value)).expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return [Problem(flag, f"{what}{existing} is a file, not a directory",
                        "point it at a directory (or remove the file)")]
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        return [Problem(flag, f"{what}{existing} is not writable", "choose a directory you can write")]
    return []


def state_dir_problems(environ=os.environ) -> list[Problem]:
    """$KINDGPU_STATE_DIR, when set, must be a directory kindgpu can write in."""
    value = environ.get(STATE_VARIABLE)
    return writable_dir(STATE_VARIABLE, value) if value else []
