"""The smoke levels: what each one runs and needs. **A level is added or changed here**, then its
script beside this file, its env in payloads/__init__.py and its verdict in judge.py.

Stdlib only, and no kindgpu import: flags, payloads, judge, smoke and nodeimage all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

RESULT_TAG = "KINDGPU-RESULT"  # every payload's final line: "KINDGPU-RESULT {json}"


@dataclass(frozen=True)
class Level:
    name: str
    script: str  # the payload file in this package, mounted into the pod
    image_field: str  # the field of the spec's `smoke` whose image its pods run
    rendezvous: bool = False  # its pods meet through a headless Service (rank 0's DNS name)
    real_gpus: bool = False  # simulated GPUs cannot run it (they have nvidia-smi only)
    shared_memory: bool = False  # its pods get a memory-backed /dev/shm (NCCL between a pod's GPUs)


VISIBILITY = Level("visibility", "visibility.sh", "cudaImage")
COMPUTE = Level("compute", "compute.py", "pytorchImage", real_gpus=True)
COLLECTIVE = Level("collective", "collective.py", "pytorchImage", rendezvous=True, real_gpus=True,
                   shared_memory=True)

BY_NAME = {level.name: level for level in (VISIBILITY, COMPUTE, COLLECTIVE)}
LEVELS = tuple(BY_NAME)
DEFAULT_LEVEL = VISIBILITY.name


def problem(name: str, simulated: bool = False) -> tuple[str, str] | None:
    """The one level check: (what is wrong, the fix) with the level asked for, or None.

    simulated: the cluster's GPUs are simulated, so only levels that need no real GPU can run.
    """
    if name not in BY_NAME:
        return f"unknown smoke level {name!r}", f"choose one of {', '.join(LEVELS)}"
    if simulated and BY_NAME[name].real_gpus:
        fake = [n for n, level in BY_NAME.items() if not level.real_gpus]
        real = [n for n, level in BY_NAME.items() if level.real_gpus]
        return (f"simulated GPUs run the {' and '.join(fake)} level only (asked: {name})",
                f"{' and '.join(real)} need real GPUs; use --level {DEFAULT_LEVEL}")
    return None


def get(name: str) -> Level:
    """The level called `name`; a ValueError when there is none (the payloads' own API)."""
    found = problem(name)
    if found:
        raise ValueError("; ".join(found))
    return BY_NAME[name]


def image(spec: dict, name: str, simulated_image: str | None = None) -> str:
    """The image a level's pods run: the spec's for it, or for simulated GPUs `simulated_image`
    (the simulated plugin's, whose fake nvidia-smi answers like the real one)."""
    return simulated_image or spec["smoke"][get(name).image_field]
