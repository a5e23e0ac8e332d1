"""The one way kindgpu runs an external command."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import CommandError


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def run(argv: Sequence[str | os.PathLike], *, check: bool = True, timeout: float | None = None,
        input: str | None = None, env: Mapping[str, str] | None = None) -> Result:
    """Run argv without a shell; raise CommandError on non-zero exit when check is set.

    A missing executable is reported as exit 127, like a shell would.
    """
    argv = [str(a) for a in argv]
    if shutil.which(argv[0]) is None:
        result = Result(argv, 127, "", f"{argv[0]}: command not found; `invoke preflight` says how to install it")
    else:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, input=input, env=env
        )
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
    if check and result.returncode != 0:
        raise CommandError(argv, result.returncode, result.stdout + result.stderr)
    return result
