"""Smoke payloads: the API the Job builder uses, the payload scripts, and the judge.

Judged against real output captured on a 2 x H200 machine (tests/testdata/payloads),
and against doctored copies of it. Stdlib only.
"""

import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kindgpu import inventory, payloads
from kindgpu.payloads import judge, levels
from paths import REPO, parse_information_dump

DATA = Path(__file__).parent / "testdata" / "payloads" / "h200x2"
SUMMARY = json.loads((DATA / "summary.json").read_text())
UUID0, UUID1 = (u for _, u in SUMMARY["gpus"])
W1, W2 = "kindgpu-worker", "kindgpu-worker2"
ASSIGN = {W1: [UUID0], W2: [UUID1]}
OTHER_UUID = "GPU-deadbeef-0000-1111-2222-333333333333"


def log(name):
    return (DATA / f"{name}.log").read_text()


def result_line(text):
    return [line for line in text.splitlines() if line.startswith(payloads.RESULT_TAG)][-1]


def edit_result(text, **changes):
    """Rewrite fields of the log's KINDGPU-RESULT line."""
    line = result_line(text)
    data = json.loads(line[len(payloads.RESULT_TAG):])
    data.update(changes)
    return text.replace(line, f"{payloads.RESULT_TAG} {json.dumps(data)}")


def without_result(text):
    return "\n".join(line for line in text.splitlines() if payloads.RESULT_TAG not in line)


TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/kindgpu/payloads/x.py", line 1, in <module>\n'
    "RuntimeError: CUDA error: an illegal memory access was encountered\n"
)


# ---------------------------------------------------------------- fixtures are what they claim


def test_fixtures_come_from_the_two_gpu_host():
    host = (DATA / "host.txt").read_text()
    query = host.split("$ ", 2)[1].split("\n", 1)[1].split("(exit")[0]
    rows = inventory.parse_query_csv(query)
    assert [(r["index"], r["uuid"]) for r in rows] == [(0, UUID0), (1, UUID1)]
    assert {r["name"] for r in rows} == {"NVIDIA H200"}
    procs = parse_information_dump(host)
    assert {p["uuid"]: p["minor"] for p in procs} == {UUID0: 0, UUID1: 1}


def test_every_fixture_run_was_judged_on_the_machine_as_it_is_judged_here():
    expected = {
        "visibility": lambda name: judge.judge_visibility(log(name), ASSIGN[W2 if name.endswith("2") else W1]),
    }
    for run in SUMMARY["runs"]:
        name = run["log"][: -len(".log")]
        if run["level"] == "visibility":
            verdict = expected["visibility"](name)
        elif run["level"] == "compute":
            uuids = run["expected"]
            verdict = judge.judge_compute(log(name), len(uuids), uuids)
        else:
            one_worker = "oneworker" in name
            verdict = judge.judge_collective(log(name), 2, 2 if one_worker else 1, 1 if one_worker else 2)
        assert verdict.ok == run["ok"], (name, verdict.message, run["message"])


# ---------------------------------------------------------------- API for the Job builder


def test_payload_files_and_commands():
    files = payloads.payload_files()
    assert set(files) == {"visibility.sh", "compute.py", "collective.py"}
    assert all(p.is_file() for p in files.values())
    data = payloads.configmap_data()
    assert all(re.fullmatch(r"[-._a-zA-Z0-9]+", key) for key in data)
    assert data["visibility.sh"].startswith("#!/bin/sh")
    assert payloads.command("visibility") == ["sh", "/kindgpu/payloads/visibility.sh"]
    assert payloads.command("compute") == ["python3", "/kindgpu/payloads/compute.py"]
    assert payloads.command("collective") == ["python3", "/kindgpu/payloads/collective.py"]
    assert payloads.DEFAULT_LEVEL == "visibility"
    with pytest.raises(ValueError, match="unknown smoke level"):
        payloads.command("nope")


def test_payload_scripts_compile():
    for name in ("compute.py", "collective.py", "judge.py", "__init__.py"):
        py_compile.compile(str(payloads.PAYLOAD_DIR / name), doraise=True)
    py_compile.compile(str(REPO / "hack" / "gpu-host-check" / "gpu_host_check.py"), doraise=True)


def test_level_envs():
    env = payloads.env("visibility", worker_name=W1, gpu_uuids=[UUID0])
    assert env["KINDGPU_EXPECTED_UUIDS"] == UUID0 and env["KINDGPU_WORKER"] == W1
    env = payloads.env("compute", worker_name=W1, gpu_uuids=[UUID0, UUID1])
    assert env["KINDGPU_EXPECTED_GPUS"] == "2"
    assert all(isinstance(v, str) for v in env.values())


def test_collective_env_separates_workers_for_nccl():
    envs = [payloads.collective_env(r, 3, "kindgpu-smoke-0.kindgpu-smoke", 29500, f"w{r}", gpu_counts=[2, 1, 4])
            for r in range(3)]
    assert [e["KINDGPU_RANK_OFFSET"] for e in envs] == ["0", "2", "3"]
    assert {e["KINDGPU_WORLD_RANKS"] for e in envs} == {"7"}
    assert [e["KINDGPU_EXPECTED_GPUS"] for e in envs] == ["2", "1", "4"]
    assert len({e["NCCL_HOSTID"] for e in envs}) == 3  # one NCCL host per pod
    for e in envs:
        assert e["MASTER_ADDR"] == "kindgpu-smoke-0.kindgpu-smoke" and e["MASTER_PORT"] == "29500"
        assert e["NCCL_SOCKET_IFNAME"] == "eth0" and e["NCCL_IB_DISABLE"] == "1"
        assert e["NCCL_NVLS_ENABLE"] == "0" and e["NCCL_DEBUG"] == "INFO"
        assert "NCCL_P2P_DISABLE" not in e  # P2P stays on inside a pod
    uniform = payloads.collective_env(1, 2, "m", worker_name="b", gpu_counts=2)
    assert uniform["KINDGPU_RANK_OFFSET"] == "2" and uniform["KINDGPU_WORLD_RANKS"] == "4"
    with pytest.raises(ValueError):
        payloads.collective_env(2, 2, "m")
    with pytest.raises(ValueError):
        payloads.collective_env(0, 2, "m", gpu_counts=[1])
    with pytest.raises(ValueError, match="master_addr"):
        payloads.env("collective", worker_name="w", gpu_uuids=[UUID0])


def test_pod_volumes_give_collective_a_memory_dev_shm():
    assert payloads.pod_volumes("visibility") == ([], [])
    volumes, mounts = payloads.pod_volumes("collective")
    assert volumes[0]["emptyDir"]["medium"] == "Memory"
    assert mounts == [{"name": volumes[0]["name"], "mountPath": "/dev/shm"}]


# ---------------------------------------------------------------- parse_result


def test_parse_result_missing_and_garbled():
    assert judge.parse_result("hello\n")[0] is None
    assert "no KINDGPU-RESULT" in judge.parse_result("hello\n")[1]
    result, problem = judge.parse_result('KINDGPU-RESULT {"level": "visib')
    assert result is None and "garbled" in problem
    assert "not a JSON object" in judge.parse_result("KINDGPU-RESULT [1]")[1]
    # kubectl logs --prefix puts the pod in front; the last result line counts.
    text = '[pod/a] KINDGPU-RESULT {"ok": false}\n[pod/a] KINDGPU-RESULT {"ok": true}\n'
    assert judge.parse_result(text)[0] == {"ok": True}


# ---------------------------------------------------------------- level 1


def test_visibility_real_outputs_pass():
    for w in (W1, W2):
        v = judge.judge_visibility(log(f"visibility-{w}"), ASSIGN[w], w)
        assert v.ok, v.message
        assert v.details["uuids"] == ASSIGN[w]
    cv = judge.judge_cluster("visibility", {w: log(f"visibility-{w}") for w in ASSIGN}, ASSIGN)
    assert cv.ok, cv.message


def test_visibility_real_unisolated_output_fails():
    v = judge.judge_visibility(log("visibility-unisolated"), [UUID0])
    assert not v.ok
    assert f"visible but not assigned: {UUID1}" in v.message


def test_visibility_wrong_uuid_fails():
    doctored = log(f"visibility-{W1}").replace(UUID0, OTHER_UUID)
    v = judge.judge_visibility(doctored, [UUID0])
    assert not v.ok
    assert f"assigned but not visible: {UUID0}" in v.message and OTHER_UUID in v.message


def test_visibility_missing_gpu_and_duplicate_fail():
    text = log(f"visibility-{W1}")
    assert "assigned but not visible" in judge.judge_visibility(text, [UUID0, UUID1]).message
    dup = edit_result(text, uuids=[UUID0, UUID0], count=2)
    v = judge.judge_visibility(dup, [UUID0])
    assert not v.ok and "listed more than once" in v.message


def test_visibility_result_line_must_agree_with_echoed_lines():
    doctored = edit_result(log(f"visibility-{W1}"), uuids=[UUID1])
    v = judge.judge_visibility(doctored, [UUID1])
    assert not v.ok and "echoed" in v.message


def test_visibility_missing_garbled_traceback_fail():
    text = log(f"visibility-{W1}")
    assert "no KINDGPU-RESULT" in judge.judge_visibility(without_result(text), [UUID0]).message
    garbled = text.replace(result_line(text), result_line(text)[:60])
    assert "garbled" in judge.judge_visibility(garbled, [UUID0]).message
    assert "traceback" in judge.judge_visibility(TRACEBACK + text, [UUID0]).message
    failing = edit_result(text, ok=False, rc=9, error="nvidia-smi exited 9")
    assert not judge.judge_visibility(failing, [UUID0]).ok
    assert not judge.judge_visibility(text, None).ok  # nothing to judge against


def test_visibility_uuid_on_two_workers_fails_the_run():
    # Both workers see GPU 0: worker2's own verdict fails, and the run names the shared GPU.
    logs = {W1: log(f"visibility-{W1}"), W2: log(f"visibility-{W1}")}
    cv = judge.judge_cluster("visibility", logs, ASSIGN)
    assert not cv.ok and not cv.workers[W2].ok and cv.workers[W1].ok
    assert cv.details["shared_gpus"] == {UUID0: [W1, W2]}
    # Even when a (bad) assignment gives both workers the same GPU, the run fails.
    cv = judge.judge_cluster("visibility", logs, {W1: [UUID0], W2: [UUID0]})
    assert all(v.ok for v in cv.workers.values()) and not cv.ok
    assert f"GPU {UUID0} seen on 2 workers" in cv.message


def test_visibility_missing_worker_log_fails_the_run():
    cv = judge.judge_cluster("visibility", {W1: log(f"visibility-{W1}")}, ASSIGN)
    assert not cv.ok and "no pod log" in cv.workers[W2].message


def test_visibility_on_a_cluster_kindgpu_did_not_make_is_judged_by_each_nodes_count():
    """Only the node's allocatable count is known there: exactly that many distinct GPUs pass."""
    logs = {w: log(f"visibility-{w}") for w in ASSIGN}
    counts = {w: len(u) for w, u in ASSIGN.items()}
    cv = judge.judge_cluster("visibility", logs, counts)
    assert cv.ok, cv.message
    assert "sees the 1 GPU(s) its node offers" in cv.workers[W1].message
    cv = judge.judge_cluster("visibility", logs, {W1: 2, W2: 1})
    assert not cv.ok and "sees 1 GPU(s), but its node offers 2" in cv.workers[W1].message
    # The same GPU from two nodes fails the run even when each count is right.
    cv = judge.judge_cluster("visibility", {W1: logs[W1], W2: logs[W1]}, counts)
    assert not cv.ok and f"GPU {UUID0} seen on 2 workers" in cv.message
    # A pod that lists one GPU twice does not make up the count.
    dup = edit_result(logs[W1], uuids=[UUID0, UUID0], count=2)
    assert not judge.judge_visibility(dup, None, expected_count=2).ok


# ---------------------------------------------------------------- level 2


def test_compute_real_outputs_pass():
    for w in (W1, W2):
        v = judge.judge_compute(log(f"compute-{w}"), 1, ASSIGN[w], w)
        assert v.ok, v.message
    v = judge.judge_compute(log("compute-kindgpu-worker-allgpus"), 2, [UUID0, UUID1])
    assert v.ok, v.message
    times = [g["matmul_ms"] for g in v.details["gpus"]]
    assert len(times) == 2 and all(0 < t < 10 for t in times)
    cv = judge.judge_cluster("compute", {w: log(f"compute-{w}") for w in ASSIGN}, ASSIGN)
    assert cv.ok, cv.message


def test_compute_wrong_product_fails_even_if_payload_says_ok():
    text = log(f"compute-{W1}")
    gpus = json.loads(result_line(text)[len(payloads.RESULT_TAG):])["gpus"]
    gpus[0]["max_abs_err"] = 0.25
    v = judge.judge_compute(edit_result(text, gpus=gpus), 1, [UUID0])
    assert not v.ok and "product off by 0.25" in v.message
    gpus[0]["max_abs_err"] = float("nan")
    assert not judge.judge_compute(edit_result(text, gpus=gpus), 1, [UUID0]).ok


def test_compute_wrong_count_or_gpu_fails():
    text = log(f"compute-{W1}")
    assert "1 GPU(s) computed, expected 2" in judge.judge_compute(text, 2).message
    v = judge.judge_compute(text, 1, [UUID1])
    assert not v.ok and "assigned but not computed on" in v.message


def test_compute_missing_garbled_traceback_failure_fail():
    text = log(f"compute-{W1}")
    assert not judge.judge_compute(without_result(text), 1).ok
    assert not judge.judge_compute(text.replace('"level": "compute"', '"level": "comp'), 1).ok
    assert "traceback" in judge.judge_compute(text + TRACEBACK, 1).message
    assert not judge.judge_compute(edit_result(text, ok=False, error="GPU 0 failed"), 1).ok
    assert not judge.judge_compute(edit_result(text, gpus=[]), None).ok


# ---------------------------------------------------------------- level 3


def test_collective_real_outputs_with_kind_settings_pass():
    logs = {w: log(f"collective-kind-{w}") for w in ASSIGN}
    for w, text in logs.items():
        v = judge.judge_collective(text, world_size=2, local_gpus=1, nnodes=2, worker=w)
        assert v.ok, v.message
        assert v.details["cross_worker_transports"] == ["NET/Socket/0"]
        assert v.details["nccl_nodes"] == [2]
        assert v.details["busbw_gbps"] > 0
    cv = judge.judge_cluster("collective", logs, ASSIGN)
    assert cv.ok, cv.message


def test_collective_one_worker_two_gpus_uses_p2p_inside_the_pod():
    v = judge.judge_collective(log("collective-oneworker-kindgpu-worker-allgpus"), 2, 2, 1)
    assert v.ok, v.message
    assert v.details["cross_worker_transports"] == []
    assert any(t.startswith("P2P/") for t in v.details["transports"])


def test_collective_without_isolation_fails_on_p2p_between_workers():
    for w in ASSIGN:
        text = log(f"collective-bare-{w}")
        assert json.loads(result_line(text)[len(payloads.RESULT_TAG):])["ok"] is True  # the sum was right...
        v = judge.judge_collective(text, 2, 1, 2, w)
        assert not v.ok  # ...but through a path that cannot work between containers
        assert "through P2P/CUMEM" in v.message and "NCCL counted [1] node(s)" in v.message
        # Without the channel lines, NCCL's node count still gives it away.
        quiet = "\n".join(line for line in text.splitlines() if "NCCL INFO Channel" not in line)
        v = judge.judge_collective(quiet, 2, 1, 2, w)
        assert not v.ok and "node(s)" in v.message


def test_collective_with_p2p_and_shm_disabled_passes():
    for w in ASSIGN:
        v = judge.judge_collective(log(f"collective-nop2pshm-{w}"), 2, 1, 2, w)
        assert v.ok, v.message


def test_collective_wrong_sum_fails():
    text = log(f"collective-kind-{W1}")
    v = judge.judge_collective(edit_result(text, mismatches_total=5), 2, 1, 2)
    assert not v.ok and "sum wrong in 5 element(s)" in v.message
    v = judge.judge_collective(edit_result(text, max_abs_err_total=3.0), 2, 1, 2)
    assert not v.ok and "off by up to 3.0" in v.message
    v = judge.judge_collective(edit_result(text, mismatches_total=None), 2, 1, 2)
    assert not v.ok and "not checked" in v.message


def test_collective_wrong_world_rc_or_ranks_fail():
    text = log(f"collective-kind-{W1}")
    assert "world size 2, expected 4" in judge.judge_collective(text, 4, 1, 2).message
    assert not judge.judge_collective(edit_result(text, rc=1), 2, 1, 2).ok
    assert "expected one per GPU (2)" in judge.judge_collective(text, 2, 2, 2).message
    assert not judge.judge_collective(edit_result(text, busbw_gbps=None), 2, 1, 2).ok


def test_collective_missing_garbled_traceback_fail():
    text = log(f"collective-kind-{W1}")
    assert not judge.judge_collective(without_result(text), 2, 1, 2).ok
    assert "traceback" in judge.judge_collective(text + TRACEBACK, 2, 1, 2).message
    garbled = text.replace(result_line(text), result_line(text)[:-40])
    assert "garbled" in judge.judge_collective(garbled, 2, 1, 2).message


def test_collective_gpu_on_two_workers_fails_the_run():
    logs = {W1: log(f"collective-kind-{W1}"), W2: log(f"collective-kind-{W1}")}
    cv = judge.judge_cluster("collective", logs, ASSIGN)
    assert not cv.ok and UUID0 in cv.message


def test_nccl_log_parsers():
    conns = judge.nccl_connections(log(f"collective-kind-{W1}"))
    assert (0, 1, "NET/Socket/0") in conns and (1, 0, "NET/Socket/0") in conns
    assert judge.nccl_topology(log(f"collective-bare-{W1}")) == {0: (2, 1, 2)}
    shm = "h:1:1 [0] NCCL INFO Channel 00 : 0[0] -> 1[1] via SHM/direct/direct"
    assert judge.nccl_connections(shm) == [(0, 1, "SHM/direct/direct")]


def test_judge_dispatch():
    assert judge.judge("visibility", log(f"visibility-{W1}"), expected_uuids=[UUID0]).ok
    assert judge.judge("compute", log(f"compute-{W1}"), expected_count=1).ok
    assert judge.judge("collective", log(f"collective-kind-{W1}"), world_size=2, local_gpus=1, nnodes=2).ok
    with pytest.raises(ValueError):
        judge.judge("bogus", "")


# ---------------------------------------------------------------- the payloads themselves


FAKE_SMI = """#!/bin/sh
case "$FAKE" in
  one) echo {u0} ;;
  dup) printf '%s\\n%s\\n' {u0} {u0} ;;
  broken) echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."; exit 9 ;;
  garbled) echo 'No devices were found' ;;
  nodev) echo 'No devices were found'; exit 6 ;;
  none) ;;
esac
"""


def run_visibility(tmp_path, fake, expected=(UUID0,)):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    smi = bindir / "nvidia-smi"
    smi.write_text(FAKE_SMI.format(u0=UUID0))
    smi.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", FAKE=fake,
               **payloads.visibility_env(W1, list(expected)))
    script = payloads.payload_files()["visibility.sh"]
    proc = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30)
    return proc.returncode, proc.stdout + proc.stderr


def test_visibility_script_passes_on_assigned_gpu(tmp_path):
    rc, out = run_visibility(tmp_path, "one")
    assert rc == 0
    assert judge.judge_visibility(out, [UUID0]).ok
    assert result_line(out) == out.rstrip("\n").splitlines()[-1]  # the final line


@pytest.mark.parametrize("fake,why", [
    ("dup", "listed more than once"),
    ("broken", "nvidia-smi exited 9"),
    ("garbled", "not GPU UUIDs"),
])
def test_visibility_script_failures(tmp_path, fake, why):
    rc, out = run_visibility(tmp_path, fake)
    assert rc != 0
    v = judge.judge_visibility(out, [UUID0])
    assert not v.ok and why in v.message


def test_visibility_script_checks_expected_itself(tmp_path):
    rc, out = run_visibility(tmp_path, "one", expected=(UUID1,))
    assert rc == 1
    assert json.loads(result_line(out)[len(payloads.RESULT_TAG):])["ok"] is False
    assert not judge.judge_visibility(out, [UUID1]).ok


@pytest.mark.parametrize("level", ["compute", "collective"])
def test_torch_payloads_fail_cleanly_without_a_gpu(tmp_path, level):
    """On this CPU-only host the payload must still end with a (failing) result line."""
    script = payloads.payload_files()[payloads.SCRIPTS[level]]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KINDGPU_", "NCCL_"))}
    env.update({"KINDGPU_WORKER": W1, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""})
    proc = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert result_line(proc.stdout) == proc.stdout.rstrip("\n").splitlines()[-1]
    verdict = judge.judge(level, out, expected_count=1, world_size=1, local_gpus=1, nnodes=1)
    assert not verdict.ok
    assert "payload reported failure" in verdict.message


def test_judge_is_stdlib_only():
    source = (payloads.PAYLOAD_DIR / "judge.py").read_text() + (payloads.PAYLOAD_DIR / "__init__.py").read_text()
    imports = set(re.findall(r"^(?:from|import) ([a-z_]+)", source, flags=re.M))
    assert imports <= {"__future__", "json", "math", "re", "dataclasses", "shlex", "pathlib"}
    assert shutil.which("sh")


def test_the_level_table_is_stdlib_only_and_checks_a_level_once():
    source = (payloads.PAYLOAD_DIR / "levels.py").read_text()
    assert set(re.findall(r"^(?:from|import) ([a-z_.]+)", source, flags=re.M)) <= {"__future__", "dataclasses"}
    assert levels.problem("compute") is None and levels.problem("visibility", simulated=True) is None
    assert levels.problem("nope") == ("unknown smoke level 'nope'", "choose one of visibility, compute, collective")
    assert levels.problem("collective", simulated=True)[0].startswith("simulated GPUs run the visibility level only")
    assert [levels.get(n).rendezvous for n in levels.LEVELS] == [False, False, True]
    spec = {"smoke": {"cudaImage": "cuda:1", "pytorchImage": "torch:1"}}
    assert [levels.image(spec, n) for n in levels.LEVELS] == ["cuda:1", "torch:1", "torch:1"]
    assert levels.image(spec, "compute", "sim:1") == "sim:1"


# ---------------------------------------------------------------- CPU-only workers: no GPU expected

NO_GPU = Path(__file__).parent / "testdata" / "payloads" / "cpu-only"
HOST_NO_GPU = (NO_GPU / "visibility-host-no-gpu.log").read_text()


def test_cpu_only_recorded_output_passes_only_when_no_gpu_is_expected():
    v = judge.judge_visibility(HOST_NO_GPU, [], W2, expect_none=True)
    assert v.ok, v.message
    assert v.details == {"expected": [], "uuids": [], "nvidia_smi": "absent"}
    assert judge.judge("visibility", HOST_NO_GPU, expect_none=True).ok
    # The same output from a GPU worker is a failure: it was given a GPU and sees none.
    assert not judge.judge_visibility(HOST_NO_GPU, [UUID0]).ok


@pytest.mark.parametrize("change,why", [
    (dict(uuids=[UUID0], count=1), "1 GPU(s) visible on a CPU-only worker"),
    (dict(devices=["/dev/nvidia0"]), "GPU device node(s) in the pod: /dev/nvidia0"),
    (dict(rc=9), "nvidia-smi exited 9: cannot tell"),
    (dict(rc=6), "nvidia-smi exited 6"),  # exit 6 without nvidia-smi's "No devices were found"
    (dict(bad_lines=1), "not GPU UUIDs"),
    (dict(expect_none=False), "did not run with KINDGPU_EXPECT_NONE=1"),
    (dict(devices=None), "does not list the pod's GPU device nodes"),
    (dict(ok=False, error="sees 1 GPU(s), expected none"), "payload reported failure"),
])
def test_cpu_only_doctored_output_fails(change, why):
    v = judge.judge_visibility(edit_result(HOST_NO_GPU, **change), [], W2, expect_none=True)
    assert not v.ok and why in v.message, v.message


def test_cluster_with_a_cpu_only_worker():
    logs = {W1: log(f"visibility-{W1}"), "cpu": HOST_NO_GPU}
    cv = judge.judge_cluster("visibility", logs, {W1: [UUID0]}, cpu_only=["cpu"])
    assert cv.ok, cv.message
    assert "(1 CPU-only, seeing no GPU)" in cv.message
    # The CPU-only worker's pod sees worker 1's GPU: its verdict fails and the run names the GPU.
    logs["cpu"] = log(f"visibility-{W1}")
    cv = judge.judge_cluster("visibility", logs, {W1: [UUID0]}, cpu_only=["cpu"])
    assert not cv.ok and not cv.workers["cpu"].ok and cv.workers[W1].ok
    assert cv.details["shared_gpus"] == {UUID0: ["cpu", W1]}
    # No log from the CPU-only worker fails the run, at any level.
    cv = judge.judge_cluster("compute", {W1: log(f"compute-{W1}")}, {W1: [UUID0]}, cpu_only=["cpu"])
    assert cv.workers[W1].ok and not cv.ok and "no pod log" in cv.workers["cpu"].message


def minimal_path(tmp_path):
    """A PATH holding only the tools the payload uses: no nvidia-smi, whatever the host has."""
    bindir = tmp_path / "minbin"
    bindir.mkdir()
    for tool in ("sh", "tr", "sed", "sort", "uniq"):
        (bindir / tool).symlink_to(shutil.which(tool))
    return str(bindir)


def run_none(tmp_path, fake=None, devices=(), **env_extra):
    """The visibility payload as a CPU-only worker's pod runs it; fake: an nvidia-smi mode, or none
    at all; devices: the GPU device nodes in its /dev (links to /dev/null, a character device)."""
    path = minimal_path(tmp_path)
    if fake:
        smi = Path(path) / "nvidia-smi"
        smi.write_text(FAKE_SMI.format(u0=UUID0))
        smi.chmod(0o755)
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "nvidiactl").symlink_to("/dev/null")  # not a GPU: stays out of the count
    for name in devices:
        (dev / name).symlink_to("/dev/null")
    env = {"PATH": path, "FAKE": fake or "", "KINDGPU_DEV_DIR": str(dev),
           **payloads.visibility_env(W2, expect_none=True), **env_extra}
    script = payloads.payload_files()["visibility.sh"]
    proc = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("fake,how", [(None, "absent"), ("nodev", "no devices"), ("none", "listed none")])
def test_visibility_script_without_a_gpu_passes_when_none_is_expected(tmp_path, fake, how):
    rc, out = run_none(tmp_path, fake)
    assert rc == 0, out
    v = judge.judge_visibility(out, [], W2, expect_none=True)
    assert v.ok, v.message
    assert v.details["nvidia_smi"] == how


@pytest.mark.parametrize("fake,why", [
    ("one", "1 GPU(s) visible on a CPU-only worker"),
    ("broken", "nvidia-smi exited 9"),
    ("garbled", "not GPU UUIDs"),
])
def test_visibility_script_fails_when_a_cpu_only_pod_may_see_a_gpu(tmp_path, fake, why):
    rc, out = run_none(tmp_path, fake)
    assert rc == 1, out
    v = judge.judge_visibility(out, [], W2, expect_none=True)
    assert not v.ok and why in v.message, v.message


def test_visibility_script_fails_a_cpu_only_pod_holding_a_gpu_device_node(tmp_path):
    rc, out = run_none(tmp_path, None, devices=["nvidia3"])
    assert rc == 1, out
    v = judge.judge_visibility(out, [], W2, expect_none=True)
    assert not v.ok and f"GPU device node(s) in the pod: {tmp_path}/dev/nvidia3" in v.message, v.message


def test_visibility_script_refuses_expecting_none_and_uuids_at_once(tmp_path):
    rc, out = run_none(tmp_path, None, KINDGPU_EXPECTED_UUIDS=UUID0)
    assert rc == 1 and "contradicts KINDGPU_EXPECTED_UUIDS" in out
    with pytest.raises(ValueError):
        payloads.visibility_env(W2, [UUID0], expect_none=True)
