"""The one way a step is reported: a spinner on a terminal, then one line per step.

  ✓ create  cluster gpu-cluster does not exist (41.2s)
  – label   up to date
  ✗ device-plugin  timed out ... (300.0s)
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from . import console

DONE, FAILED, SKIPPED = "✓", "✗", "–"


class Reporter:
    def __init__(self, stream=None, quiet=False):
        self.stream = stream or sys.stdout
        self.quiet = quiet  # --json: lines go to stderr, stdout stays machine-readable

    def _console(self):
        return console.console(sys.stderr if self.quiet else self.stream)

    def line(self, mark, name, text, seconds=None):
        took = f" ({seconds:.1f}s)" if seconds is not None else ""
        self._console().print(f" {mark} {name}  {text}{took}", markup=False)

    def skipped(self, name, why):
        self.line(SKIPPED, name, why)

    def note(self, text):
        self._console().print(text, markup=False)

    @contextmanager
    def step(self, name, why):
        """Run the body under a spinner (terminal only); print ✓ or ✗ with the time it took."""
        out = sys.stderr if self.quiet else self.stream
        start = time.monotonic()
        status = None
        if console.is_terminal(out):
            status = self._console().status(f"{name}: {why}")
            status.start()
        progress = StepProgress(status, name)
        try:
            yield progress
        except BaseException as err:
            if status:
                status.stop()
            self.line(FAILED, name, f"{why}: {str(err).splitlines()[0] if str(err) else type(err).__name__}",
                      time.monotonic() - start)
            raise
        if status:
            status.stop()
        self.line(DONE, name, why, time.monotonic() - start)


class StepProgress:
    """What a running step tells the spinner (nothing when not on a terminal)."""

    def __init__(self, status, name):
        self.status, self.name = status, name

    def __call__(self, text):
        if self.status:
            self.status.update(f"{self.name}: {text}")
