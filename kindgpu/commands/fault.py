"""`invoke fault`: make a GPU fail (an Xid on a simulated GPU) or a worker go down, on purpose and
recorded (kindgpu.faults); `invoke heal` undoes it."""

from __future__ import annotations

from .. import console, faults, flags, nodes, record
from ..errors import Problem, SpecError
from ..kube import Kube, wait_answering
from ..plan import kind_node_name
from ..report import Reporter
from ..wait import Seen, wait_for

DROP_TIMEOUT = 60  # seconds for kubelet to offer one GPU less


def run(config_file, checked: dict, *, gpu=None, worker=None, index=None, xid=None, down=False,
        as_json=False) -> None:
    """worker, index, xid: checked by the task (flags.parse); None when not given."""
    name = flags.resolve(config_file, checked)["name"]
    reporter = Reporter(quiet=as_json)
    xid = xid if xid is not None else faults.DEFAULT_XID
    if down == bool(gpu or index is not None) or (down and worker is None):
        raise SpecError([Problem("--gpu/--down", "say which fault: --gpu UUID (or --worker N --index I) [--xid N], "
                                                 "or --worker N --down")], title="invalid task flags")
    found = {n.name: n for n in nodes.cluster_nodes(nodes.docker_client(), name)}
    kube = Kube.for_kind_cluster(name)
    wait_answering(kube, name, reporter.note)
    plan = record.require(kube, name)
    injected = faults.read(kube)
    if down:
        node = kind_node_name(name, "worker", worker)
        if node not in found:
            raise SpecError([Problem("--worker", f"{plan.name} has no worker {worker} ({node})",
                                     f"its workers: 1 to {len(plan.workers)}")], title="invalid task flags")
        fault = faults.Fault(faults.WORKER_DOWN, node)
    else:
        fault = faults.gpu_fault(plan, gpu=gpu, worker=worker, index=index, xid=xid)
    if fault in injected:
        reporter.note(f"already injected: {fault.describe()}")
        show(name, injected, fault, as_json)
        return
    now = [*injected, fault]
    faults.write(kube, name, now)  # recorded first: whatever happens next, `invoke heal` knows it
    if fault.kind == faults.WORKER_DOWN:
        found[fault.node].container.stop()
    else:
        before = allocatable(kube, fault.node)
        faults.put_node_file(found[fault.node], now)
        if fault.xid not in faults.APPLICATION_XIDS:
            wait_for(lambda: Seen(done=allocatable(kube, fault.node) < before,
                                  last=f"{fault.node} offers {allocatable(kube, fault.node)}"),
                     what=f"{fault.node} to offer one GPU less", timeout=DROP_TIMEOUT, interval=0.5)
    show(name, now, fault, as_json)


def allocatable(kube, node) -> int:
    return int((kube.core.read_node(node).status.allocatable or {}).get("nvidia.com/gpu", "0"))


def show(name, now, fault, as_json):
    if as_json:
        console.print_json({"cluster": name, "injected": fault.__dict__, "faults": [f.__dict__ for f in now]})
        return
    print(f"injected: {fault.describe()}")
    print("undo with `invoke heal`")
