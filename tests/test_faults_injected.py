"""Faults kindgpu injects on purpose (kindgpu.faults): which GPU, what the simulated plugin reads, what
real GPUs cannot do."""

import json

import pytest

from kindgpu import faults, plan as plans, spec
from kindgpu.errors import KindgpuError, SpecError


def simulated(workers=2, gpus=2):
    return plans.make_plan(spec.resolve(env={}, flags={"name": "f", "workers": workers, "gpusPerWorker": gpus,
                                                       "simulate": workers * gpus}))


def test_a_gpu_is_named_by_uuid_or_by_worker_and_place():
    plan = simulated()
    second = plan.workers[1]
    by_place = faults.gpu_fault(plan, gpu=None, worker=2, index=1, xid=79)
    assert by_place == faults.Fault(faults.GPU, "f-worker2", second.gpus[1].uuid, 79)
    assert faults.gpu_fault(plan, gpu=second.gpus[1].uuid, worker=None, index=None, xid=79) == by_place
    with pytest.raises(SpecError, match="--gpu"):
        faults.gpu_fault(plan, gpu="GPU-nope", worker=None, index=None, xid=79)
    with pytest.raises(SpecError, match="no GPU 2 on worker 2"):
        faults.gpu_fault(plan, gpu=None, worker=2, index=2, xid=79)


def test_real_gpus_say_plainly_what_cannot_be_done(h200_inventory):
    doc = spec.resolve(env={}, flags={"name": "r", "workers": 2, "gpusPerWorker": 1})
    real = plans.make_plan(doc, h200_inventory)
    with pytest.raises(KindgpuError) as caught:
        faults.gpu_fault(real, gpu=real.workers[0].gpus[0].uuid, worker=None, index=None, xid=79)
    assert "cannot be made to fail safely" in str(caught.value) and "--down" in caught.value.fix


def test_the_plugins_file_per_node_and_what_kubelet_then_offers():
    injected = [faults.Fault(faults.GPU, "f-worker", "GPU-a", 79), faults.Fault(faults.GPU, "f-worker", "GPU-b", 13),
                faults.Fault(faults.GPU, "f-worker2", "GPU-c", 48), faults.Fault(faults.WORKER_DOWN, "f-worker3")]
    assert json.loads(faults.node_file(injected, "f-worker")) == {"GPU-a": 79, "GPU-b": 13}
    assert faults.node_file(injected, "f-worker3") == "{}"
    assert faults.unhealthy_per_node(injected) == {"f-worker": 1, "f-worker2": 1}  # Xid 13 is an application's
    assert "Unhealthy" in injected[0].describe() and "left healthy" in injected[1].describe()


def test_the_xids_and_file_are_the_simulated_plugins_own(plugin):
    assert faults.APPLICATION_XIDS == plugin.APPLICATION_XIDS and faults.FAULTS_FILE == plugin.FAULTS_FILE


def test_under_dra_a_gpu_fault_is_refused_with_what_works():
    doc = spec.resolve(env={}, flags={"name": "d", "workers": 1, "gpusPerWorker": 1, "simulate": 1,
                                      "nodeImage": "kindest/node:v1.37.0", "gpuAllocation": "dra"})
    plan = plans.make_plan(doc)
    with pytest.raises(KindgpuError, match="device taint"):
        faults.gpu_fault(plan, gpu=None, worker=1, index=0, xid=79)
