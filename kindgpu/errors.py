"""Errors a user sees. Each message says what is wrong and how to fix it."""

import shlex


class KindgpuError(Exception):
    """A failure the user can act on; exit_code is what the task exits with."""

    exit_code = 1


class SpecError(KindgpuError):
    """The cluster spec or task flags are invalid; nothing was created."""

    exit_code = 2

    def __init__(self, problems):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid cluster spec ({len(self.problems)} problem(s)):\n{lines}")


class CommandError(KindgpuError):
    """An external command failed; keeps the quoted command and its output."""

    def __init__(self, argv, returncode, output):
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        super().__init__(
            f"command failed (exit {returncode}): {shlex.join(self.argv)}\n{output.rstrip()}"
        )
