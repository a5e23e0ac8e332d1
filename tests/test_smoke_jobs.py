"""Smoke Jobs and reports (the Jobs run for real in tests/e2e; compute/collective need GPUs)."""

import xml.etree.ElementTree as ET

import pytest

from kindgpu import plan, smoke, spec
from kindgpu.errors import SpecError
from kindgpu.inventory import GPU

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
    from kindgpu import spec as specs

    doc = specs.resolve(env={}, flags={})
    doc["smoke"]["env"] = {"NCCL_NVLS_ENABLE": "0", "BAD-NAME": "1", "N": 1}
    found = "\n".join(map(str, specs.problems(doc)))
    assert "BAD-NAME" in found and "smoke.env.N" in found
