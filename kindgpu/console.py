"""How kindgpu talks to the user: tables and step lines on a terminal, JSON for machines."""

from __future__ import annotations

import json
import os
import sys

# rich is imported where used: tasks that print no table do not pay for it.


def is_terminal(stream=None):
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def console(stream=None):
    from rich.console import Console

    stream = stream or sys.stdout
    tty = is_terminal(stream)
    # Piped output is read by people in logs and by grep: never truncate it.
    return Console(file=stream, force_terminal=tty, no_color=not tty, highlight=False,
                   width=None if tty else 250)


def warn(problems, stream=None):
    """What a valid spec asks for at the user's risk (spec.warnings), on stderr: the warning, then the fix."""
    for w in problems:
        print(f"WARNING: {w.field}: {w.message}\nfix: {w.fix}", file=stream or sys.stderr)


def print_json(doc, stream=None):
    (stream or sys.stdout).write(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def table(title, columns, rows, stream=None):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*[str(cell) for cell in row])
    console(stream).print(t)
