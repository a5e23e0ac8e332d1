"""What preflight is asked, and what it answers: a Request in, Checks (and a Report) out."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem, SpecError

TOOLKIT_CONFIG = Path("/etc/nvidia-container-runtime/config.toml")
SYSCTL_CONF = Path("/etc/sysctl.d/99-kindgpu.conf")


class Status(str, enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"

    def __str__(self):
        return self.value


@dataclass(frozen=True)
class Request:
    """The cluster the user asked for, and where to look on the host.

    proc_root, toolkit_config and sysctl_conf are the host's real paths unless a test
    points them at a directory it made; docker_url is DOCKER_HOST's job when None.
    """

    cluster_name: str = "kindgpu"
    workers: int = 2
    gpus: int = 1  # per worker
    # A worker list: the GPUs of all its workers (CPU-only ones have none); None: workers × gpus.
    gpus_total: int | None = None
    simulate: int | None = None  # number of simulated GPUs; None: real GPUs
    proc_root: Path = Path("/proc")
    toolkit_config: Path = TOOLKIT_CONFIG
    sysctl_conf: Path = SYSCTL_CONF
    docker_url: str | None = None
    node_image: str | None = None  # the spec's nodeImage; None: not checked
    api_address: str = "127.0.0.1"  # the spec's apiServer.address

    def __post_init__(self):
        problems = []
        if self.workers < 1:
            problems.append(Problem("--workers", f"must be at least 1 (got {self.workers})"))
        if self.gpus < 0:
            problems.append(Problem("--gpus", f"must not be negative (got {self.gpus})"))
        if self.simulate is not None and self.simulate < 1:
            problems.append(Problem("--simulate", f"must be at least 1 GPU (got {self.simulate})"))
        if problems:
            raise SpecError(problems, title="invalid preflight request")

    @classmethod
    def from_spec(cls, spec: dict, **paths) -> Request:
        """What a resolved spec asks of this host (request_fields); paths as in the class."""
        return cls(**request_fields(spec), **paths)

    @property
    def nodes(self) -> int:
        return self.workers + 1

    @property
    def gpus_wanted(self) -> int:
        return self.workers * self.gpus if self.gpus_total is None else self.gpus_total

    def to_dict(self):
        return {
            "cluster_name": self.cluster_name,
            "workers": self.workers,
            "gpus_per_worker": self.gpus,
            "simulate": self.simulate,
        }


def request_fields(spec: dict) -> dict:
    """The Request's fields for a resolved spec: the one place a spec becomes what preflight is
    asked (`invoke preflight`, and the preflight step of `up` with the plan's spec). A worker list
    gives its GPUs' total; a count of workers gives workers × gpusPerWorker."""
    listed = spec["workers"] if isinstance(spec["workers"], list) else None
    return {
        "cluster_name": spec["name"],
        "workers": len(listed) if listed else spec["workers"],
        "gpus": max(len(w.get("gpus", [])) for w in listed) if listed else spec["gpusPerWorker"],
        "gpus_total": sum(len(w.get("gpus", [])) for w in listed) if listed else None,
        "simulate": (spec.get("simulate") or {}).get("gpus"),
        "api_address": spec["apiServer"]["address"],
        "node_image": spec["nodeImage"],
    }


@dataclass(frozen=True)
class Check:
    """One answer: what was checked, what was found, and the exact command that fixes it."""

    id: str
    title: str
    status: Status
    found: str
    fix: str = ""  # shell command(s) to copy and run; empty when nothing to do
    hint: str = ""  # one sentence of why, or what else to try
    details: dict = field(default_factory=dict)

    def to_dict(self):
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "found": self.found,
            "fix": self.fix,
            "hint": self.hint,
            "details": self.details,
        }


def overall(checks) -> Status:
    statuses = {c.status for c in checks}
    for s in (Status.FAIL, Status.WARN):
        if s in statuses:
            return s
    return Status.PASS


@dataclass
class Report:
    request: Request
    checks: list[Check]
    inventory: object = None  # kindgpu.inventory.Inventory, when one was read or simulated
    fixed: list[str] = field(default_factory=list)  # what --fix changed
    seconds: float = 0.0

    @property
    def result(self) -> Status:
        return overall(self.checks)

    @property
    def ok(self) -> bool:
        return self.result is not Status.FAIL

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_dict(self):
        return {
            "result": self.result.value,
            "ok": self.ok,
            "request": self.request.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
            "inventory": self.inventory.to_dict() if self.inventory is not None else None,
            "fixed": list(self.fixed),
            "seconds": round(self.seconds, 3),
        }


def version_tuple(text):
    """'v1.32.4-dispatcher' -> (1, 32, 4); missing parts are 0; None when there is no number."""
    m = re.search(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", text or "")
    if not m:
        return None
    return tuple(int(g or 0) for g in m.groups())


def fmt_version(t):
    return ".".join(str(p) for p in t)
