"""Faults kindgpu injects on purpose (kindgpu.faults): which GPU, what the simulated plugin reads, what
real GPUs cannot do."""

import json
from types import SimpleNamespace

import pytest

from kindgpu import faults, flags, names, plan as plans, spec, versions
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


def dra(version="v1.37.2", workers=2, gpus=2):
    doc = spec.resolve(env={}, flags={"name": "d", "workers": workers, "gpusPerWorker": gpus,
                                      "simulate": workers * gpus, "nodeImage": f"kindest/node:{version}",
                                      "gpuAllocation": "dra"})
    return plans.make_plan(doc)


def test_under_dra_from_1_36_the_simulated_plugin_taints_the_device_as_nvidias_driver_does():
    plan = dra("v1.36.3")
    gpu = plan.workers[1].gpus[1]
    fault = faults.gpu_fault(plan, gpu=None, worker=2, index=1, xid=79)
    assert fault == faults.Fault(faults.GPU, "d-worker2", gpu.uuid, 79, faults.VIA_SLICE, "NoSchedule",
                                 f"gpu-{gpu.minor}")
    assert faults.TAINT_KEY == "gpu.nvidia.com/xid"
    # An application's Xid: NVIDIA's driver taints it with effect None; --effect NoExecute evicts.
    assert faults.gpu_fault(plan, gpu=None, worker=2, index=1, xid=13).effect == "None"
    evicting = faults.gpu_fault(plan, gpu=gpu.uuid, worker=None, index=None, xid=48, effect="NoExecute")
    assert (evicting.effect, evicting.xid) == ("NoExecute", 48)
    assert "tainted gpu.nvidia.com/xid=48:NoExecute in its ResourceSlice" in evicting.describe()
    assert json.loads(faults.sim_dra_node_file([fault], "d-worker2")) == {gpu.uuid: {"xid": 79, "effect": "NoSchedule"}}
    assert faults.sim_dra_node_file([fault], "d-worker") == "{}" and faults.node_file([fault], "d-worker2") == "{}"
    assert faults.withheld([fault]) == {}  # still published, tainted
    assert faults.out_of_service([fault]) == [fault]
    assert faults.out_of_service([faults.gpu_fault(plan, gpu=None, worker=2, index=1, xid=13)]) == []


def test_before_1_36_the_failed_gpu_leaves_the_slice_and_no_effect_can_be_chosen():
    plan = dra("v1.35.4")
    gpu = plan.workers[0].gpus[0]
    fault = faults.gpu_fault(plan, gpu=None, worker=1, index=0, xid=79)
    assert (fault.via, fault.effect) == (faults.VIA_WITHDRAWN, "")
    assert json.loads(faults.sim_dra_node_file([fault], "d-worker")) == {gpu.uuid: {"xid": 79, "effect": ""}}
    assert faults.withheld([fault]) == {"d-worker": {gpu.uuid}} and "left out of its ResourceSlice" in fault.describe()
    with pytest.raises(SpecError, match=r"v1\.35\.4 has no device taints.*DRADeviceTaints"):
        faults.gpu_fault(plan, gpu=None, worker=1, index=0, xid=79, effect="NoExecute")


def test_via_the_api_the_fault_is_a_device_taint_rule_on_driver_pool_and_device():
    plan = dra()
    gpu = plan.workers[0].gpus[1]
    fault = faults.gpu_fault(plan, gpu=None, worker=1, index=1, xid=79, effect="NoExecute", via_api=True)
    assert (fault.via, fault.rule) == (faults.VIA_RULE, f"kindgpu-fault-d-worker-gpu-{gpu.minor}")
    assert faults.sim_dra_node_file([fault], "d-worker") == "{}" and faults.xids_file([fault], "d-worker") == ""
    for api in ("resource.k8s.io/v1", "resource.k8s.io/v1beta2", "resource.k8s.io/v1alpha3"):
        rule = faults.taint_rule(fault, api, "d")
        assert rule == {"apiVersion": api, "kind": "DeviceTaintRule",
                        "metadata": {"name": fault.rule, "labels": {"app.kubernetes.io/managed-by": "kindgpu",
                                                                    "kindgpu.dev/cluster": "d"}},
                        "spec": {"deviceSelector": {"driver": "gpu.nvidia.com", "pool": "d-worker",
                                                    "device": f"gpu-{gpu.minor}"},
                                 "taint": {"key": "gpu.nvidia.com/xid", "value": "79", "effect": "NoExecute"}}}
    with pytest.raises(SpecError, match="--effect/--via-api"):
        faults.gpu_fault(simulated(), gpu=None, worker=1, index=0, xid=79, via_api=True)


@pytest.mark.parametrize("version, served, api, refusal", [
    ((1, 37, 2), ["resource.k8s.io/v1", "resource.k8s.io/v1beta2"], "resource.k8s.io/v1", None),
    ((1, 36, 3), ["resource.k8s.io/v1beta2"], "resource.k8s.io/v1beta2", None),  # turned on by its admin
    ((1, 36, 3), [], None, r"v1\.36\.3 serves DeviceTaintRule only as resource\.k8s\.io/v1beta2 \(beta\), behind "
                           r"feature gate DRADeviceTaintRules"),
    ((1, 35, 4), [], None, r"resource\.k8s\.io/v1alpha3 \(alpha\), behind feature gate DRADeviceTaintRules"),
    ((1, 34, 4), [], None, r"resource\.k8s\.io/v1alpha3 \(alpha\), behind feature gate DRADeviceTaints "),
])
def test_the_rules_api_version_is_the_servers_and_its_absence_is_named_per_version(version, served, api, refusal):
    if refusal is None:
        assert faults.rule_api(served, version) == api
        return
    with pytest.raises(KindgpuError, match=refusal) as caught:
        faults.rule_api(served, version)
    assert "1.37" in str(caught.value) and "--via-api" in caught.value.fix


def test_device_taints_and_rules_by_version():
    """As k8s.io/kubernetes v1.34.4 to v1.37.2 say (pkg/features/kube_features.go, pkg/controlplane)."""
    assert [versions.dra_device_taints((1, m, 0)) for m in (34, 35, 36, 37)] == [False, False, True, True]
    assert [versions.device_taint_rule_api((1, m, 0)) for m in (33, 34, 35, 36, 37, 38)] == [
        None, "resource.k8s.io/v1alpha3", "resource.k8s.io/v1alpha3", "resource.k8s.io/v1beta2",
        "resource.k8s.io/v1", "resource.k8s.io/v1"]
    assert versions.device_taint_rules_off((1, 37, 2)) == ""


class FakeNode:
    """A worker container: what it was told to run, and what `stat` says of the device."""

    def __init__(self, name, stat="c3 2 666"):
        self.name, self.stat, self.ran = name, stat, []

    def sh(self, script):
        self.ran.append(script)
        return SimpleNamespace(stdout=self.stat if script.startswith("stat") else "")


def test_removing_a_real_gpus_device_node_records_its_number_and_heal_makes_it_again(h200_inventory):
    real = plans.make_plan(spec.resolve(env={}, flags={"name": "r", "workers": 2, "gpusPerWorker": 1}), h200_inventory)
    node = FakeNode("r-worker2", stat="c3 1 666")
    gpu = real.workers[1].gpus[0]
    fault = faults.remove_device(node, real, 2, 0)
    assert fault == faults.Fault(faults.DEVICE_REMOVED, "r-worker2", gpu.uuid, device=f"/dev/nvidia{gpu.minor}",
                                 devnum="195:1:666")
    assert node.ran[-1] == f"rm -f /dev/nvidia{gpu.minor}"
    assert faults.withheld([fault]) == {}  # NVIDIA's plugin reads NVML: it still offers the GPU
    assert faults.out_of_service([fault]) == [fault] and "cannot start" in fault.describe()
    faults.restore_device(node, fault.device, fault.devnum)
    assert node.ran[-1] == f"[ -c {fault.device} ] || mknod -m 666 {fault.device} c 195 1"
    faults.restore_device(node, "/dev/nvidia7")  # not recorded: the driver's own numbers
    assert node.ran[-1] == "[ -c /dev/nvidia7 ] || mknod -m 666 /dev/nvidia7 c 195 7"
    with pytest.raises(KindgpuError, match="has no /dev/nvidia"):
        faults.remove_device(FakeNode("r-worker2", stat=""), real, 2, 0)


def test_removing_a_simulated_gpus_file_unmounts_it_and_heal_binds_it_again():
    plan = simulated()
    node = FakeNode("f-worker", stat="1 3 666")
    fault = faults.remove_device(node, plan, 1, 1)
    path = f"{names.SIM_DEVICE_MOUNT_DIR}/{plan.workers[0].gpus[1].uuid}"
    assert (fault.device, node.ran[-1]) == (path, f"umount {path} && rm -f {path}")
    assert faults.withheld([fault]) == {"f-worker": {plan.workers[0].gpus[1].uuid}}  # the plugin sees it go
    faults.restore_device(node, path, fault.devnum)
    assert node.ran[-1] == f"[ -e {path} ] || touch {path}; mountpoint -q {path} || mount --bind /dev/null {path}"


def test_nvidia_smis_xids_per_node_and_where_each_plugin_reads():
    injected = [faults.Fault(faults.GPU, "f-worker", "GPU-a", 79), faults.Fault(faults.GPU, "f-worker", "GPU-b", 13),
                faults.Fault(faults.GPU, "f-worker2", "GPU-c", 48)]
    assert faults.xids_file(injected, "f-worker") == "GPU-a 79\nGPU-b 13\n"
    node = FakeNode("f-worker")
    faults.put_node_file(node, injected, dra=False)
    assert "/var/lib/kindgpu-sim/faults.json" in node.ran[-1] and "/var/lib/kindgpu-sim/health/xids" in node.ran[-1]
    faults.put_node_file(node, [], dra=True)
    assert "/var/lib/kindgpu-sim-dra/faults.json" in node.ran[-1] and "printf '%s' ''" in node.ran[-1]


def test_old_records_read_as_before():
    """A record written before DRA faults (no via, effect, device) reads as a device plugin fault."""
    assert faults.Fault(**{"kind": "gpu", "node": "n", "gpu": "GPU-a", "xid": 79}).via == ""


def test_the_effect_flag_is_checked_as_kubernetes_spells_it():
    assert flags.parse(effect="NoExecute")["effect"] == "NoExecute"
    with pytest.raises(SpecError, match="--effect: must be one of NoSchedule, NoExecute, None"):
        flags.parse(effect="noexecute")
