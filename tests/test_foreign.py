"""A cluster kindgpu did not make: its nodes make the plan. The Kubernetes API is the seam faked
here (its Node objects are the client's own); the whole run is in tests/e2e/test_dailyuse.py."""

import pytest
from kubernetes.client import V1Node, V1NodeSpec, V1NodeStatus, V1ObjectMeta

from kindgpu import foreign
from kindgpu.errors import KindgpuError, SpecError
from kindgpu.smoke import jobs


def node(name, gpus=None, cordoned=False, labels=None):
    allocatable = {"cpu": "8"} if gpus is None else {"cpu": "8", "nvidia.com/gpu": str(gpus)}
    return V1Node(metadata=V1ObjectMeta(name=name, labels=labels or {}), spec=V1NodeSpec(unschedulable=cordoned),
                  status=V1NodeStatus(allocatable=allocatable))


class Kube:
    def __init__(self, nodes):
        self._nodes = nodes

    def nodes(self):
        return self._nodes


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
