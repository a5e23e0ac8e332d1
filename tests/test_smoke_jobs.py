"""Smoke Jobs and reports (the Jobs run for real in tests/e2e; compute/collective need GPUs)."""

import xml.etree.ElementTree as ET

import pytest

from kindgpu import inventory, plan, smoke, spec
from kindgpu.errors import SpecError
from kindgpu.inventory import GPU
from paths import REPO, TESTDATA, parse_information_dump

WORKER = plan.WorkerPlan(2, "c-worker2", tuple(GPU(i, uuid, "NVIDIA H200", "", 143771, i) for i, uuid in
                                               enumerate(("GPU-a", "GPU-b"))), {})


def pod(job):
    return job["spec"]["template"]["spec"]


def test_job_is_pinned_to_its_worker_and_asks_all_its_gpus():
    spec = pod(smoke.job("r1", "visibility", "img:1", WORKER, 1, [1, 2]))
    container = spec["containers"][0]
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "c-worker2"}
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["KINDGPU_EXPECTED_UUIDS"] == "GPU-a,GPU-b"
    assert spec["restartPolicy"] == "Never"


def test_collective_job_finds_rank_zero_and_gets_shared_memory():
    spec = pod(smoke.job("r1", "collective", "torch:1", WORKER, 1, [1, 2]))
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["MASTER_ADDR"] == "w0.smoke.kindgpu-smoke.svc.cluster.local"
    assert env["NCCL_HOSTID"] == "kindgpu-c-worker2"  # one NCCL host per pod, despite one boot id
    assert (spec["hostname"], spec["subdomain"]) == ("w1", "smoke")
    assert {"name": "kindgpu-dshm", "mountPath": "/dev/shm"} in spec["containers"][0]["volumeMounts"]


def test_only_the_collective_level_gets_the_service_its_ranks_meet_through():
    kinds = {level: [o["kind"] for o in smoke.support_objects("r1", level)] for level in ("visibility", "collective")}
    assert kinds == {"visibility": ["ConfigMap"], "collective": ["ConfigMap", "Service"]}
    spec = pod(smoke.job("r1", "visibility", "img:1", WORKER, 1, [1, 2]))
    assert spec["automountServiceAccountToken"] is False  # payloads never call the API server


def test_over_asking_job_asks_one_more():
    job = smoke.job("r1", "visibility", "img:1", WORKER, 0, [3], gpus=3)
    assert pod(job)["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "3"}
    assert job["metadata"]["name"].endswith("-overask")


def test_simulated_clusters_run_visibility_only():
    record = plan.make_plan(spec.resolve(env={}, flags={"simulate": 8}))
    smoke.check_level(record, "visibility")
    with pytest.raises(SpecError, match="simulated GPUs run the visibility level only"):
        smoke.check_level(record, "compute")
    with pytest.raises(SpecError, match="unknown smoke level"):
        smoke.check_level(record, "nccl")


def test_junit_counts_failures():
    outcome = smoke.Outcome("visibility", False, "worker 2 saw GPU-x", workers=[
        {"node": "c-worker", "ok": True, "message": "ok"},
        {"node": "c-worker2", "ok": False, "message": "saw GPU-x"}],
        limit={"ok": True, "message": "stays Pending"}, seconds=3.2)
    suite = ET.fromstring(smoke.junit_xml(outcome, "c"))
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")
    failed = [c.get("name") for c in suite if c.find("failure") is not None]
    assert failed == ["visibility[c-worker2]"]


NVLS_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


@pytest.mark.parametrize("level", ["visibility", "compute", "collective"])
def test_spec_smoke_env_reaches_every_smoke_pod(level):
    spec = pod(smoke.job("r1", level, "img:1", WORKER, 0, [2], extra_env={**NVLS_OFF, "KINDGPU_WORKER": "mine"}))
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert NVLS_OFF.items() <= env.items()
    assert env["KINDGPU_WORKER"] == "mine"  # the spec's value wins: it comes last


def test_smoke_env_names_are_checked_by_the_schema():
    doc = spec.resolve(env={}, flags={})
    doc["smoke"]["env"] = {"NCCL_NVLS_ENABLE": "0", "BAD-NAME": "1", "N": 1}
    found = "\n".join(map(str, spec.problems(doc)))
    assert "BAD-NAME" in found and "smoke.env.N" in found


# ---------------------------------------------------------------- CPU-only workers

CPU_WORKER = plan.WorkerPlan(None, "c-worker2", (), {})


def env_of(job):
    return {e["name"]: e["value"] for e in pod(job)["containers"][0]["env"]}


def test_cpu_only_worker_gets_a_job_without_gpu_limit_and_a_one_gpu_ask():
    sees, asks = smoke.cpu_jobs("r1", "img:1", CPU_WORKER, "cpu1")
    for job in (sees, asks):
        assert pod(job)["nodeSelector"] == {"kubernetes.io/hostname": "c-worker2"}
        assert pod(job)["containers"][0]["command"] == ["sh", "/kindgpu/payloads/visibility.sh"]
    assert "resources" not in pod(sees)["containers"][0]  # no GPU limit at all, not even 0
    env = env_of(sees)
    assert env["KINDGPU_EXPECT_NONE"] == "1" and "KINDGPU_EXPECTED_UUIDS" not in env
    assert pod(asks)["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    labels = [j["spec"]["template"]["metadata"]["labels"] for j in (sees, asks)]
    assert [lab.get(smoke.PENDING_LABEL) for lab in labels] == [None, "true"]
    assert {lab[smoke.WORKER_LABEL] for lab in labels} == {"cpu1"}
    assert len({sees["metadata"]["name"], asks["metadata"]["name"]}) == 2


def mixed_run(level="visibility"):
    """A Smoke run on a plan with a CPU-only worker between two GPU workers (no cluster needed)."""
    doc = spec.resolve(REPO / "configs" / "cpu-worker.yaml", env={}, flags={"simulate": 8})
    return smoke.Smoke(None, plan.make_plan(doc), level)


def test_cpu_only_workers_take_no_rank_and_are_not_over_asked(state_dir):
    run = mixed_run()
    assert [w.node for w in run.gpu_workers] == ["gpu-cluster-worker", "gpu-cluster-worker3"]
    assert {k: w.node for k, w in run.cpu_workers.items()} == {"cpu1": "gpu-cluster-worker2"}
    assert run.pending_checks() == [("1", "gpu-cluster-worker", 5, 4), ("cpu1", "gpu-cluster-worker2", 1, 0)]
    # The collective's ranks are the GPU workers': world size 2, 8 GPUs.
    jobs = [smoke.job("r", "collective", "t:1", w, r, [4, 4]) for r, w in enumerate(run.gpu_workers)]
    assert [env_of(j)["KINDGPU_NNODES"] for j in jobs] == ["2", "2"]
    assert [env_of(j)["KINDGPU_RANK_OFFSET"] for j in jobs] == ["0", "4"]


def recorded(name):
    return (TESTDATA / "payloads" / name).read_text()


def h200_mixed_run():
    """The GPUs of the 2×H200 host that recorded the payload output, given to two GPU workers
    around a CPU-only one: worker has GPU 1, worker2 none, worker3 GPU 0."""
    host = recorded("h200x2/host.txt")
    query = host.split("$ ", 2)[1].split("\n", 1)[1].split("(exit")[0]
    inv = inventory.merge(inventory.parse_query_csv(query), parse_information_dump(host))
    doc = spec.resolve(env={}, flags={"name": "mixed", "workers": [{"gpus": [1]}, {"gpus": []}, {"gpus": [0]}]})
    return smoke.Smoke(None, plan.make_plan(doc, inv), "visibility")


PENDING = {"ok": True, "node": "x", "asked": 1, "message": "stays Pending: 0/4 nodes: Insufficient nvidia.com/gpu"}


def junit_cases(outcome):
    suite = ET.fromstring(smoke.junit_xml(outcome, "mixed"))
    return suite, {c.get("name"): c.find("failure") is None for c in suite}


def test_verdict_on_recorded_output_passes_with_the_cpu_worker_seeing_no_gpu(state_dir):
    run = h200_mixed_run()
    # Real output: each H200 worker's pod (worker holds GPU 1, worker3 GPU 0), and the visibility
    # payload run on this CPU-only host with KINDGPU_EXPECT_NONE=1 for the CPU-only worker.
    logs = {"mixed-worker": recorded("h200x2/visibility-kindgpu-worker2.log"),
            "mixed-worker3": recorded("h200x2/visibility-kindgpu-worker.log"),
            "mixed-worker2": recorded("cpu-only/visibility-host-no-gpu.log")}
    outcome = run.verdict(logs, "", PENDING, {"cpu1": PENDING}, 2.0)
    assert outcome.ok, outcome.message
    doc = outcome.to_dict()
    assert [w["node"] for w in doc["workers"]] == ["mixed-worker", "mixed-worker3"]
    (cpu,) = doc["cpuWorkers"]
    assert (cpu["node"], cpu["seen"], cpu["ok"], cpu["gpuAsk"]["ok"]) == ("mixed-worker2", [], True, True)
    assert "nvidia-smi absent" in cpu["message"]
    suite, cases = junit_cases(outcome)
    assert suite.get("failures") == "0" and cases == {
        "visibility[mixed-worker]": True, "visibility[mixed-worker3]": True, "gpu-limit-enforced": True,
        "cpu-only-sees-no-gpu[mixed-worker2]": True, "cpu-only-gpu-ask-pending[mixed-worker2]": True}


def test_verdict_fails_when_the_cpu_worker_sees_a_gpu_or_its_gpu_ask_is_scheduled(state_dir):
    run = h200_mixed_run()
    # The CPU-only worker's pod shows what an unisolated pod saw: both GPUs.
    logs = {"mixed-worker": recorded("h200x2/visibility-kindgpu-worker2.log"),
            "mixed-worker3": recorded("h200x2/visibility-kindgpu-worker.log"),
            "mixed-worker2": recorded("h200x2/visibility-unisolated.log")}
    scheduled = {"ok": False, "node": "mixed-worker2", "asked": 1,
                 "message": "a pod asking 1 GPU(s) was scheduled on mixed-worker2, which has 0"}
    outcome = run.verdict(logs, "", PENDING, {"cpu1": scheduled}, 2.0)
    assert not outcome.ok
    cpu = outcome.to_dict()["cpuWorkers"][0]
    assert not cpu["ok"] and "2 GPU(s) visible on a CPU-only worker" in cpu["message"]
    assert len(cpu["seen"]) == 2
    assert "seen on 2 workers" in outcome.message  # the GPU workers' GPUs, seen there too
    assert "GPU asked of CPU-only mixed-worker2: a pod asking 1 GPU(s) was scheduled" in outcome.message
    suite, cases = junit_cases(outcome)
    assert suite.get("failures") == "2"
    assert [n for n, ok in cases.items() if not ok] == [
        "cpu-only-sees-no-gpu[mixed-worker2]", "cpu-only-gpu-ask-pending[mixed-worker2]"]
