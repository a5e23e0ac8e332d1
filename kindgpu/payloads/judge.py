"""Judge smoke payload output: a pod's log text in, a verdict out. Stdlib only.

Every payload ends with one line ``KINDGPU-RESULT {json}``. The judge trusts
nothing the payload concluded by itself: it re-checks the numbers in that line
against what the smoke task expects (the worker's assigned UUIDs, its GPU
count, the world size). A missing, garbled or failing result line, a Python
traceback anywhere in the log, or (collective) an NCCL P2P/SHM connection
between ranks of different workers fails the verdict.

Per pod:   judge_visibility(log, expected_uuids, worker=None, expect_none=False)
           judge_compute(log, expected_count=None, expected_uuids=None, worker=None)
           judge_collective(log, world_size=None, local_gpus=None, nnodes=None, worker=None)
           judge(level, log, **expected)
Per run:   judge_cluster(level, logs, assignments, cpu_only=()) -> ClusterVerdict
Others:    judge_some_of(log, allowed_uuids, count, worker=None)  (a pod placed by a nodeSelector)
           judge_shared(logs, allowed_uuids, replicas, worker)    (pods given time-slicing replicas)

A CPU-only worker runs the visibility payload without a GPU at every level and
must see none: nvidia-smi missing, or finding no device, counts as none; any
GPU UUID or /dev/nvidiaN device node in its pod fails it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from .levels import COLLECTIVE, COMPUTE, RESULT_TAG, VISIBILITY, get

TRACEBACK_MARK = "Traceback (most recent call last)"
UUID_RE = re.compile(r"^(GPU|MIG)-[0-9A-Za-z-]+$")
# nvidia-smi exit statuses that mean "no GPU here" for a pod given none: the shell's
# "command not found" (no runtime or plugin put nvidia-smi in), and NVML's "No devices were found".
SMI_ABSENT, SMI_NO_DEVICES = 127, 6
# float64 matrix products: the compute payload's own tolerance, relative to max |reference|.
COMPUTE_REL_TOLERANCE = 1e-9

# NCCL_DEBUG=INFO connection lines, e.g.
#   NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read
#   NCCL INFO Channel 00/0 : 1[1] -> 0[0] [send] via NET/Socket/0
#   NCCL INFO Channel 00 : 0[0] -> 1[1] via SHM/direct/direct
CHANNEL_RE = re.compile(
    r"NCCL INFO Channel\s+(\d+)(?:/\d+)?\s*:\s*(\d+)\[[^\]]*\]\s*->\s*(\d+)\[[^\]]*\]"
    r"(?:\s*\[(send|receive)\])?\s+via\s+(\S+)"
)
# NCCL_DEBUG=INFO topology summary: "comm 0x... rank 0 nRanks 2 nNodes 2 localRanks 1 localRank 0 MNNVL 0"
COMM_RE = re.compile(r"NCCL INFO comm \S+ rank (\d+) nRanks (\d+) nNodes (\d+) localRanks (\d+)")
LOCAL_ONLY_TRANSPORTS = ("P2P", "SHM")  # cannot work between containers


@dataclass
class Verdict:
    ok: bool
    message: str
    details: dict = field(default_factory=dict)

    def __bool__(self):
        return self.ok


@dataclass
class ClusterVerdict:
    ok: bool
    message: str
    workers: dict  # worker name -> Verdict
    details: dict = field(default_factory=dict)

    def __bool__(self):
        return self.ok


class _Problems:
    def __init__(self):
        self.items = []

    def add(self, text):
        if text not in self.items:
            self.items.append(text)

    def verdict(self, what, details, ok_message):
        if self.items:
            return Verdict(False, f"{what}: " + "; ".join(self.items), details)
        return Verdict(True, f"{what}: {ok_message}", details)


def _label(level, worker, result):
    name = worker or (result or {}).get("worker") or "?"
    return f"{level} on {name}"


def parse_result(log):
    """The last KINDGPU-RESULT line of a log, decoded. Returns (dict or None, problem or None)."""
    if not isinstance(log, str):
        return None, "no log text"
    found = None
    for line in log.splitlines():
        at = line.find(RESULT_TAG)
        if at >= 0:
            found = line[at + len(RESULT_TAG):].strip()
    if found is None:
        return None, f"no {RESULT_TAG} line in the log (the payload did not finish)"
    try:
        result = json.loads(found)
    except ValueError as exc:
        return None, f"garbled {RESULT_TAG} line ({exc.msg}): {found[:120]!r}"
    if not isinstance(result, dict):
        return None, f"garbled {RESULT_TAG} line: not a JSON object"
    return result, None


def _common(log, level, problems):
    """Parse and run the checks every level shares; returns the result dict or None."""
    result, problem = parse_result(log)
    if problem:
        problems.add(problem)
        return None
    if result.get("level") != level:
        problems.add(f"result line is for level {result.get('level')!r}, expected {level!r}")
    if TRACEBACK_MARK in log:
        problems.add("the log holds a Python traceback")
    if result.get("ok") is not True:
        err = result.get("error") or "no reason given"
        problems.add(f"payload reported failure: {err}")
    return result


def _uuid_set_problems(seen, expected, what="visible"):
    """Duplicates, missing and extra UUIDs between a list seen and a list expected."""
    problems = []
    counts = {}
    for u in seen:
        counts[u] = counts.get(u, 0) + 1
    dups = sorted(u for u, c in counts.items() if c > 1)
    if dups:
        problems.append(f"listed more than once: {', '.join(dups)}")
    if expected is not None:
        want = set(expected)
        missing = sorted(want - set(counts))
        extra = sorted(set(counts) - want)
        if missing:
            problems.append(f"assigned but not {what}: {', '.join(missing)}")
        if extra:
            problems.append(f"{what} but not assigned: {', '.join(extra)}")
    return problems


# ---------------------------------------------------------------- level 1


def judge_visibility(log, expected_uuids, worker=None, expect_none=False, expected_count=None) -> Verdict:
    """Pass iff the pod's nvidia-smi listed exactly expected_uuids: no duplicate, none missing or extra.

    expect_none: a CPU-only worker's pod, given no GPU; pass iff it sees none (see _judge_none).
    expected_count: on a cluster kindgpu did not make, only the number of GPUs the node offers is
    known (expected_uuids None): pass iff the pod lists exactly that many distinct GPUs.
    """
    if expect_none:
        return _judge_none(log, worker)
    problems = _Problems()
    result = _common(log, VISIBILITY.name, problems)
    details = {"expected": sorted(expected_uuids or [])}
    if result is not None:
        uuids = _listed_uuids(result, problems, details)
        bad = [u for u in uuids if not UUID_RE.match(u)]
        if bad:
            problems.add(f"not GPU UUIDs: {', '.join(map(repr, bad))}")
        if result.get("bad_lines"):
            problems.add(f"{result['bad_lines']} line(s) of nvidia-smi output are not GPU UUIDs")
        if not uuids:
            problems.add("no GPU visible")
        if expected_uuids is None and expected_count is None:
            problems.add("no expected UUIDs given to judge against")
        if expected_uuids is None and expected_count is not None:
            details["expected_count"] = expected_count
            if len(uuids) != expected_count:
                problems.add(f"sees {len(uuids)} GPU(s), but its node offers {expected_count}")
        for p in _uuid_set_problems(uuids, expected_uuids):
            problems.add(p)
        _check_echoed(log, uuids, problems)
    n = len(details.get("uuids", []))
    ok = f"sees its {n} assigned GPU(s)" if expected_uuids is not None else f"sees the {n} GPU(s) its node offers"
    return problems.verdict(_label(VISIBILITY.name, worker, result), details, ok)


def _check_echoed(log, uuids, problems):
    """The human lines must agree with the result line (catches a doctored or cut log)."""
    echoed = set(re.findall(r"\|\s*((?:GPU|MIG)-[0-9A-Za-z-]+)\s*$", log, flags=re.M))
    if echoed and echoed != set(uuids):
        problems.add("the UUIDs echoed in the log differ from the result line")


def _listed_uuids(result, problems, details):
    """The UUIDs a visibility result lists, kept in details; a failed nvidia-smi is a problem."""
    uuids = details["uuids"] = _result_uuids(result, problems)
    if result.get("rc") not in (0, None):
        problems.add(f"nvidia-smi exited {result.get('rc')}")
    return uuids


def _result_uuids(result, problems):
    uuids = result.get("uuids")
    if not isinstance(uuids, list) or not all(isinstance(u, str) for u in uuids):
        problems.add("result line has no list of UUIDs")
        return []
    return list(uuids)


def _judge_none(log, worker):
    """A pod on a CPU-only worker, given no GPU: no UUID listed, no GPU device node, and an
    nvidia-smi that listed nothing, is missing, or found no device (anything else may hide a GPU)."""
    problems = _Problems()
    result = _common(log, VISIBILITY.name, problems)
    details = {"expected": []}
    if result is not None:
        uuids = _result_uuids(result, problems)
        details["uuids"] = uuids
        if result.get("expect_none") is not True:
            problems.add("the payload did not run with KINDGPU_EXPECT_NONE=1")
        if uuids:
            problems.add(f"{len(uuids)} GPU(s) visible on a CPU-only worker: {', '.join(uuids)}")
        if result.get("bad_lines"):
            problems.add(f"{result['bad_lines']} line(s) of nvidia-smi output are not GPU UUIDs")
        rc = result.get("rc")
        if rc == SMI_ABSENT:
            details["nvidia_smi"] = "absent"
        elif rc == SMI_NO_DEVICES and re.search(r"^\s*\|\s*No devices were found", log, flags=re.M):
            details["nvidia_smi"] = "no devices"
        elif rc == 0:
            details["nvidia_smi"] = "listed none"
        else:
            problems.add(f"nvidia-smi exited {rc}: cannot tell whether a GPU is visible")
        devices = result.get("devices")
        if not isinstance(devices, list):
            problems.add("result line does not list the pod's GPU device nodes")
        elif devices:
            problems.add(f"GPU device node(s) in the pod: {', '.join(map(str, devices))}")
        _check_echoed(log, uuids, problems)
    how = details.get("nvidia_smi", "?")
    return problems.verdict(_label("cpu-only visibility", worker, result), details, f"sees no GPU (nvidia-smi {how})")


def judge_some_of(log, allowed_uuids, count, worker=None, what=VISIBILITY.name) -> Verdict:
    """Pass iff a pod asking `count` GPU(s) of a worker saw exactly that many, each one of the
    worker's (allowed_uuids): a pod placed by a nodeSelector, or given a time-slicing replica."""
    problems = _Problems()
    result = _common(log, VISIBILITY.name, problems)
    details = {"allowed": sorted(allowed_uuids or [])}
    if result is not None:
        uuids = _listed_uuids(result, problems, details)
        if len(uuids) != count:
            problems.add(f"{len(uuids)} GPU(s) visible, asked {count}")
        for p in _uuid_set_problems(uuids, None):
            problems.add(p)
        foreign = sorted(set(uuids) - set(allowed_uuids or []))
        if foreign:
            problems.add(f"not the worker's GPU(s): {', '.join(foreign)}")
        _check_echoed(log, uuids, problems)
    seen = ", ".join(details.get("uuids", []))
    return problems.verdict(_label(what, worker, result), details, f"sees {seen}")


def judge_shared(logs, allowed_uuids, replicas, worker) -> Verdict:
    """Pods on one time-sliced worker, given one replica each: each must see one of the worker's
    GPUs. Two seeing the same GPU is what time-slicing does, and the verdict says so."""
    verdicts = [judge_some_of(log, allowed_uuids, 1, worker, "time-slicing") for log in logs]
    failed = [v.message for v in verdicts if not v.ok]
    seen = [u for v in verdicts for u in v.details.get("uuids", [])]
    details = {"uuids": seen, "replicas": replicas, "pods": len(logs)}
    if failed or len(logs) < 2:
        return Verdict(False, " | ".join(failed) or f"time-slicing on {worker}: {len(logs)} pod log(s), expected 2",
                       details)
    shared = sorted({u for u in seen if seen.count(u) > 1})
    if shared:
        how = f"{len(logs)} pods shared {', '.join(shared)}, as time-slicing allows"
    else:
        how = f"{len(logs)} pods got GPUs {', '.join(seen)}"
    details["shared"] = shared
    return Verdict(True, f"time-slicing on {worker} ({replicas} replicas per GPU): {how}", details)


def judge_shared_claim(logs, allowed_uuids, worker) -> Verdict:
    """Pods that reference one ResourceClaim for one GPU (DRA): each must see exactly one of the
    worker's GPUs, and all of them the same one: the claim's."""
    verdicts = [judge_some_of(log, allowed_uuids, 1, worker, "shared claim") for log in logs]
    failed = [v.message for v in verdicts if not v.ok]
    seen = [u for v in verdicts for u in v.details.get("uuids", [])]
    details = {"uuids": seen, "pods": len(logs)}
    if failed or len(logs) < 2:
        return Verdict(False, " | ".join(failed) or f"shared claim on {worker}: {len(logs)} pod log(s), expected 2",
                       details)
    if len(set(seen)) != 1:
        return Verdict(False, f"shared claim on {worker}: {len(logs)} pods referencing one ResourceClaim saw "
                              f"different GPUs ({', '.join(seen)}), not the claim's one", details)
    return Verdict(True, f"shared claim on {worker}: {len(logs)} pods referencing one ResourceClaim all saw "
                         f"{seen[0]}", details)


# ---------------------------------------------------------------- level 2


def _num(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def judge_compute(log, expected_count=None, expected_uuids=None, worker=None) -> Verdict:
    """Pass iff every visible GPU's float64 product matched the CPU reference, on the expected GPUs."""
    problems = _Problems()
    result = _common(log, COMPUTE.name, problems)
    details = {}
    if result is not None:
        gpus = result.get("gpus")
        if not isinstance(gpus, list) or not all(isinstance(g, dict) for g in gpus):
            problems.add("result line has no list of GPUs")
            gpus = []
        details["gpus"] = [
            {k: g.get(k) for k in ("index", "uuid", "name", "max_abs_err", "matmul_ms", "gflops")} for g in gpus
        ]
        if not gpus:
            problems.add("no GPU computed")
        if expected_count is not None and len(gpus) != expected_count:
            problems.add(f"{len(gpus)} GPU(s) computed, expected {expected_count}")
        if isinstance(result.get("count"), int) and result["count"] != len(gpus):
            problems.add(f"{result['count']} GPU(s) visible but {len(gpus)} reported")
        for g in gpus:
            name = f"GPU {g.get('index')}"
            err, scale = g.get("max_abs_err"), g.get("ref_max_abs")
            if g.get("error"):
                problems.add(f"{name}: {g['error']}")
            if not (_num(err) and _num(scale)):
                problems.add(f"{name}: no error measure reported")
                continue
            tol = COMPUTE_REL_TOLERANCE * max(scale, 1.0)
            if err > tol:
                problems.add(f"{name}: product off by {err:.3g} (tolerance {tol:.3g})")
            if not g.get("finite", False):
                problems.add(f"{name}: non-finite values in the product")
            if not g.get("ok"):
                problems.add(f"{name}: payload marked it failed")
            if not (_num(g.get("matmul_ms")) and g["matmul_ms"] > 0):
                problems.add(f"{name}: no timing reported")
        seen = [g.get("uuid") for g in gpus if g.get("uuid")]
        if expected_uuids is not None and len(seen) == len(gpus):
            for p in _uuid_set_problems(seen, expected_uuids, what="computed on"):
                problems.add(p)
        elif seen:
            for p in _uuid_set_problems(seen, None):
                problems.add(p)
    times = ", ".join(f"GPU {g['index']} {g['matmul_ms']} ms" for g in details.get("gpus", []) if g.get("matmul_ms"))
    return problems.verdict(_label(COMPUTE.name, worker, result), details, f"products correct ({times})")


# ---------------------------------------------------------------- level 3


def nccl_connections(log):
    """NCCL's channel connections in a log: list of (src_rank, dst_rank, transport), e.g. (0, 1, 'NET/Socket/0')."""
    return [(int(m.group(2)), int(m.group(3)), m.group(5)) for m in CHANNEL_RE.finditer(log or "")]


def nccl_topology(log):
    """NCCL's view per rank from 'comm ... nRanks nNodes localRanks' lines: {rank: (nRanks, nNodes, localRanks)}."""
    return {int(m.group(1)): (int(m.group(2)), int(m.group(3)), int(m.group(4)))
            for m in COMM_RE.finditer(log or "")}


def judge_collective(log, world_size=None, local_gpus=None, nnodes=None, worker=None) -> Verdict:
    """Pass iff the all-reduce sum was exact on every rank and ranks of different workers used no P2P/SHM.

    world_size: total ranks (all workers' GPUs); local_gpus: this worker's GPU
    count; nnodes: number of workers (NCCL must count that many nodes).
    """
    problems = _Problems()
    result = _common(log, COLLECTIVE.name, problems)
    details = {}
    if result is not None:
        for key in ("world_size", "busbw_gbps", "algbw_gbps", "time_ms_max", "size_bytes", "mismatches_total", "nccl"):
            details[key] = result.get(key)
        if result.get("rc") != 0:
            problems.add(f"torchrun exited {result.get('rc')}")
        if world_size is not None and result.get("world_size") != world_size:
            problems.add(f"world size {result.get('world_size')}, expected {world_size}")
        if nnodes is not None and result.get("nnodes") != nnodes:
            problems.add(f"{result.get('nnodes')} worker(s) in the job, expected {nnodes}")
        mism = result.get("mismatches_total")
        if mism != 0:
            problems.add("all-reduce sum not checked" if mism is None else f"all-reduce sum wrong in {mism} element(s)")
        if result.get("max_abs_err_total") not in (0, 0.0):
            problems.add(f"all-reduce sum off by up to {result.get('max_abs_err_total')}")
        if not (_num(result.get("busbw_gbps")) and _num(result.get("algbw_gbps")) and result["algbw_gbps"] > 0):
            problems.add("no bandwidth reported")
        local = result.get("local_ranks")
        if not isinstance(local, list) or not local:
            problems.add("no local rank reported")
            local = []
        if local_gpus is not None and len(local) != local_gpus:
            problems.add(f"{len(local)} local rank(s), expected one per GPU ({local_gpus})")
        for r in local:
            if not isinstance(r, dict) or not r.get("ok") or r.get("mismatches") not in (0, None):
                problems.add(f"rank {r.get('rank') if isinstance(r, dict) else '?'} failed")
        rank_map = result.get("rank_map") or {}
        details["rank_map"] = rank_map
        details["uuids"] = result.get("uuids") or {}
        uuids = [u for u in (result.get("uuids") or {}).values() if u]
        for p in _uuid_set_problems(uuids, None):
            problems.add(f"one GPU in two ranks: {p}")
        # Transports: ranks of different workers must talk over the network.
        conns = nccl_connections(log)
        details["transports"] = sorted({t for _, _, t in conns})
        cross = sorted({(a, b, t) for a, b, t in conns
                        if rank_map.get(str(a)) is not None and rank_map.get(str(b)) is not None
                        and rank_map[str(a)] != rank_map[str(b)]})
        details["cross_worker_transports"] = sorted({t for _, _, t in cross})
        bad = [(a, b, t) for a, b, t in cross if t.split("/")[0] in LOCAL_ONLY_TRANSPORTS]
        if bad:
            a, b, t = bad[0]
            problems.add(f"NCCL connected ranks of different workers through {t} "
                         f"({a}->{b}; {len(bad)} such connection(s)): needs NET across containers")
        topo = nccl_topology(log)
        if topo:
            details["nccl_nodes"] = sorted({v[1] for v in topo.values()})
            expected_nodes = nnodes if nnodes is not None else len(set(rank_map.values())) or None
            if expected_nodes is not None and any(v[1] != expected_nodes for v in topo.values()):
                problems.add(f"NCCL counted {details['nccl_nodes']} node(s), expected {expected_nodes} "
                             "(one per worker: NCCL_HOSTID not distinct?)")
    transports = details.get("cross_worker_transports")
    ok_msg = (f"sum exact over {details.get('world_size')} rank(s), busbw {details.get('busbw_gbps')} GB/s"
              + (f" via {', '.join(transports)}" if transports else ""))
    return problems.verdict(_label(COLLECTIVE.name, worker, result), details, ok_msg)


def judge(level, log, **expected) -> Verdict:
    """Dispatch on level. visibility: expected_uuids (or expect_none); compute: expected_count, expected_uuids;
    collective: world_size, local_gpus, nnodes. Unknown keywords are ignored."""
    chosen = get(level)  # a ValueError for an unknown level
    if chosen is VISIBILITY:
        return judge_visibility(log, expected.get("expected_uuids"), worker=expected.get("worker"),
                                expect_none=expected.get("expect_none", False),
                                expected_count=expected.get("expected_count"))
    if chosen is COMPUTE:
        return judge_compute(log, expected.get("expected_count"), expected.get("expected_uuids"),
                             worker=expected.get("worker"))
    return judge_collective(log, expected.get("world_size"), expected.get("local_gpus"),
                            expected.get("nnodes"), worker=expected.get("worker"))


# ---------------------------------------------------------------- a whole run


def judge_cluster(level, logs, assignments, cpu_only=()) -> ClusterVerdict:
    """Judge every worker's pod and what only the run as a whole shows.

    logs: worker name -> pod log text (a worker without a log fails).
    assignments: GPU worker name -> its assigned GPU UUIDs, in node-rank order for collective; or
    its GPU count alone, on a cluster kindgpu did not make (where the node's UUIDs are not known).
    cpu_only: names of CPU-only workers; their pods ran the visibility payload (whatever the
    level) and must see no GPU.
    Cross-worker checks: no GPU UUID reported by two workers; collective pods agree
    on world size and rank map.
    """
    verdicts = {}
    counts = {name: given if isinstance(given, int) else len(given) for name, given in assignments.items()}
    world = sum(counts.values())
    for name, given in assignments.items():
        log = logs.get(name)
        if log is None:
            verdicts[name] = Verdict(False, f"{level} on {name}: no pod log", {})
            continue
        verdicts[name] = judge(level, log, worker=name,
                               expected_uuids=None if isinstance(given, int) else list(given),
                               expected_count=counts[name], world_size=world, local_gpus=counts[name],
                               nnodes=len(assignments))
    for name in cpu_only:
        log = logs.get(name)
        verdicts[name] = (judge_visibility(log, [], worker=name, expect_none=True) if log is not None
                          else Verdict(False, f"cpu-only visibility on {name}: no pod log", {}))
    problems = []
    for name in logs:
        if name not in assignments and name not in cpu_only:
            problems.append(f"log from {name}, which is not a worker of this run")
    owners = {}
    for name in [*assignments, *cpu_only]:
        result, _ = parse_result(logs.get(name) or "")
        if not result:
            continue
        if level == VISIBILITY.name or name in cpu_only:
            seen = result.get("uuids") or []
        elif level == COMPUTE.name:
            seen = [g.get("uuid") for g in result.get("gpus") or [] if isinstance(g, dict)]
        else:
            seen = [r.get("uuid") for r in result.get("local_ranks") or [] if isinstance(r, dict)]
        for u in seen:
            if isinstance(u, str) and u:
                owners.setdefault(u, set()).add(name)
    shared = {u: sorted(ws) for u, ws in owners.items() if len(ws) > 1}
    for u, ws in sorted(shared.items()):
        problems.append(f"GPU {u} seen on {len(ws)} workers ({', '.join(ws)})")
    if level == COLLECTIVE.name:
        maps = {}
        for name in assignments:
            result, _ = parse_result(logs.get(name) or "")
            if result and result.get("rank_map"):
                maps[name] = json.dumps(result["rank_map"], sort_keys=True)
        if len(set(maps.values())) > 1:
            problems.append("workers disagree on the rank map")
    failed = [n for n, v in verdicts.items() if not v.ok]
    ok = not failed and not problems
    if ok:
        message = f"{level}: all {len(verdicts)} worker(s) passed" + (
            f" ({len(cpu_only)} CPU-only, seeing no GPU)" if cpu_only else "")
    else:
        parts = [verdicts[n].message for n in failed] + problems
        message = f"{level}: FAILED: " + " | ".join(parts)
    details = {"shared_gpus": shared, "world_size": world}
    return ClusterVerdict(ok, message, verdicts, details)
