"""`invoke fault`: make a GPU fail (an Xid on a simulated GPU, a device taint under DRA), take a GPU's
device node away, or make a worker go down, on purpose and recorded (kindgpu.faults); `invoke heal`
undoes it."""

from __future__ import annotations

from .. import console, faults, flags, nodes, record
from ..errors import Problem, SpecError
from ..kube import Kube, wait_answering
from ..plan import kind_node_name
from ..report import Reporter
from ..wait import Seen, wait_for

DROP_TIMEOUT = 60  # seconds for kubelet to offer one GPU less, or a ResourceSlice to show the fault


def run(config_file, checked: dict, *, gpu=None, worker=None, index=None, xid=None, down=False,
        remove_device=False, effect=None, via_api=False, as_json=False) -> None:
    """worker, index, xid, effect: checked by the task (flags.parse); None when not given."""
    name = flags.resolve(config_file, checked)["name"]
    reporter = Reporter(quiet=as_json)
    xid = xid if xid is not None else faults.DEFAULT_XID
    which = [down, remove_device, bool(gpu or (index is not None and not remove_device))]
    if sum(which) != 1 or ((down or remove_device) and worker is None) or (remove_device and index is None):
        raise SpecError([Problem("--gpu/--down/--remove-device",
                                 "say which fault: --gpu UUID (or --worker N --index I) [--xid N] [--effect E] "
                                 "[--via-api], --worker N --index I --remove-device, or --worker N --down")],
                        title="invalid task flags")
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
    elif remove_device:
        owner, gpu_ = faults.find_gpu(plan, gpu=None, worker=worker, index=index)
        fault = next((f for f in injected if f.kind == faults.DEVICE_REMOVED and f.gpu == gpu_.uuid), None)
    else:
        kubernetes = plan.runtime.kubernetes or kube.server_version()  # a plan read back does not know it
        fault = faults.gpu_fault(plan, gpu=gpu, worker=worker, index=index, xid=xid, effect=effect, via_api=via_api,
                                 kubernetes=kubernetes)
    if fault in injected:
        reporter.note(f"already injected: {fault.describe()}")
        show(name, injected, fault, as_json)
        return
    if fault is None:  # a device to remove: what it was is read as it goes
        before = offered(kube, plan, owner.node)
        fault = faults.remove_device(found[owner.node], plan, worker, index)
        now = [*injected, fault]
        faults.write(kube, name, now)
        if faults.simulated_device(fault.device):
            wait_offered_less(kube, plan, fault.node, before)
        show(name, now, fault, as_json)
        return
    if fault.via == faults.VIA_RULE:
        api = faults.rule_api(kube.served_versions("resource.k8s.io", faults.RULE_PLURAL), kubernetes)
        fault = faults.Fault(**{**fault.__dict__, "api": api})
    now = [*injected, fault]
    faults.write(kube, name, now)  # recorded first: whatever happens next, `invoke heal` knows it
    if fault.kind == faults.WORKER_DOWN:
        found[fault.node].container.stop()
    elif fault.via == faults.VIA_RULE:
        kube.create_raw(fault.api, faults.RULE_PLURAL, faults.taint_rule(fault, fault.api, name))
    else:
        before = offered(kube, plan, fault.node)
        faults.put_node_file(found[fault.node], now, dra=plan.dra)
        if fault.via == faults.VIA_SLICE:
            wait_for(lambda: Seen(done=fault.effect in slice_taints(kube, fault.node).get(fault.device, []),
                                  last=f"{fault.node}'s ResourceSlice taints {slice_taints(kube, fault.node)}"),
                     what=f"{fault.node}'s ResourceSlice to taint {fault.device}", timeout=DROP_TIMEOUT, interval=0.5)
        elif faults.fatal(fault.xid):
            wait_offered_less(kube, plan, fault.node, before)
    show(name, now, fault, as_json)


def offered(kube, plan, node) -> int:
    """The GPUs a node offers: allocatable nvidia.com/gpu, or under DRA the devices its ResourceSlice lists."""
    if plan.dra:
        return len(record.published_gpus(kube.resource_slices()).get(node, []))
    return int((kube.core.read_node(node).status.allocatable or {}).get("nvidia.com/gpu", "0"))


def wait_offered_less(kube, plan, node, before) -> None:
    what = "publish one GPU less in its ResourceSlice" if plan.dra else "offer one GPU less"
    wait_for(lambda: Seen(done=offered(kube, plan, node) < before, last=f"{node} offers {offered(kube, plan, node)}"),
             what=f"{node} to {what}", timeout=DROP_TIMEOUT, interval=0.5)


def slice_taints(kube, node) -> dict[str, list[str]]:
    """{device: [effect, ...]} of kindgpu's Xid taints in a node's ResourceSlices."""
    found: dict[str, list[str]] = {}
    for piece in kube.resource_slices():
        spec = piece.get("spec") or {}
        if (spec.get("pool") or {}).get("name") != node:
            continue
        for device in spec.get("devices") or []:
            found[device["name"]] = [t.get("effect") for t in device.get("taints") or []
                                     if t.get("key") == faults.TAINT_KEY]
    return found


def show(name, now, fault, as_json):
    if as_json:
        console.print_json({"cluster": name, "injected": fault.__dict__, "faults": [f.__dict__ for f in now]})
        return
    print(f"injected: {fault.describe()}")
    print("undo with `invoke heal`")
