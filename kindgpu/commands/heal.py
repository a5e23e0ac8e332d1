"""`invoke heal`: undo every fault `invoke fault` injected (kindgpu.faults); with none, nothing to do."""

from __future__ import annotations

from .. import console, faults, flags, nodes, record
from ..kube import Kube, wait_answering
from ..report import Reporter


def run(config_file, checked: dict, *, as_json=False) -> None:
    name = flags.resolve(config_file, checked)["name"]
    reporter = Reporter(quiet=as_json)
    found = {n.name: n for n in nodes.cluster_nodes(nodes.docker_client(), name)}
    kube = Kube.for_kind_cluster(name)
    wait_answering(kube, name, reporter.note)
    plan = record.require(kube, name)
    injected = faults.read(kube)
    for fault in injected:
        if fault.kind == faults.WORKER_DOWN and fault.node in found and not found[fault.node].running:
            found[fault.node].start()
        elif fault.kind == faults.DEVICE_REMOVED and fault.node in found and found[fault.node].running:
            faults.restore_device(found[fault.node], fault.device, fault.devnum)
        elif fault.via == faults.VIA_RULE:
            kube.delete_raw(fault.api, faults.RULE_PLURAL, fault.rule)  # the API's alone: no node touched
    for node in {f.node for f in injected if f.kind == faults.GPU and f.via != faults.VIA_RULE}:
        faults.put_node_file(found[node], [], dra=plan.dra)
    faults.write(kube, name, [])
    if as_json:
        console.print_json({"cluster": name, "healed": [f.__dict__ for f in injected]})
        return
    if not injected:
        print(f"nothing to heal: no fault injected in {name}")
        return
    for fault in injected:
        print(f"healed: {fault.describe()}")
    if any(f.kind == faults.WORKER_DOWN for f in injected):
        print("next: `invoke up` waits for the started workers and puts isolation and the plugin right")
