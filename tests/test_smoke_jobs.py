"""Smoke Jobs and reports (the Jobs run for real in tests/e2e; compute/collective need GPUs)."""

import xml.etree.ElementTree as ET

import pytest

from kindgpu import inventory, plan, sharing, smoke, spec
from kindgpu.errors import SpecError
from kindgpu.inventory import GPU
from kindgpu.smoke import checks as smoke_checks, jobs as smoke_jobs, report, run as smoke_run, verdict
from paths import REPO, TESTDATA, parse_information_dump

WORKER = plan.WorkerPlan(2, "c-worker2", tuple(GPU(i, uuid, "NVIDIA H200", "", 143771, i) for i, uuid in
                                               enumerate(("GPU-a", "GPU-b"))), {})


def pod(job):
    return job["spec"]["template"]["spec"]


def test_job_is_pinned_to_its_worker_and_asks_all_its_gpus():
    spec = pod(smoke_jobs.job("r1", "visibility", "img:1", WORKER, 1, [1, 2]))
    container = spec["containers"][0]
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "c-worker2"}
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["KINDGPU_EXPECTED_UUIDS"] == "GPU-a,GPU-b"
    assert spec["restartPolicy"] == "Never"


def test_collective_job_finds_rank_zero_and_gets_shared_memory():
    spec = pod(smoke_jobs.job("r1", "collective", "torch:1", WORKER, 1, [1, 2]))
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["MASTER_ADDR"] == "w0.smoke.kindgpu-smoke.svc.cluster.local"
    assert env["NCCL_HOSTID"] == "kindgpu-c-worker2"  # one NCCL host per pod, despite one boot id
    assert (spec["hostname"], spec["subdomain"]) == ("w1", "smoke")
    assert {"name": "kindgpu-dshm", "mountPath": "/dev/shm"} in spec["containers"][0]["volumeMounts"]


def test_only_the_collective_level_gets_the_service_its_ranks_meet_through():
    kinds = {level: [o["kind"] for o in smoke_jobs.support_objects("r1", level)]
             for level in ("visibility", "collective")}
    assert kinds == {"visibility": ["ConfigMap"], "collective": ["ConfigMap", "Service"]}
    spec = pod(smoke_jobs.job("r1", "visibility", "img:1", WORKER, 1, [1, 2]))
    assert spec["automountServiceAccountToken"] is False  # payloads never call the API server


def test_over_asking_job_asks_one_more():
    job = smoke_jobs.job("r1", "visibility", "img:1", WORKER, 0, [3], gpus=3)
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
    outcome = verdict.Outcome("visibility", False, "worker 2 saw GPU-x", workers=[
        {"node": "c-worker", "ok": True, "message": "ok"},
        {"node": "c-worker2", "ok": False, "message": "saw GPU-x"}],
        limit={"ok": True, "message": "stays Pending"}, seconds=3.2)
    suite = ET.fromstring(report.junit_xml(outcome, "c"))
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")
    failed = [c.get("name") for c in suite if c.find("failure") is not None]
    assert failed == ["visibility[c-worker2]"]


NVLS_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


@pytest.mark.parametrize("level", ["visibility", "compute", "collective"])
def test_spec_smoke_env_reaches_every_smoke_pod(level):
    spec = pod(smoke_jobs.job("r1", level, "img:1", WORKER, 0, [2], extra_env={**NVLS_OFF, "KINDGPU_WORKER": "mine"}))
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
    sees, asks = smoke_jobs.cpu_jobs("r1", "img:1", CPU_WORKER, "cpu1")
    for job in (sees, asks):
        assert pod(job)["nodeSelector"] == {"kubernetes.io/hostname": "c-worker2"}
        assert pod(job)["containers"][0]["command"] == ["sh", "/kindgpu/payloads/visibility.sh"]
    assert "resources" not in pod(sees)["containers"][0]  # no GPU limit at all, not even 0
    env = env_of(sees)
    assert env["KINDGPU_EXPECT_NONE"] == "1" and "KINDGPU_EXPECTED_UUIDS" not in env
    assert pod(asks)["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    labels = [j["spec"]["template"]["metadata"]["labels"] for j in (sees, asks)]
    assert [lab.get(smoke_jobs.PENDING_LABEL) for lab in labels] == [None, "true"]
    assert {lab[smoke_jobs.WORKER_LABEL] for lab in labels} == {"cpu1"}
    assert len({sees["metadata"]["name"], asks["metadata"]["name"]}) == 2


def mixed_run():
    """A plan with a CPU-only worker between two GPU workers (no cluster needed)."""
    doc = spec.resolve(REPO / "configs" / "cpu-worker.yaml", env={}, flags={"simulate": 8})
    return plan.make_plan(doc)


def test_cpu_only_workers_take_no_rank_and_are_not_over_asked(state_dir):
    run = mixed_run()
    assert [w.node for w in run.gpu_workers] == ["gpu-cluster-worker", "gpu-cluster-worker3"]
    assert {k: w.node for k, w in smoke_jobs.cpu_workers(run.workers).items()} == {"cpu1": "gpu-cluster-worker2"}
    assert smoke_jobs.pending_checks(run) == [("1", "gpu-cluster-worker", 5, 4), ("cpu1", "gpu-cluster-worker2", 1, 0)]
    # The collective's ranks are the GPU workers': world size 2, 8 GPUs.
    jobs = [smoke_jobs.job("r", "collective", "t:1", w, r, [4, 4]) for r, w in enumerate(run.gpu_workers)]
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
    return plan.make_plan(doc, inv)


PENDING = {"ok": True, "node": "x", "asked": 1, "message": "stays Pending: 0/4 nodes: Insufficient nvidia.com/gpu"}


def junit_cases(outcome):
    suite = ET.fromstring(report.junit_xml(outcome, "mixed"))
    return suite, {c.get("name"): c.find("failure") is None for c in suite}


def test_verdict_on_recorded_output_passes_with_the_cpu_worker_seeing_no_gpu(state_dir):
    run = h200_mixed_run()
    # Real output: each H200 worker's pod (worker holds GPU 1, worker3 GPU 0), and the visibility
    # payload run on this CPU-only host with KINDGPU_EXPECT_NONE=1 for the CPU-only worker.
    logs = {"mixed-worker": recorded("h200x2/visibility-kindgpu-worker2.log"),
            "mixed-worker3": recorded("h200x2/visibility-kindgpu-worker.log"),
            "mixed-worker2": recorded("cpu-only/visibility-host-no-gpu.log")}
    outcome = verdict.verdict("visibility", run.workers, logs, "", PENDING, {"cpu1": PENDING}, 2.0)
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
    outcome = verdict.verdict("visibility", run.workers, logs, "", PENDING, {"cpu1": scheduled}, 2.0)
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


# ---------------------------------------------------------------- time-slicing and the product selector


def vis_log(worker, *uuids):
    """A visibility payload's log that saw `uuids`."""
    import json

    lines = [f"kindgpu visibility payload: worker {worker}, pod p",
             "nvidia-smi --query-gpu=uuid --format=csv,noheader: exit 0", *(f"  | {u}" for u in uuids),
             f"visible GPUs: {len(uuids)}; ok"]
    result = {"level": "visibility", "worker": worker, "ok": True, "rc": 0, "bad_lines": 0, "count": len(uuids),
              "uuids": list(uuids), "error": ""}
    return "\n".join(lines) + f"\nKINDGPU-RESULT {json.dumps(result)}\n"


def shared_run(replicas=4, rename=False, **extra):
    """A plan of 2 simulated workers of 1 GPU each, time-sliced."""
    doc = spec.resolve(env={}, flags={"simulate": 2, "workers": 2, "gpusPerWorker": 1})
    doc["devicePlugin"]["sharing"] = {"timeSlicing": {"replicas": replicas, "renameByDefault": rename}}
    doc.update(extra)
    return plan.make_plan(doc)


def test_with_time_slicing_each_worker_is_asked_for_its_gpus_times_replicas(state_dir):
    run = shared_run()
    worker = run.gpu_workers[0]
    job = smoke_jobs.job("r1", "visibility", "img:1", worker, 0, [1, 1], time_slicing=sharing.of(run.spec))
    assert pod(job)["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "4"}
    assert env_of(job)["KINDGPU_EXPECTED_UUIDS"] == worker.gpus[0].uuid  # still sees its 1 GPU
    assert smoke_jobs.pending_checks(run)[0][2:] == (5, 4)  # one more than it offers
    renamed = shared_run(rename=True)
    overask = smoke_jobs.overask_job("r1", renamed, "img:1")
    assert pod(overask)["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu.shared": "5"}


def test_without_sharing_the_jobs_are_as_before(state_dir):
    run = mixed_run()
    assert sharing.of(run.spec).replicas == 1
    job = smoke_jobs.job("r1", "visibility", "img:1", run.gpu_workers[0], 0, [4, 4], time_slicing=sharing.of(run.spec))
    assert job == smoke_jobs.job("r1", "visibility", "img:1", run.gpu_workers[0], 0, [4, 4])
    assert [c.kind for c in smoke_checks.for_plan(run)] == ["product"]  # no shared check


def test_the_checks_select_by_product_and_share_one_workers_gpu(state_dir):
    run = shared_run()
    product, shared = smoke_checks.for_plan(run)
    assert (product.kind, product.subject, sorted(product.allowed)) == (
        "product", "NVIDIA-H200-SHARED", ["gpu-cluster-worker", "gpu-cluster-worker2"])
    (pjob,) = smoke_jobs.check_jobs("r1", "img:1", product, sharing.of(run.spec).resource)
    assert pod(pjob)["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H200-SHARED"}
    assert pod(pjob)["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert pjob["spec"]["template"]["metadata"]["labels"][smoke_checks.CHECK_LABEL] == "product-1"
    assert (shared.kind, shared.subject, shared.pods) == ("shared", "gpu-cluster-worker", 2)
    jobs = smoke_jobs.check_jobs("r1", "img:1", shared, sharing.of(run.spec).resource)
    assert [pod(j)["nodeSelector"] for j in jobs] == [{"kubernetes.io/hostname": "gpu-cluster-worker"}] * 2
    assert len({j["metadata"]["name"] for j in jobs}) == 2
    assert "KINDGPU_EXPECTED_UUIDS" not in env_of(jobs[0])  # it sees one GPU of its worker's


def test_no_product_check_when_the_cluster_leaves_the_labels_to_gfd(state_dir):
    run = shared_run(gpuFeatureLabels=False)
    assert [c.kind for c in smoke_checks.for_plan(run)] == ["shared"]


def test_two_pods_seeing_one_shared_gpu_pass_and_the_verdict_says_so(state_dir):
    run = shared_run()
    product, shared = smoke_checks.for_plan(run)
    workers = {w.node: w.gpus[0].uuid for w in run.gpu_workers}
    w1, w2 = list(workers)
    rows = [smoke_checks.verdict(product, [(w2, "Succeeded", vis_log("p", workers[w2]))]),
            smoke_checks.verdict(shared, [(w1, "Succeeded", vis_log("s", workers[w1]))] * 2)]
    assert all(r["ok"] for r in rows), rows
    assert f"ran on {w2} and sees {workers[w2]}" in rows[0]["message"]
    assert rows[1]["message"] == (f"time-slicing on {w1} (4 replicas per GPU): 2 pods shared {workers[w1]}, "
                                  "as time-slicing allows")
    logs = {w: vis_log(w, u) for w, u in workers.items()}
    outcome = verdict.verdict("visibility", run.workers, logs, "", PENDING, {}, 1.0, rows, sharing.of(run.spec))
    assert outcome.ok, outcome.message
    assert "2 pods shared" in outcome.message and outcome.sharing.startswith("time-slicing, 4 replicas")
    suite, cases = junit_cases(outcome)
    assert cases["gpu-product-selector[NVIDIA-H200-SHARED]"] and cases[f"time-slicing[{w1}]"]


def test_check_pods_in_the_wrong_place_or_seeing_a_foreign_gpu_fail(state_dir):
    run = mixed_run()
    (product,) = smoke_checks.for_plan(run)
    worker = run.gpu_workers[0]
    mine = worker.gpus[0].uuid
    assert smoke_checks.verdict(product, [(worker.node, "Succeeded", vis_log("p", mine))])["ok"]
    elsewhere = smoke_checks.verdict(product, [("gpu-cluster-worker2", "Succeeded", vis_log("p", mine))])
    assert not elsewhere["ok"] and "landed on gpu-cluster-worker2, which has no NVIDIA-H200" in elsewhere["message"]
    foreign = smoke_checks.verdict(product, [(worker.node, "Succeeded", vis_log("p", "GPU-other"))])
    assert not foreign["ok"] and "not the worker's GPU(s): GPU-other" in foreign["message"]
    pending = smoke_checks.verdict(product, [(None, "Pending", None)])
    assert not pending["ok"] and "not scheduled" in pending["message"]
    outcome = verdict.verdict("visibility", run.workers, {}, "", PENDING, {"cpu1": PENDING}, 1.0, [pending])
    assert not outcome.ok and "gpu-product-selector[NVIDIA-H200]: a pod was not scheduled" in outcome.message


def test_a_shared_pod_seeing_two_gpus_or_none_fails():
    from kindgpu.payloads import judge

    assert not judge.judge_shared([vis_log("s", "GPU-a", "GPU-b"), vis_log("s", "GPU-a")], ["GPU-a", "GPU-b"], 2,
                                  "w").ok
    assert not judge.judge_shared([vis_log("s", "GPU-a")], ["GPU-a"], 2, "w").ok  # only one pod
    distinct = judge.judge_shared([vis_log("s", "GPU-a"), vis_log("s", "GPU-b")], ["GPU-a", "GPU-b"], 2, "w")
    assert distinct.ok and "got GPUs GPU-a, GPU-b" in distinct.message


def test_a_smoke_image_that_cannot_be_pulled_fails_the_wait_at_once():
    from kubernetes.client import (
        V1ContainerState,
        V1ContainerStateWaiting,
        V1ContainerStatus,
        V1ObjectMeta,
        V1Pod,
        V1PodSpec,
        V1PodStatus,
    )

    def pod(reason):
        status = V1ContainerStatus(name="payload", image="local/torch:1", image_id="", ready=False, restart_count=0,
                                   state=V1ContainerState(waiting=V1ContainerStateWaiting(reason=reason, message="m")))
        return V1Pod(metadata=V1ObjectMeta(name=f"p-{reason}"), spec=V1PodSpec(containers=[], node_name="w1"),
                     status=V1PodStatus(container_statuses=[status]))

    # A first failed pull may be a registry hiccup and a pull in progress is fine; a back-off is final here.
    assert smoke_run.image_pull_failure([pod("ErrImagePull"), pod("ContainerCreating")]) == ("", "")
    what, fix = smoke_run.image_pull_failure([pod("ContainerCreating"), pod("ImagePullBackOff")])
    assert "p-ImagePullBackOff on w1 cannot get image local/torch:1" in what
    assert "docker pull local/torch:1" in fix and "smoke.pytorchImage" in fix
    # smoke --kubeconfig loads nothing: the fix never says it would.
    what, fix = smoke_run.image_pull_failure([pod("ImagePullBackOff")], foreign=True)
    assert "push it to their registry" in fix and "--image" in fix and "invoke smoke` loads" not in fix


class NoCluster:
    """The run's API client where every call to the cluster is replaced: touching it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the cluster was asked for {name}")


def run_order(failure):
    """What SmokeRun.run does, in order, with the cluster's side replaced by a record of the calls."""
    run, order = smoke_run.SmokeRun(NoCluster(), shared_run(), "visibility"), []
    run.load_image = run.ensure_namespace = run.cleanup = lambda *args: None

    def create(obj):
        labels = obj["spec"]["template"]["metadata"]["labels"] if obj["kind"] == "Job" else {}
        order.append("check pod" if smoke_checks.CHECK_LABEL in labels else f"create {obj['kind']}")

    run.create = create
    run.failure_fix = ""
    run.wait_jobs = lambda: order.append("wait for the level's pods") or ({}, failure)
    run.check_pending = lambda *check: {"ok": True}
    run.finish_check = lambda check: order.append(f"finish {check.kind}") or {"ok": True, "check": check.kind,
                                                                             "message": ""}
    run.run()
    return order


def test_check_pods_start_after_the_level_pods_ended_and_not_after_a_failure(state_dir):
    """A check pod asks for a GPU the level's pod holds: started beside it, it can wait in the
    scheduler's back-off past smoke's timeout (the H200's compute run)."""
    order = run_order(failure="")
    waited = order.index("wait for the level's pods")
    assert "check pod" not in order[:waited] and order[waited + 1:].count("check pod") == 3  # product 1, shared 2
    assert order[-2:] == ["finish product", "finish shared"]
    assert "check pod" not in run_order(failure="pod p failed") and not any(
        step.startswith("finish") for step in run_order(failure="pod p failed"))
