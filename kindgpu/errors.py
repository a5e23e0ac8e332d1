"""Errors a user sees. Each says what is wrong and, on a line of its own, how to fix it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass


class KindgpuError(Exception):
    """A failure the user can act on; exit_code is what the task exits with."""

    exit_code = 1

    def __init__(self, message, fix=None):
        super().__init__(message)
        self.message = message
        self.fix = fix


def user_text(err):
    """The one format users read: `ERROR: <message>`, then `fix: <fix>` on its own line."""
    text = f"ERROR: {err}"
    fix = getattr(err, "fix", None)
    return f"{text}\nfix: {fix}" if fix else text


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the spec or a flag. field is data ("workers[1].labels.x", "--timeout")."""

    field: str
    message: str
    fix: str | None = None

    def __str__(self):
        return f"{self.field}: {self.message}" + (f"\n    fix: {self.fix}" if self.fix else "")


class SpecError(KindgpuError):
    """The cluster spec or task flags are invalid; nothing was created. Exit 2."""

    exit_code = 2

    def __init__(self, problems, title="invalid cluster spec"):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{title} ({len(self.problems)} problem(s)):\n{lines}")


class CommandError(KindgpuError):
    """An external command failed; keeps the quoted command and its output."""

    def __init__(self, argv, returncode, output):
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        super().__init__(
            f"command failed (exit {returncode}): {shlex.join(self.argv)}\n{output.rstrip()}"
        )
