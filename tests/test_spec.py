"""Spec loading, precedence, validation reports, allocation and kind config rendering."""

import json
import re
import subprocess
import sys

import pytest
import yaml

from kindgpu import inventory, plan, render, spec, versions
from kindgpu.errors import Problem, SpecError
from paths import REPO, TESTDATA

SPECS = TESTDATA / "specs"
GOLDEN = TESTDATA / "golden"


CGROUP_V2_HOST = versions.Runtime(kubernetes=(1, 37, 0), cgroup=2)


def make(path=None, env=None, inv=None, runtime=CGROUP_V2_HOST, **flags):
    doc = spec.resolve(config_file=path, env=env or {}, flags=flags)
    return plan.make_plan(doc, inv, runtime)


def expected_paths(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: path | path'"
    return [p.strip() for p in first[len("# expect: "):].split("|")]


@pytest.mark.parametrize("path", sorted((SPECS / "valid").glob("*.yaml")), ids=lambda p: p.name)
def test_valid_specs_plan_on_the_h200_host(path, h200_inventory, state_dir):
    p = make(path, inv=h200_inventory)
    assigned = [g.uuid for w in p.workers for g in w.gpus]
    assert len(assigned) == len(set(assigned)) > 0


@pytest.mark.parametrize("path", sorted((SPECS / "invalid").glob("*.yaml")), ids=lambda p: p.name)
def test_invalid_specs_name_every_field(path, h200_inventory, state_dir):
    with pytest.raises(SpecError) as caught:
        make(path, inv=h200_inventory)
    reported = [p.field for p in caught.value.problems]
    assert reported == expected_paths(path) or sorted(reported) == sorted(expected_paths(path)), (
        str(caught.value)
    )
    assert caught.value.exit_code == 2


def test_precedence_defaults_file_env_flags(tmp_path, state_dir):
    assert spec.defaults()["name"] == "gpu-cluster"
    assert (spec.defaults()["workers"], spec.defaults()["gpusPerWorker"]) == (2, 4)
    f = tmp_path / "s.yaml"
    f.write_text("apiVersion: kindgpu.dev/v1alpha1\nkind: GPUCluster\nname: from-file\nworkers: 3\n")
    assert spec.resolve(f, env={})["name"] == "from-file"
    assert spec.resolve(f, env={"CLUSTER_NAME": "from-env"})["name"] == "from-env"
    assert spec.resolve(f, env={"CLUSTER_NAME": "from-env"}, flags={"name": "from-flag"})["name"] == "from-flag"
    assert spec.resolve(f, env={}, flags={"gpusPerWorker": None})["gpusPerWorker"] == 4
    assert spec.resolve(f, env={})["workers"] == 3
    assert spec.resolve(f, env={}, flags={"workers": 1})["workers"] == 1


def test_gpus_flag_with_a_worker_list_is_refused(state_dir):
    with pytest.raises(SpecError) as caught:
        spec.resolve(REPO / "configs" / "uneven.yaml", env={}, flags={"gpusPerWorker": 2})
    [problem] = caught.value.problems
    assert problem.field == "--gpus" and "needs a worker count" in problem.message


def test_simulated_8x1_gets_8_distinct_gpus(state_dir):
    p = make(workers=8, gpusPerWorker=1, simulate=8)
    uuids = [w.gpus[0].uuid for w in p.workers]
    assert len(set(uuids)) == 8 and [w.gpus[0].index for w in p.workers] == list(range(8))
    assert p.simulated and p.inventory.simulated


def test_simulated_clusters_get_gpus_of_their_own_and_the_same_name_the_same_gpus(state_dir):
    def uuids(p):
        return [g.uuid for w in p.workers for g in w.gpus]

    def cluster(name):
        return make(workers=2, gpusPerWorker=2, simulate=4, name=name)

    a, again, b = cluster("a"), cluster("a"), cluster("b")
    assert a.to_json() == again.to_json()  # `up` again plans the same GPUs: nothing to change
    assert len(set(uuids(a))) == 4 and not set(uuids(a)) & set(uuids(b))  # as two real hosts
    # Labels (GFD's included) say the same of both but the owner; minors and bus ids are the host's layout.
    for wa, wb in zip(a.workers, b.workers):
        assert {**wa.labels, "kindgpu.dev/cluster": "b"} == wb.labels
        assert [(g.index, g.minor, g.pci_bus_id) for g in wa.gpus] == \
            [(g.index, g.minor, g.pci_bus_id) for g in wb.gpus]
    # The kind config mounts the plan's GPUs, and the record reads back as the same plan.
    mounted = [m["containerPath"].rsplit("/", 1)[1] for n in render.kind_config(b)["nodes"] for m in n["extraMounts"]
               if m["containerPath"].startswith("/var/run/kindgpu/sim-gpus/")]
    assert mounted == uuids(b)
    assert plan.Plan.from_dict(b.spec, json.loads(b.to_json())).workers == b.workers


def test_contiguous_allocation_in_inventory_order(state_dir):
    p = make(workers=2, gpusPerWorker=3, simulate=8)
    assert [[g.index for g in w.gpus] for w in p.workers] == [[0, 1, 2], [3, 4, 5]]
    assert p.workers[1].labels["gpu-ids"] == "3_4_5"


def test_twelve_workers_are_named_and_numbered_like_kind(state_dir):
    p = make(workers=12, gpusPerWorker=1, simulate=12)
    by_number = {w.number: w for w in p.workers}
    for n in (10, 11, 12):
        worker = by_number[n]
        assert worker.node == f"gpu-cluster-worker{n}"
        assert worker.gpus[0].index == n - 1
        assert worker.labels["gpu-worker"] == str(n)
    assert by_number[1].node == "gpu-cluster-worker"
    # kind assigns names in config order: the 10th worker entry is worker10.
    nodes = render.kind_config(p)["nodes"][1:]
    assert nodes[9]["labels"]["gpu-worker"] == "10"
    assert nodes[9]["extraMounts"][0]["containerPath"].endswith(by_number[10].gpus[0].uuid)


def test_h200_inventory_real_mode_mounts_by_uuid_and_records_minor(h200_inventory, state_dir):
    p = make(SPECS / "valid" / "uuids.yaml", inv=h200_inventory)
    first = p.workers[0]
    assert first.gpus[0].uuid == "GPU-6ecd4567-d6bf-079a-0073-a3e5ae679589"
    assert (first.gpus[0].index, first.gpus[0].minor) == (1, 1)
    cfg = render.kind_config(p)
    paths = [m["containerPath"] for m in cfg["nodes"][1]["extraMounts"]]
    # The CDI form the toolkit honours from v1.17 (the plain UUID form needs v1.18).
    assert ("/var/run/nvidia-container-devices/cdi/runtime.nvidia.com/gpu/"
            "GPU-6ecd4567-d6bf-079a-0073-a3e5ae679589") in paths
    assert cfg["nodes"][1]["labels"]["pool"] == "b"


def test_simulated_mode_uses_inert_mount_dir(state_dir):
    cfg = render.kind_config(make(workers=1, gpusPerWorker=2, simulate=2))
    worker_paths = [m["containerPath"] for m in cfg["nodes"][1]["extraMounts"]]
    assert all(not p.startswith("/var/run/nvidia-container-devices") for p in worker_paths)
    assert sum(p.startswith("/var/run/kindgpu/sim-gpus/GPU-") for p in worker_paths) == 2


def test_every_node_carries_the_owner_mount(state_dir):
    cfg = render.kind_config(make(workers=2, gpusPerWorker=1, simulate=2))
    for node in cfg["nodes"]:
        assert {"hostPath": str(state_dir / "gpu-cluster" / "node"), "containerPath": "/etc/kindgpu",
                "readOnly": True} in node["extraMounts"]


def test_cpu_only_worker_gets_no_gpu_labels_and_keeps_gpu_worker_numbering(state_dir):
    p = make(REPO / "configs" / "cpu-worker.yaml", simulate=8)
    first, cpu, last = p.workers
    # kind names every worker in config order; gpu-worker counts the GPU workers only.
    assert [w.node for w in p.workers] == ["gpu-cluster-worker", "gpu-cluster-worker2", "gpu-cluster-worker3"]
    assert (first.number, cpu.number, last.number) == (1, None, 2)
    assert cpu.cpu_only and cpu.gpus == () and not first.cpu_only
    assert cpu.labels == {"pool": "cpu", "kindgpu.dev/cpu-only": "true", "kindgpu.dev/cluster": "gpu-cluster"}
    assert last.labels["gpu-worker"] == "2" and last.labels["gpu-ids"] == "4_5_6_7"
    assert last.labels["team"] == "ml-infra" and "kindgpu.dev/cpu-only" not in last.labels
    assert p.gpu_workers == (first, last)
    doc = p.to_dict()["workers"][1]
    assert (doc["number"], doc["cpuOnly"], doc["gpus"]) == (None, True, [])


def test_cpu_only_worker_node_gets_no_gpu_mounts_in_either_mode(h200_inventory, state_dir):
    owner = {"hostPath": str(state_dir / "mixed" / "node"), "containerPath": "/etc/kindgpu", "readOnly": True}
    real = render.kind_config(make(SPECS / "valid" / "cpu-worker.yaml", inv=h200_inventory))
    gpu, cpu, gpu2 = real["nodes"][1:]
    assert cpu["extraMounts"] == [owner]  # no /dev/null per GPU, no nvidia-ctk hook
    assert cpu["labels"] == {"kindgpu.dev/cluster": "mixed", "kindgpu.dev/cpu-only": "true", "pool": "cpu"}
    assert {"hostPath": "/usr/bin/nvidia-ctk", "containerPath": "/usr/bin/nvidia-ctk", "readOnly": True} \
        in gpu["extraMounts"]
    assert gpu2["labels"]["gpu-worker"] == "2" and gpu2["labels"]["gpu-ids"] == "0"
    sim = render.kind_config(make(REPO / "configs" / "cpu-worker.yaml", simulate=8))
    assert sim["nodes"][2]["extraMounts"] == [{**owner, "hostPath": str(state_dir / "gpu-cluster" / "node")}]
    assert sum(m["containerPath"].startswith("/var/run/kindgpu/sim-gpus/") for m in sim["nodes"][3]["extraMounts"]) == 4


def test_a_cluster_needs_one_gpu_worker_and_the_number_form_stays_gpu_workers(state_dir):
    with pytest.raises(SpecError) as caught:
        make(SPECS / "invalid" / "all-cpu.yaml", simulate=2)
    assert caught.value.problems == [
        Problem("workers", "every worker has `gpus: []`", "give at least one worker a GPU")]
    with pytest.raises(SpecError, match="workers"):
        make(workers=0, simulate=2)
    assert all(w.gpus for w in make(workers=2, gpusPerWorker=1, simulate=2).workers)


GOLDEN_CASES = {
    "default-simulated": dict(simulate=8),
    "uneven-simulated": dict(path=REPO / "configs" / "uneven.yaml", simulate=8),
    "h200-uuids": dict(path=SPECS / "valid" / "uuids.yaml", h200=True),
    "cpu-worker-simulated": dict(path=REPO / "configs" / "cpu-worker.yaml", simulate=8),
    "h200-cpu-worker": dict(path=SPECS / "valid" / "cpu-worker.yaml", h200=True),
    # kind's image as it is: containerd gets CDI from kindgpu's patch (kind restarts it for that).
    "h200-plain-node-image": dict(path=SPECS / "valid" / "uuids.yaml", h200=True, prepareNodeImage=False),
    # Kubernetes 1.35+ on a cgroup v1 host: the kubelet is told to start anyway.
    "cgroup-v1-simulated": dict(simulate=8, runtime=versions.Runtime(kubernetes=(1, 37, 2), cgroup=1)),
    # gpuAllocation: dra turns on the gates its version needs: DRAExtendedResource on 1.34, none on 1.37.
    "dra-simulated-1.34": dict(simulate=8, gpuAllocation="dra", nodeImage="kindest/node:v1.34.4",
                               runtime=versions.Runtime(kubernetes=(1, 34, 4), cgroup=2)),
    "dra-simulated-1.37": dict(simulate=8, gpuAllocation="dra", nodeImage="kindest/node:v1.37.2",
                               runtime=versions.Runtime(kubernetes=(1, 37, 2), cgroup=2)),
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_kind_configs(case, monkeypatch, h200_inventory, request):
    monkeypatch.setenv("KINDGPU_STATE_DIR", "/state")
    kwargs = dict(GOLDEN_CASES[case])
    path = kwargs.pop("path", None)
    inv = h200_inventory if kwargs.pop("h200", False) else None
    text = render.to_yaml(render.kind_config(make(path, inv=inv, **kwargs)))
    golden = GOLDEN / f"{case}.kind.yaml"
    if request.config.getoption("--update-golden"):
        golden.write_text(text)
    assert text == golden.read_text()
    # Same spec, same bytes.
    assert text == render.to_yaml(render.kind_config(make(path, inv=inv, **kwargs)))


def test_write_state_is_deterministic_and_idempotent(state_dir):
    p = make(workers=2, gpusPerWorker=2, simulate=4)
    written = render.write_state(p)
    root = state_dir / "gpu-cluster"
    assert {x.relative_to(root).as_posix() for x in written} == set(render.state_files(p))
    assert (root / "spec.sha256").read_text().strip() == p.spec_hash
    assert yaml.safe_load((root / "kind-config.yaml").read_text()) == render.kind_config(p)
    assert render.write_state(p) == []


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path, state_dir):
    doc = spec.resolve(path, env={})
    sim = doc.get("simulate") or {"gpus": 8}
    p = plan.make_plan(doc, inventory.simulated_inventory(sim["gpus"], cluster=doc["name"]))
    assert p.workers


def readme_yaml_blocks():
    text = (REPO / "README.md").read_text()
    return [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "GPUCluster" in b]


def test_readme_spec_examples_are_valid(tmp_path, state_dir):
    blocks = readme_yaml_blocks()
    assert blocks, "README.md must show at least one spec example"
    for i, block in enumerate(blocks):
        f = tmp_path / f"readme-{i}.yaml"
        f.write_text(block)
        doc = spec.resolve(f, env={})
        sim = doc.get("simulate") or {"gpus": 8}
        plan.make_plan(doc, inventory.simulated_inventory(sim["gpus"], cluster=doc["name"]))


def invoke(*args, env=None):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True,
                          text=True, env=env)


def test_config_task_json_8x1(state_dir):
    import os

    out = invoke("config", "--workers", "8", "--gpus", "1", "--simulate", "8", "--json",
                 env={**os.environ, "KINDGPU_STATE_DIR": str(state_dir)})
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    uuids = [w["gpus"][0]["uuid"] for w in doc["workers"]]
    assert len(doc["workers"]) == 8 and len(set(uuids)) == 8
    assert (state_dir / "gpu-cluster" / "kind-config.yaml").exists()


def test_config_task_refuses_too_many_gpus_and_creates_nothing(state_dir):
    import os

    out = invoke("config", "--workers", "3", "--gpus", "4", "--simulate", "8",
                 env={**os.environ, "KINDGPU_STATE_DIR": str(state_dir)})
    assert out.returncode == 2
    assert "3 × 4 = 12 GPUs requested" in out.stderr and "has 8" in out.stderr
    assert not state_dir.exists()


def test_config_task_three_mistakes_exit_2_naming_all(state_dir):
    import os

    out = invoke("config", "--config", str(SPECS / "invalid" / "three-mistakes.yaml"), "--simulate", "8",
                 env={**os.environ, "KINDGPU_STATE_DIR": str(state_dir)})
    assert out.returncode == 2
    for field in ("gpusPerWorker", "devicePlugin.deviceListStrategy", "labels.gpu-set"):
        assert f"  - {field}:" in out.stderr
    assert not state_dir.exists()


def test_dry_run_writes_nothing(state_dir):
    import os

    out = invoke("config", "--simulate", "8", "--dry-run",
                 env={**os.environ, "KINDGPU_STATE_DIR": str(state_dir)})
    assert out.returncode == 0, out.stderr
    assert "dry run" in out.stdout and not state_dir.exists()


def spec_file(tmp_path, body):
    f = tmp_path / "spec.yaml"
    workers = "" if body.startswith("workers:") or "\nworkers:" in body else "workers: 1\ngpusPerWorker: 1\n"
    f.write_text("apiVersion: kindgpu.dev/v1alpha1\nkind: GPUCluster\n" + workers + body)
    return f


def problems_of(path):
    """(field, message) of every problem resolve finds; [] when the spec passes."""
    try:
        spec.resolve(path, env={})
    except SpecError as err:
        assert err.exit_code == 2
        return [(p.field, p.message) for p in err.problems]
    return []


LONG_PREFIX = ".".join(["a" * 63] * 4)  # 255 characters: over a DNS subdomain's 253
# key, value, what the one problem says (None: kubelet takes it). Kubelet's rules, see spec.py.
LABEL_CASES = [
    ("node-role.kubernetes.io/worker", "", "kubelet refuses keys in the kubernetes.io and k8s.io"),
    ("kubernetes.io/foo", "x", "kubelet refuses"),
    ("beta.kubernetes.io/foo", "x", "kubelet refuses"),
    ("node-restriction.kubernetes.io/x", "x", "kubelet refuses"),
    ("k8s.io/foo", "x", "kubelet refuses"),
    ("apps.k8s.io/foo", "x", "kubelet refuses"),
    ("kubernetes.io/hostname", "h", None),
    ("topology.kubernetes.io/zone", "z", None),
    ("beta.kubernetes.io/instance-type", "h200", None),
    ("node.kubernetes.io/anything", "x", None),
    ("x.kubelet.kubernetes.io/y", "x", None),
    ("notkubernetes.io/x", "x", None),  # not the kubernetes.io namespace: a domain of its own
    ("Example.com/x", "x", "prefix 'Example.com' is not a DNS subdomain"),
    ("ex_ample.com/x", "x", "is not a DNS subdomain"),
    ("-example.com/x", "x", "is not a DNS subdomain"),
    (f"{LONG_PREFIX}/x", "x", "is not a DNS subdomain"),
    (f"{LONG_PREFIX[:253]}/x", "x", None),
    ("/x", "x", "the prefix before '/' is empty"),
    ("example.com/", "x", "the name is empty"),
    ("a/b/c", "x", "at most one '/'"),
    ("a" * 64, "x", "is 64 characters long; at most 63"),
    ("a" * 63, "x", None),
    ("-a", "x", "name '-a' is not legal"),
    ("ok", "a" * 64, "label value is 64 characters long; at most 63"),
    ("ok", "a" * 63, None),
    ("ok", "a_b.c-D9", None),
    ("ok", "-x", "label value '-x' is not legal"),
    ("ok", "a b", "label value 'a b' is not legal"),
    ("ok", "0,1", "holds a comma"),
    ("ok", "", None),
]


@pytest.mark.parametrize("key, value, says", LABEL_CASES, ids=[f"{k[:40]}={v[:10]}" for k, v, _ in LABEL_CASES])
@pytest.mark.parametrize("where", ["labels", "workers[0].labels"])
def test_node_labels_as_kubelet_checks_them(key, value, says, where, tmp_path, state_dir):
    labels = json.dumps({key: value})
    body = (f"labels: {labels}\n" if where == "labels"
            else f"workers:\n  - gpus: [0]\n    labels: {labels}\n")
    found = problems_of(spec_file(tmp_path, body))
    if says is None:
        assert found == []
    else:
        [(field, message)] = found
        assert field == f"{where}.{key}" and says in message


# address, allowRemoteAPI (None: left out), the fields refused, warnings printed
API_CASES = [
    ("127.0.0.1", None, [], 0),
    ("127.0.0.2", None, [], 0),
    ("::1", None, [], 0),
    ("0.0.0.0", None, ["apiServer.address"], 0),
    ("0.0.0.0", False, ["apiServer.address"], 0),
    ("::", None, ["apiServer.address"], 0),
    ("192.168.1.5", None, ["apiServer.address"], 0),
    ("0.0.0.0", True, [], 1),
    ("192.168.1.5", True, [], 1),
    ("127.0.0.1", True, [], 0),
    ("localhost", None, ["apiServer.address"], 0),  # Docker publishes ports on IP addresses only
    ("localhost", True, ["apiServer.address"], 0),
    ("0.0.0.0", "yes", ["apiServer.allowRemoteAPI", "apiServer.address"], 0),
]


@pytest.mark.parametrize("address, allow, refused, warned", API_CASES)
def test_api_server_address_needs_allow_remote_api_off_loopback(address, allow, refused, warned, tmp_path,
                                                                 state_dir):
    api = {"address": address, **({} if allow is None else {"allowRemoteAPI": allow})}
    path = spec_file(tmp_path, f"apiServer: {json.dumps(api)}\n")
    assert [field for field, _ in problems_of(path)] == refused
    if not refused:
        assert len(spec.warnings(spec.resolve(path, env={}))) == warned


def test_allow_remote_api_has_no_default():
    """Left out means false, and the normalized spec (so the hash of every existing cluster) is unchanged."""
    assert spec.defaults()["apiServer"] == {"address": "127.0.0.1", "port": 0}


def test_simulate_n_is_short_for_simulate_gpus_n(tmp_path, state_dir):
    short = spec.resolve(spec_file(tmp_path, "simulate: 8\n"), env={})
    assert short["simulate"] == {"gpus": 8, "product": "NVIDIA H200", "memoryMiB": 143771}
    # The same spec as the long form: a cluster made with one is the cluster the other asks for.
    (tmp_path / "long").mkdir()
    long = spec.resolve(spec_file(tmp_path / "long", "simulate: {gpus: 8}\n"), env={})
    assert short == long and spec.spec_hash(short) == spec.spec_hash(long)
    # --simulate overrides the short form as it does the long one.
    assert spec.resolve(spec_file(tmp_path, "simulate: 8\n"), env={}, flags={"simulate": 2})["simulate"]["gpus"] == 2
    assert plan.make_plan(short).inventory.simulated


@pytest.mark.parametrize("value", ["0", "-1", "2.5", "8.0", "'8'", "true", "eight", "[8]", "513", "{gpus: 0}",
                                   "{gpus: 1.5}", "{gpus: 8.0}"])
def test_simulate_other_than_a_whole_number_of_gpus_is_refused_with_a_fix(value, tmp_path, state_dir):
    with pytest.raises(SpecError) as caught:
        spec.resolve(spec_file(tmp_path, f"simulate: {value}\n"), env={})
    [problem] = caught.value.problems
    assert problem.field == ("simulate.gpus" if value.startswith("{") else "simulate")
    assert problem.fix == "simulate 1 to 512 GPUs: `simulate: 8` (short for `simulate: {gpus: 8}`)"
    assert str(caught.value).count("fix:") == 1
    # A flag on top replaces the file's value, whatever it was.
    assert spec.resolve(spec_file(tmp_path, f"simulate: {value}\n"), env={}, flags={"simulate": 2})["simulate"] == {
        "gpus": 2, "product": "NVIDIA H200", "memoryMiB": 143771}


def test_integer_fields_take_whole_numbers_only(tmp_path, state_dir):
    """JSON Schema's integer includes 8.0, which would reach range() and fail there."""
    path = tmp_path / "floats.yaml"
    path.write_text("apiVersion: kindgpu.dev/v1alpha1\nkind: GPUCluster\nworkers: 2.0\ngpusPerWorker: 1.0\n")
    assert [field for field, _ in problems_of(path)] == ["gpusPerWorker", "workers"]
