"""The one way kindgpu runs an external command."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import CommandError


def tools_dir() -> Path:
    """Where `invoke preflight --fix` puts the kind and kubectl kindgpu was proven with; looked in first."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "kindgpu" / "bin"


def which(name: str) -> str | None:
    """The executable a command name runs: kindgpu's own tools first, then PATH."""
    return shutil.which(name, path=os.pathsep.join([str(tools_dir()), os.environ.get("PATH", os.defpath)]))


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def run(argv: Sequence[str | os.PathLike], *, check: bool = True, timeout: float | None = None,
        input: str | None = None, env: Mapping[str, str] | None = None, stdin: IO | None = None) -> Result:
    """Run argv without a shell; raise CommandError on non-zero exit when check is set.

    stdin: a file the command reads (input: a string it reads instead).
    A missing executable is reported as exit 127, like a shell would.
    """
    argv = [str(a) for a in argv]
    executable = which(argv[0])
    if executable is None:
        result = Result(argv, 127, "", f"{argv[0]}: command not found; `invoke preflight` says how to install it")
    else:
        proc = subprocess.run(
            [executable, *argv[1:]], capture_output=True, text=True, timeout=timeout, input=input, env=env,
            **({"stdin": stdin} if stdin is not None else {}))
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
    if check and result.returncode != 0:
        raise CommandError(argv, result.returncode, result.stdout + result.stderr)
    return result
