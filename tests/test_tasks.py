"""The tasks as users run them (`invoke ...` in a subprocess) on a bare host: no nvidia-smi, kind,
kubectl or Docker. Flags and spec are checked before any of those is looked at; errors read
`ERROR: <message>`, then the fix on a line of its own. And every step is a task of its own, made
from the one list: asking for one runs what it needs first."""

import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from invoke import Context

from kindgpu import flags, nodes, plan, render, spec, steps, tasks, versions
from kindgpu.errors import SpecError
from paths import REPO, TESTDATA

SPECS = TESTDATA / "specs"


@pytest.fixture
def bare(tmp_path):
    """The environment of a host without an NVIDIA driver or cluster tools: PATH holds nothing."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CLUSTER_NAME", "KINDGPU_NODE_IMAGE")}
    return {**env, "PATH": str(empty), "KINDGPU_STATE_DIR": str(tmp_path / "state"),
            "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}


V1_34 = "kindest/node:v1.34.4"  # no Kubernetes-version rule applies to it on any host


def invoke(*args, env):
    return subprocess.run([sys.executable, "-m", "invoke", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=120)


def named(stderr):
    """The fields a SpecError lists, in order."""
    return re.findall(r"^  - (.+?): ", stderr, re.M)


@pytest.mark.parametrize("task", ["config", "up", "preflight"])
def test_spec_problems_exit_2_all_together_on_a_host_without_nvidia_smi(task, bare):
    out = invoke(task, "--config", SPECS / "invalid" / "apiversion-and-unknown-key.yaml", env=bare)
    assert out.returncode == 2, out.stderr
    assert sorted(named(out.stderr)) == ["apiVersion", "gpuCount"]
    assert ("  - apiVersion: 'kindgpu.dev/v1' is not supported\n"
            "    fix: use `apiVersion: kindgpu.dev/v1alpha1`") in out.stderr
    assert "cannot read this host's GPUs" not in out.stderr


def test_a_valid_spec_there_fails_on_the_gpus_with_the_fix_on_its_own_line(bare):
    """The same host, a good spec: only now is nvidia-smi asked for, and it is not there."""
    out = invoke("config", "--config", REPO / "configs" / "default.yaml", env=bare)
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith("ERROR: cannot read this host's GPUs: command failed (exit 127): nvidia-smi")
    assert lines[-1] == ("fix: run `invoke preflight` to see what is missing, or try kindgpu without "
                         "GPUs: --simulate 8")


@pytest.mark.parametrize("args, bad", [
    (["smoke", "--level", "nope"], ["--level"]),
    (["smoke", "--timeout", "x"], ["--timeout"]),
    (["smoke", "--timeout", "0"], ["--timeout"]),
    (["smoke", "--level", "nccl", "--timeout", "-5"], ["--level", "--timeout"]),
    (["up", "--workers", "two", "--until", "lable"], ["--workers", "--until"]),
    (["up", "--force", "create", "--force", "lable", "--simulate", "8"], ["--force"]),
    (["config", "--gpus", "0", "--simulate", "8"], ["--gpus"]),
    (["preflight", "--simulate", "1.5"], ["--simulate"]),
], ids=" ".join)
def test_bad_flags_exit_2_naming_each_flag_with_no_cluster(args, bad, bare):
    out = invoke(*args, env=bare)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("ERROR: invalid task flags")
    assert named(out.stderr) == bad


def test_good_smoke_flags_go_on_to_the_cluster(bare):
    """The counterpart: flags that pass reach the cluster lookup, which asks Docker first (none here)."""
    out = invoke("smoke", "--level", "compute", "--timeout", "1.5", env=bare)
    assert out.returncode == 1, out.stderr
    assert "ERROR: Docker is not reachable" in out.stderr
    assert "fix: start dockerd: `sudo systemctl start docker`" in out.stderr


@pytest.mark.parametrize("given, expected", [
    ({"timeout": "2.5"}, {"timeout": 2.5}),
    ({"timeout": "300"}, {"timeout": 300.0}),
    ({"timeout": None, "level": "collective"}, {"timeout": None, "level": "collective"}),
    ({"workers": "3", "gpus": 2, "simulate": None}, {"workers": 3, "gpus": 2, "simulate": None}),
    ({"force": ["create", "label"], "until": "isolate"}, {"force": ["create", "label"], "until": "isolate"}),
])
def test_flags_that_pass(given, expected):
    assert flags.parse(**given) == expected


@pytest.mark.parametrize("flag, value", [
    ("timeout", "x"), ("timeout", "0"), ("timeout", "-1"), ("timeout", "nan"), ("timeout", "inf"),
    ("workers", "0"), ("workers", "1.5"), ("gpus", "-2"), ("simulate", "eight"),
    ("level", "Visibility"), ("force", ["lable"]), ("until", "smoke"),
])
def test_flags_that_do_not(flag, value):
    with pytest.raises(SpecError) as caught:
        flags.parse(**{flag: value})
    assert [p.field for p in caught.value.problems] == [flags.flag_name(flag)]
    assert caught.value.exit_code == 2


def test_remote_api_is_refused_without_allow_remote_api(bare):
    out = invoke("config", "--config", SPECS / "invalid" / "remote-api.yaml", "--simulate", "8", env=bare)
    assert out.returncode == 2, out.stderr
    assert named(out.stderr) == ["apiServer.address"]
    assert ("fix: use 127.0.0.1; if other machines must reach the API, also set "
            "apiServer.allowRemoteAPI: true") in out.stderr
    assert not os.path.exists(bare["KINDGPU_STATE_DIR"])  # nothing written


WARNING = ("WARNING: apiServer.address: the cluster's admin API listens on 0.0.0.0 (port 6443), open to the "
           "network (apiServer.allowRemoteAPI: true)\n"
           "fix: use apiServer.address: 127.0.0.1 unless other machines must reach the API\n")


def test_remote_api_with_allow_remote_api_is_accepted_with_a_warning(bare):
    allowed = SPECS / "valid" / "remote-api-allowed.yaml"
    out = invoke("config", "--config", allowed, "--simulate", "8", "--json", "--node-image", V1_34, env=bare)
    assert out.returncode == 0, out.stderr
    assert out.stderr == WARNING
    assert json.loads(out.stdout)["workers"]  # stdout stays JSON
    with open(os.path.join(bare["KINDGPU_STATE_DIR"], "gpu-cluster", "kind-config.yaml")) as f:
        kind_config = f.read()
    assert "apiServerAddress: 0.0.0.0" in kind_config and "apiServerPort: 6443" in kind_config
    # up warns before it looks at anything (here it then finds no Docker).
    up = invoke("up", "--config", allowed, "--simulate", "8", "--node-image", V1_34, env=bare)
    assert up.stderr.startswith(WARNING) and "Docker is not reachable" in up.stderr
    assert up.returncode == 1


def test_loopback_spec_prints_no_warning(bare):
    out = invoke("config", "--simulate", "8", "--dry-run", "--node-image", V1_34, env=bare)
    assert out.returncode == 0 and out.stderr == ""


def test_a_cgroup_v1_host_is_warned_that_the_kubelet_is_told_to_start_from_1_35():
    doc = spec.resolve(env={}, flags={"simulate": 8})
    on_v1 = plan.make_plan(doc, runtime=versions.Runtime(kubernetes=(1, 35, 0), cgroup=1))
    [warning] = on_v1.warnings()
    assert warning.field == "nodeImage" and "failCgroupV1: false" in warning.message
    assert "systemd.unified_cgroup_hierarchy=1" in warning.fix
    assert "failCgroupV1: false" in render.to_yaml(render.kind_config(on_v1))
    for runtime in (versions.Runtime((1, 34, 4), 1), versions.Runtime((1, 37, 2), 2), versions.Runtime(None, 1)):
        quiet = plan.make_plan(doc, runtime=runtime)
        assert quiet.warnings() == [] and "failCgroupV1" not in render.to_yaml(render.kind_config(quiet))


@pytest.mark.parametrize("spec, status", [
    (SPECS / "valid" / "remote-api-allowed.yaml", "WARN"),
    (REPO / "configs" / "default.yaml", "PASS"),
])
def test_preflight_shows_the_api_server_address(spec, status, bare):
    out = invoke("preflight", "--config", spec, "--simulate", "8", "--json", env=bare)
    check = {c["id"]: c for c in json.loads(out.stdout)["checks"]}["api-server"]
    assert check["status"] == status
    assert check["details"]["address"] == ("0.0.0.0" if status == "WARN" else "127.0.0.1")


def test_each_step_without_a_task_of_its_own_becomes_one_in_pipeline_order():
    names = [s.name for s in steps.pipeline()]
    assert [t.name for t in tasks.STEP_TASKS] == ["create", "label", "isolate", "device-plugin"]
    assert set(names) <= set(tasks.ns.task_names)
    assert ", ".join(names) in tasks.ns["up"].__doc__


def test_a_step_task_runs_the_steps_before_it_first_and_stops_after_it(state_dir, monkeypatch, capsys):
    """No cluster yet: Docker (faked at its client) has no node containers."""
    no_containers = SimpleNamespace(containers=SimpleNamespace(list=lambda **filters: []),
                                    info=lambda: {"CgroupVersion": "2"})
    monkeypatch.setattr(nodes, "docker_client", lambda: no_containers)
    monkeypatch.setenv("KUBECONFIG", str(state_dir.parent / "kubectl-config"))
    tasks.ns["label"](Context(), name="t", simulate="8", dry_run=True)
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines()] == ["preflight", "config", "create", "label", "kubeconfig"]
    assert "would run: cluster t does not exist" in out and "label  would run: the cluster is not up yet" in out
    assert f"kubeconfig  would merge context kind-t into {state_dir.parent / 'kubectl-config'}" in out
    assert not (state_dir / "t").exists()  # a dry run writes no state
    assert not (state_dir.parent / "kubectl-config").exists()  # nor merges
    tasks.ns["label"](Context(), name="t", simulate="8", dry_run=True, no_merge=True)
    assert "kubeconfig" not in capsys.readouterr().out


@pytest.mark.parametrize("args, env_extra, flag", [
    (["config", "--config", "{dir}"], {}, "--config: {dir} is a directory, not a file"),
    (["config", "--config", "{dir}/missing.yaml"], {}, "--config: {dir}/missing.yaml does not exist"),
    (["config", "--simulate", "2"], {"KINDGPU_STATE_DIR": "{file}"}, "KINDGPU_STATE_DIR: {file} is a file"),
    (["status", "--name", "x"], {"KINDGPU_STATE_DIR": "{file}/state"}, "KINDGPU_STATE_DIR: {file} is a file"),
    (["smoke", "--junit", "{dir}"], {}, "--junit: {dir} is a directory, not a file"),
    (["smoke", "--kubeconfig", "{dir}/nope"], {}, "--kubeconfig: {dir}/nope does not exist"),
    (["down", "--kubeconfig", "{dir}"], {}, "--kubeconfig: {dir} is a directory"),
    (["smoke", "--image", "Bad Image"], {}, "--image: 'Bad Image': invalid reference format"),
    (["load", "ok:1,Not/Lower:1"], {}, "--images: 'Not/Lower:1': repository name must be lowercase"),
    (["config", "--config", ""], {}, "--config: is empty"),
])
def test_every_path_and_name_a_user_gives_is_checked_at_the_edge(args, env_extra, flag, bare, tmp_path):
    """Exit 2 naming the flag or variable, no traceback, nothing written (issue: strict as kind)."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    fill = {"dir": str(tmp_path), "file": str(a_file)}
    env = {**bare, **{k: v.format(**fill) for k, v in env_extra.items()}}
    before = sorted(p.name for p in tmp_path.iterdir())
    out = invoke(*[a.format(**fill) for a in args], env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and out.stderr.startswith("ERROR: invalid task flags")
    assert flag.format(**fill) in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize("args, says", [
    (["--worker", "0", "--index", "0"], "--worker: must be a whole number greater than 0, got '0'"),
    (["--worker", "1", "--index", "-1"], "--index: must be a whole number from 0, got '-1'"),
    (["--gpu", "GPU-x", "--xid", "x"], "--xid: must be a whole number greater than 0, got 'x'"),
    (["--gpu", "GPU-x", "--effect", "Evict"], "--effect: must be one of NoSchedule, NoExecute, None, got 'Evict'"),
])
def test_fault_flags_are_checked_with_the_others_before_anything_is_asked(args, says, bare):
    out = invoke("fault", "--name", "f", *args, env=bare)
    assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr
