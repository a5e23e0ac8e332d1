"""A cluster kindgpu did not make: its nodes make the plan. The Kubernetes API is the seam faked
here (its Node objects are the client's own); the whole run is in tests/e2e/test_dailyuse.py."""

import copy
import json

import pytest
from kubernetes.client import V1ContainerImage, V1Node, V1NodeSpec, V1NodeStatus, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from kindgpu import foreign, slices, spec as specs
from kindgpu.errors import KindgpuError, SpecError
from kindgpu.smoke import jobs
from paths import TESTDATA

# What kindgpu's simulated DRA plugin published for one worker of configs/dra.yaml (two L4s), as the API
# wrote it: NVIDIA's driver name, device names and attributes (tests/testdata/dra/nvidia-gpu-device.json).
RECORDED_SLICE = json.loads((TESTDATA / "dra" / "resourceslice-simdra-worker.json").read_text())["resourceSlice"]


def node(name, gpus=None, cordoned=False, labels=None):
    allocatable = {"cpu": "8"} if gpus is None else {"cpu": "8", "nvidia.com/gpu": str(gpus)}
    return V1Node(metadata=V1ObjectMeta(name=name, labels=labels or {}), spec=V1NodeSpec(unschedulable=cordoned),
                  status=V1NodeStatus(allocatable=allocatable))


class Kube:
    def __init__(self, nodes, slices=(), slices_error=None):
        self._nodes, self._slices, self._slices_error = nodes, list(slices), slices_error

    def nodes(self):
        return self._nodes

    def resource_slices(self):
        if self._slices_error:
            raise self._slices_error
        return self._slices


def test_every_schedulable_node_offering_gpus_is_a_worker_with_its_count():
    kube = Kube([node("gpu-b", 1), node("cp"), node("gpu-a", 2, labels={"nvidia.com/gpu.product": "NVIDIA-H200",
                                                                         "nvidia.com/gpu.memory": "143771"}),
                 node("zero", 0), node("drained", 4, cordoned=True)])
    plan = foreign.observed_plan(kube, "prod")
    assert [(w.number, w.node, len(w.gpus)) for w in plan.workers] == [(1, "gpu-a", 2), (2, "gpu-b", 1)]
    assert all(g.uuid == "" for w in plan.workers for g in w.gpus)  # not known
    assert plan.workers[0].gpus[0].name == "NVIDIA-H200" and plan.workers[0].gpus[0].memory_mib == 143771
    assert plan.name == "prod" and not plan.simulated
    from kindgpu import gfd, sharing

    assert not gfd.enabled(plan.spec) and sharing.of(plan.spec).replicas == 1  # no checks that need UUIDs


def test_a_cluster_without_gpu_nodes_says_what_to_install():
    with pytest.raises(KindgpuError) as caught:
        foreign.observed_plan(Kube([node("cp"), node("drained", 2, cordoned=True)]), "prod")
    assert "cordoned: drained" in str(caught.value) and "device plugin" in caught.value.fix
    assert "ResourceSlice of gpu.nvidia.com" in str(caught.value) and "DRA driver" in caught.value.fix
    # A cluster older than resource.k8s.io/v1 (404), or a kubeconfig that may not list slices (403): none.
    for status in (404, 403):
        with pytest.raises(KindgpuError, match="no node of cluster prod offers"):
            foreign.observed_plan(Kube([node("cp")], slices_error=ApiException(status=status)), "prod")
    with pytest.raises(ApiException):  # anything else is no answer, which foreign.reach reports
        foreign.observed_plan(Kube([node("cp")], slices_error=ApiException(status=500)), "prod")


def test_jobs_on_such_a_node_ask_its_count_and_expect_no_uuids():
    plan = foreign.observed_plan(Kube([node("gpu-a", 2)]), "prod")
    job = jobs.job("r1", "visibility", "img", plan.workers[0], 0, [2])
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert "KINDGPU_EXPECTED_UUIDS" not in {e["name"] for e in container["env"]}


def test_the_clusters_name_comes_from_the_current_context(tmp_path):
    path = tmp_path / "kc"
    path.write_text("current-context: arn:aws:eks:us-east-1:123:cluster/GPU_Prod\n")
    assert foreign.cluster_label(path) == "arn-aws-eks-us-east-1-123-cluster-gpu-prod"


def test_down_with_a_kubeconfig_removes_only_what_smoke_kept(tmp_path, state_dir, capsys):
    from kindgpu import commands, state

    path = tmp_path / "prod.kubeconfig"
    path.write_text("current-context: gpu-prod\n")
    kept = state.foreign_dir("gpu-prod")
    kept.mkdir(parents=True)
    (kept / "smoke-visibility-junit.xml").write_text("<testsuite/>")
    commands.down.run(None, {}, kubeconfig=str(path))
    assert not kept.exists() and "the cluster itself is not kindgpu's to delete" in capsys.readouterr().out
    commands.down.run(None, {}, kubeconfig=str(path))
    assert "nothing kept" in capsys.readouterr().out
    with pytest.raises(SpecError):
        commands.down.run(None, {"name": "x"}, kubeconfig=str(path))


def slice_for(node_name, uuids, *, generation=1, driver="gpu.nvidia.com", product="NVIDIA L4", minor_from=0):
    """The recorded slice, made another node's: its devices renamed gpu-<minor> and given these UUIDs."""
    piece = copy.deepcopy(RECORDED_SLICE)
    spec = piece["spec"]
    spec.update(nodeName=node_name, driver=driver, pool={"name": node_name, "generation": generation,
                                                          "resourceSliceCount": 1})
    template = spec["devices"][0]
    spec["devices"] = []
    for i, uuid in enumerate(uuids):
        device = copy.deepcopy(template)
        device["name"] = f"gpu-{minor_from + i}"
        device["attributes"]["uuid"]["string"] = uuid
        device["attributes"]["productName"]["string"] = product
        spec["devices"].append(device)
    return piece


def test_the_recorded_slice_gives_each_gpu_its_uuid_product_memory_bus_and_minor():
    found = slices.dra_gpus([RECORDED_SLICE])
    assert list(found) == ["dra-sim-37-worker"]
    gpus = found["dra-sim-37-worker"]
    assert [(g.index, g.uuid, g.name, g.pci_bus_id, g.memory_mib, g.minor) for g in gpus] == [
        (0, "GPU-62cfd2ce-e976-0353-efaf-d16bbfcdac04", "NVIDIA L4", "0000:10:00.0", 23034, 0),
        (1, "GPU-5a5800bc-753a-aa89-053c-fd2e0ed22c32", "NVIDIA L4", "0000:11:00.0", 23034, 1)]


@pytest.mark.parametrize("text, expected", [("23034Mi", 23034 * 2**20), ("24146608128", 24146608128),
                                            ("80G", 80 * 10**9), ("1Ki", 1024), ("", 0), (None, 0), ("1.5Gi", 0)])
def test_memory_quantities(text, expected):
    assert slices.quantity_bytes(text) == expected


def test_without_allocatable_gpus_the_resource_slices_make_the_plan_with_uuids_and_claims():
    mig = slice_for("gpu-a", ["MIG-x"], minor_from=7)
    mig["spec"]["devices"][0]["attributes"]["type"]["string"] = "mig"  # NVIDIA's MIG devices: not a full GPU
    slices = [
        slice_for("gpu-b", ["GPU-b0"], product="NVIDIA H200"),
        slice_for("gpu-a", ["GPU-old"], generation=1),  # the pool's older generation: gone
        slice_for("gpu-a", ["GPU-a1"], generation=2, minor_from=1),
        slice_for("gpu-a", ["GPU-a0"], generation=2, minor_from=0),  # a pool of two slices
        {**mig, "spec": {**mig["spec"], "pool": {"name": "gpu-a", "generation": 2}}},
        slice_for("gpu-a", ["GPU-other"], driver="gpu.example.com"),  # another driver's
        slice_for("drained", ["GPU-d0"]),
        slice_for("gone", ["GPU-g0"]),  # a node no longer there
        {"spec": {"driver": "gpu.nvidia.com", "pool": {"name": "fabric"}, "allNodes": True, "devices": []}},
    ]
    kube = Kube([node("cp"), node("gpu-b", labels={"nvidia.com/gpu.product": "NVIDIA-H200"}), node("gpu-a"),
                 node("drained", cordoned=True)], slices)
    plan = foreign.observed_plan(kube, "prod")
    assert plan.dra and not plan.simulated
    assert [(w.number, w.node, [g.uuid for g in w.gpus]) for w in plan.workers] == [
        (1, "gpu-a", ["GPU-a0", "GPU-a1"]), (2, "gpu-b", ["GPU-b0"])]
    assert [g.name for g in plan.workers[1].gpus] == ["NVIDIA H200"]
    assert plan.workers[1].labels == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    # Smoke asks through claims there: a template per worker for all its GPUs, the pod expecting their UUIDs.
    (a_job, b_job, overask) = jobs.level_jobs("r1", plan, "visibility", "img", "img")
    pod = a_job["spec"]["template"]["spec"]
    assert pod["resourceClaims"] == [{"name": "gpus", "resourceClaimTemplateName": "smoke-r1-w1"}]
    assert "limits" not in pod["containers"][0]["resources"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["KINDGPU_EXPECTED_UUIDS"] == "GPU-a0,GPU-a1"
    counts = {t["metadata"]["name"]: t["spec"]["spec"]["devices"]["requests"][0]["exactly"]["count"]
              for t in jobs.claim_templates("r1", plan)}
    assert counts == {"smoke-r1-w1": 2, "smoke-r1-w2": 1, "smoke-r1-overask": 3, "smoke-r1-one": 1}


def test_allocatable_gpus_win_over_slices_and_a_given_spec_does_not_decide_the_allocation():
    doc = specs.defaults()
    doc["gpuAllocation"] = "dra"
    plan = foreign.observed_plan(Kube([node("gpu-a", 2)], [slice_for("gpu-a", ["GPU-a0"])]), "prod", doc)
    assert not plan.dra and [g.uuid for g in plan.workers[0].gpus] == ["", ""]


def test_a_simulated_dra_cluster_runs_smoke_in_the_simulated_image_its_nodes_hold():
    from kindgpu.simgpu.build import IMAGE_REPO

    recorded = foreign.observed_plan(Kube([node("w1")], [slice_for("w1", ["GPU-1"])]), "kgd")
    images = [V1ContainerImage(names=["docker.io/kindgpu/sim-dra-plugin:1-a"]),
              V1ContainerImage(names=[f"docker.io/{IMAGE_REPO}@sha256:0", f"docker.io/{IMAGE_REPO}:1-b"])]
    worker = V1Node(metadata=V1ObjectMeta(name="w1"), spec=V1NodeSpec(), status=V1NodeStatus(images=images))
    assert foreign.simulated_plugin_image(Kube([worker]), recorded) == f"docker.io/{IMAGE_REPO}:1-b"
    bare = V1Node(metadata=V1ObjectMeta(name="w1"), spec=V1NodeSpec(), status=V1NodeStatus(images=images[:1]))
    with pytest.raises(KindgpuError, match="holds kindgpu's simulated smoke image") as caught:
        foreign.simulated_plugin_image(Kube([bare]), recorded)
    assert "--image IMAGE" in caught.value.fix


@pytest.mark.parametrize("level", ["compute", "collective"])
def test_real_gpus_under_dra_run_compute_and_collective_through_claims_in_the_pytorch_image(level):
    """A cluster with NVIDIA's DRA driver on real GPUs (smoke --kubeconfig): the levels that need real GPUs
    are not refused, and their pods ask each node's GPUs through its claim, in the spec's PyTorch image."""
    from kindgpu.payloads import levels

    kube = Kube([node("h100-a"), node("h100-b")], [slice_for("h100-a", ["GPU-a0", "GPU-a1"], product="NVIDIA H100"),
                                                   slice_for("h100-b", ["GPU-b0"], product="NVIDIA H100")])
    plan = foreign.observed_plan(kube, "prod")
    assert plan.dra and not plan.simulated and levels.problem(level, plan.simulated) is None
    image = jobs.image_for(plan, level)
    assert image == specs.defaults()["smoke"]["pytorchImage"]
    found = {j["metadata"]["name"]: j for j in jobs.level_jobs("r1", plan, level, image, "cuda:1")}
    for w in plan.workers:
        spec = found[f"smoke-r1-w{w.number}"]["spec"]["template"]["spec"]
        assert spec["resourceClaims"] == [{"name": "gpus", "resourceClaimTemplateName": f"smoke-r1-w{w.number}"}]
        assert spec["containers"][0]["image"] == image
        assert "limits" not in spec["containers"][0]["resources"]
