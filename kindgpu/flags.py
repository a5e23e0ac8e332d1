"""Task flags: checked first, then turned into spec fields and a plan (the one place flags meet the spec).

Every flag with a closed set of values or a number is checked in its task before any spec
file, cluster or host is looked at: a bad one exits 2 naming the flag, even with no cluster.
A task checks its flags once (parse); the command it calls takes the checked values, and the
spec they make is validated once on the way to a plan (resolve, then plan_for).
"""

from __future__ import annotations

import math

from . import faults, imageref, paths, plan, runner, spec
from .errors import Problem, SpecError
from .payloads import levels
from .steps import pipeline

# task flag -> spec field
FLAG_FIELDS = {"name": "name", "workers": "workers", "gpus": "gpusPerWorker",
               "simulate": "simulate", "node_image": "nodeImage"}
SMOKE_TIMEOUT = 300  # seconds, when --timeout is not given


def flag_name(flag):
    return f"--{flag.replace('_', '-')}"


def positive(flag, value, whole=False):
    kind = "a whole number" if whole else "a number"
    try:
        number = int(value) if whole else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number) or number <= 0:
        return value, [Problem(flag, f"must be {kind} greater than 0, got {value!r}")]
    return number, []


def count(flag, value):
    return positive(flag, value, whole=True)


def index(flag, value):
    """A place counted from 0 (`invoke fault --index`)."""
    if str(value).isdigit():
        return int(value), []
    return value, [Problem(flag, f"must be a whole number from 0, got {value!r}")]


def effect(flag, value):
    """A device taint's effect (`invoke fault --effect`), as Kubernetes spells them."""
    if value in faults.EFFECTS:
        return value, []
    return value, [Problem(flag, f"must be one of {', '.join(faults.EFFECTS)}, got {value!r}")]


def seconds(flag, value):
    return positive(flag, value)


def level(flag, value):
    found = levels.problem(value)
    return value, [Problem(flag, *found)] if found else []


def image_references(flag, value):
    """--image, and `invoke load`'s comma-separated names: Docker's reference grammar (kindgpu.imageref)."""
    names = [n.strip() for n in str(value).split(",")]
    found = [Problem(flag, f"{n!r}: {why}", spec.IMAGE_FIX) for n in names if (why := imageref.problem(n))]
    return value, found


def step_names(flag, value):
    """--force (repeatable) and --until name steps of `invoke up`."""
    names = [value] if isinstance(value, str) else list(value)
    return value, runner.step_problems(flag, names, [s.name for s in pipeline()])


# task flag -> check(flag as typed, value) -> (value as used, problems)
CHECKS = {"workers": count, "gpus": count, "simulate": count, "timeout": seconds, "level": level,
          "worker": count, "xid": count, "index": index, "effect": effect,
          "force": step_names, "until": step_names,
          "config": lambda flag, value: (value, paths.readable_file(flag, value)),
          "kubeconfig": lambda flag, value: (value, paths.readable_file(flag, value)),
          "junit": lambda flag, value: (value, paths.writable_file(flag, value)),
          "image": image_references, "images": image_references}


def parse(**given):
    """A task's flags, all checked together; numbers come back as numbers, unset flags as given.

    Raises SpecError naming each bad flag.
    """
    out, problems = {}, paths.state_dir_problems()
    for flag, value in given.items():
        if value == "":  # given, but empty: never "use the default"
            problems.append(Problem(flag_name(flag), "is empty", "give it a value, or leave the flag out"))
        elif flag in CHECKS and value not in (None, [], ()):
            value, found = CHECKS[flag](flag_name(flag), value)
            problems += found
        out[flag] = value
    if problems:
        raise SpecError(problems, title="invalid task flags")
    return out


def spec_fields(checked: dict) -> dict:
    """The spec flags among checked flags (parse's answer), as spec fields; unset flags are left out."""
    return {FLAG_FIELDS[flag]: value for flag, value in checked.items()
            if flag in FLAG_FIELDS and value is not None and value != ""}


def to_flags(**given):
    """Spec flags as spec fields, checked (see parse); unset flags are left out."""
    return spec_fields(parse(**given))


def resolve(config, checked: dict) -> dict:
    """The spec from the spec file and the checked flags, validated (spec.resolve); no host looked at."""
    return spec.resolve(config_file=config, flags=spec_fields(checked))


def plan_for(config, checked: dict) -> plan.Plan:
    """The plan: the spec resolved and validated once, then the host's GPUs allocated."""
    return plan.allocate_plan(resolve(config, checked))


def plan_from_flags(config=None, **given):
    return plan_for(config, parse(**given))
