"""The smoke run's verdict: a pure function of the plan's workers, the pods' logs, the pending
checks and the check rows; kindgpu.payloads.judge judges each log."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import sharing
from ..payloads import judge
from .jobs import cpu_workers


@dataclass
class Outcome:
    level: str
    ok: bool
    message: str
    workers: list = field(default_factory=list)  # dicts: node, expected, seen, ok, message, seconds
    limit: dict = field(default_factory=dict)  # the over-ask check
    seconds: float = 0.0
    cpu_workers: list = field(default_factory=list)  # dicts: node, seen, ok, message, gpuAsk (a limit dict)
    checks: list = field(default_factory=list)  # checks.verdict rows: check, name, subject, ok, message, nodes, uuids
    sharing: str = "not shared"
    fix: str = ""  # what to do about a pod that could not run

    def to_dict(self):
        return {"level": self.level, "ok": self.ok, "message": self.message, "workers": self.workers,
                "cpuWorkers": self.cpu_workers, "limitEnforced": self.limit, "checks": self.checks,
                "sharing": self.sharing, "seconds": round(self.seconds, 2), **({"fix": self.fix} if self.fix else {})}


def verdict(level, workers, logs, failure, limit, asks, seconds, checks=(), time_slicing=None) -> Outcome:
    """The Outcome of a run on `workers` (the plan's, GPU and CPU-only).

    logs: node -> its pod's log; failure: why the level's pods did not all end ("" when they did);
    limit: the over-ask pod's pending check; asks: CPU-only worker key (jobs.cpu_workers) -> the
    check of its pod asking for 1 GPU; checks: checks.verdict rows; time_slicing: the cluster's
    (sharing.TimeSlicing; None: not shared).
    """
    gpu_workers = [w for w in workers if not w.cpu_only]
    cpu = cpu_workers(workers)
    # Where the UUIDs are not known (a cluster kindgpu did not make), the node's GPU count is.
    assignments = {w.node: [g.uuid for g in w.gpus] if all(g.uuid for g in w.gpus) else len(w.gpus)
                   for w in gpu_workers}
    cpu_nodes = [w.node for w in cpu.values()]
    cluster = judge.judge_cluster(level, logs, assignments, cpu_only=cpu_nodes)
    rows = []
    for w in gpu_workers:
        v = cluster.workers[w.node]
        result, _ = judge.parse_result(logs.get(w.node) or "")
        expected = assignments[w.node]
        rows.append({"node": w.node, "worker": w.number,
                     "expected": expected if isinstance(expected, list) else [],
                     "expectedCount": len(w.gpus),
                     "seen": (result or {}).get("uuids") or [g.get("uuid") for g in (result or {}).get("gpus", [])
                                                             if isinstance(g, dict)],
                     "ok": v.ok, "message": v.message})
    cpu_rows = []
    for key, w in cpu.items():
        v = cluster.workers[w.node]
        cpu_rows.append({"node": w.node, "expected": [], "seen": v.details.get("uuids", []),
                         "ok": v.ok, "message": v.message, "gpuAsk": asks[key]})
    ok = (cluster.ok and limit.get("ok", False) and all(a.get("ok") for a in asks.values()) and not failure
          and all(c["ok"] for c in checks))
    message = failure or cluster.message
    for check in checks:
        # A shared GPU seen by two pods is no failure: the verdict says so.
        if not check["ok"] or check["check"] == "shared":
            message += f" | {check['message']}"
    if not limit.get("ok"):
        message += f" | limit: {limit.get('message')}"
    for row in cpu_rows:
        if not row["gpuAsk"].get("ok"):
            message += f" | GPU asked of CPU-only {row['node']}: {row['gpuAsk'].get('message')}"
    return Outcome(level, ok, message, rows, limit, seconds, cpu_rows, list(checks),
                   sharing.describe(time_slicing or sharing.TimeSlicing()))
