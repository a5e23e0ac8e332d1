"""Turn task flags into a plan: the one place flags meet the spec."""

from __future__ import annotations

from . import plan, spec
from .errors import SpecError

# task flag -> spec field
FLAG_FIELDS = {"name": "name", "workers": "workers", "gpus": "gpusPerWorker",
               "simulate": "simulate", "node_image": "nodeImage"}
INT_FLAGS = {"workers", "gpus", "simulate"}


def to_flags(**given):
    """Flags as spec fields; a non-integer count is a spec problem naming its flag."""
    flags, problems = {}, []
    for flag, value in given.items():
        if value is None or value == "":
            continue
        if flag in INT_FLAGS:
            try:
                value = int(value)
            except (TypeError, ValueError):
                option = f"--{flag.replace('_', '-')}"
                problems.append(f"{FLAG_FIELDS[flag]}: {option} must be a whole number, got {value!r}")
                continue
        flags[FLAG_FIELDS[flag]] = value
    if problems:
        raise SpecError(problems)
    return flags


def plan_from_flags(config=None, **given):
    doc = spec.resolve(config_file=config, flags=to_flags(**given))
    return plan.make_plan(doc)
