"""Daily use of a cluster, as a user does it, on one real kind cluster with simulated GPUs: kubectl
right after `up` (its context merged next to unrelated ones, unmerged, merged again), the user's
own images loaded into the nodes and run by pods, smoke through a kubeconfig alone as if kindgpu
had not made the cluster, and the pytest plugin in pytester runs (through that kubeconfig,
reusing the cluster from its spec, and deleting it at the end).

The tests run in file order and share the cluster; the last one deletes it.
"""

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from cluster_helpers import REPO, docker, export_logs, invoke, without_kind_or_docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from plugin_args import PLUGIN_ARGS  # noqa: E402

pytest_plugins = ["pytester"]

CUDA = "nvcr.io/nvidia/cuda:12.6.3-base-ubuntu24.04"
IN_EVERY_NODE = "registry.k8s.io/pause:3.10"  # kind's sandbox image
CLUSTER = "kdaily"
KEY = f"kind-{CLUSTER}"
NODES = [f"{CLUSTER}-control-plane", f"{CLUSTER}-worker", f"{CLUSTER}-worker2", f"{CLUSTER}-worker3"]
WORKERS = NODES[1:]
SPEC = f"""apiVersion: kindgpu.dev/v1alpha1
kind: GPUCluster
name: {CLUSTER}
simulate: {{gpus: 4}}
workers:
  - gpus: [0, 1]
  - gpus: [2]
  - gpus: [3]
"""
# What the user's kubeconfig held before kindgpu: a production cluster (current) and another
# kind cluster's entries. None of it may change.
USERS = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "prod", "cluster": {"server": "https://10.255.255.1:6443"}},
                 {"name": "kind-elsewhere", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "prod-admin", "user": {"token": "s3cret"}},
              {"name": "kind-elsewhere", "user": {"token": "other"}}],
    "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod-admin", "namespace": "ops"}},
                 {"name": "kind-elsewhere", "context": {"cluster": "kind-elsewhere", "user": "kind-elsewhere"}}],
    "current-context": "prod",
}
APP = "kindgpu-e2e/daily-app:dev"
BUILT = []  # image IDs the tests built, removed at the end


@pytest.fixture(scope="module")
def daily(tmp_path_factory, harness, request):
    """A state dir of its own, the spec, the user's kubeconfig (0640) as KUBECONFIG, and cleanup."""
    root = tmp_path_factory.mktemp("kdaily")
    patch = pytest.MonkeyPatch()
    patch.setenv("KINDGPU_STATE_DIR", str(root / "state"))
    users = root / "home" / ".kube" / "config"
    users.parent.mkdir(parents=True)
    users.write_text(yaml.safe_dump(USERS, sort_keys=False))
    users.chmod(0o640)
    patch.setenv("KUBECONFIG", str(users))
    spec = root / "kdaily.yaml"
    spec.write_text(SPEC)
    yield {"root": root, "spec": spec, "users": users, "private": root / "state" / CLUSTER / "kubeconfig"}
    if getattr(request.session, "e2e_failed", False):
        export_logs(CLUSTER, "failed")
    subprocess.run(["kind", "delete", "cluster", "--name", CLUSTER, "--kubeconfig", str(root / "kind-delete")],
                   capture_output=True)
    docker("network", "rm", f"kindgpu-{CLUSTER}")
    for image_id in BUILT:
        docker("rmi", "-f", image_id)
    patch.undo()


def kubeconfig_doc(path):
    return yaml.safe_load(Path(path).read_text())


def unrelated(doc):
    """The user's entries: everything but kindgpu's. kubectl, switching context, rewrites the file
    in its own form (entries sorted by name, `preferences: {}`), so only the entries are compared."""
    return {s: sorted((e for e in doc.get(s) or [] if e["name"] != KEY), key=lambda e: e["name"])
            for s in ("clusters", "users", "contexts")}


def ours(doc):
    return {s: [e for e in doc.get(s) or [] if e["name"] == KEY] for s in ("clusters", "users", "contexts")}


def assert_only_ours_changed(users, current):
    doc = kubeconfig_doc(users)
    assert unrelated(doc) == unrelated(USERS)
    assert doc["current-context"] == current
    assert stat.S_IMODE(users.stat().st_mode) == 0o640


def assert_as_before_kindgpu(users, current):
    assert_only_ours_changed(users, current)
    assert ours(kubeconfig_doc(users)) == {"clusters": [], "users": [], "contexts": []}


def kubectl(*args, check=True):
    result = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def run_line(line):
    """Run a `kubectl ...` line kindgpu printed, as the user would paste it."""
    assert line.startswith("kubectl "), line
    return kubectl(*shlex.split(line)[1:], "-o", "name")


def next_line(out):
    lines = [line for line in out.splitlines() if line.startswith("next: ")]
    assert len(lines) == 1, out
    return lines[0].removeprefix("next: ")


# ---------------------------------------------------------------- kubectl right after up


def test_up_merges_its_context_so_kubectl_get_nodes_just_works(daily):
    result = invoke("up", "--config", str(daily["spec"]), check=True)
    assert f"merged context {KEY} into {daily['users']} (now the current context)" in result.stdout
    assert next_line(result.stdout) == "kubectl get nodes"
    assert stat.S_IMODE(daily["private"].stat().st_mode) == 0o600  # kindgpu's own, kept private
    assert_only_ours_changed(daily["users"], KEY)
    own = yaml.safe_load(daily["private"].read_text())
    assert ours(kubeconfig_doc(daily["users"])) == ours(own)  # the cluster's own entries, as kind wrote them
    assert sorted(kubectl("get", "nodes", "-o", "name").stdout.split()) == [f"node/{n}" for n in NODES]


def test_the_seeds_kubectl_run_as_readme_gives_it_for_todays_kubectl(daily):
    """README's replacement for the seed's `kubectl run --limits`, run as written, but for the image: the
    CUDA image is in no node here, and the simulated plugin brings nvidia-smi into any image."""
    readme = (REPO / "README.md").read_text()
    command = re.search(r"(kubectl run gpu-test .*?')\n", readme, re.S).group(1).replace("\\\n", " ")
    argv = shlex.split(command.replace(CUDA, IN_EVERY_NODE))
    result = kubectl(*argv[1:])
    [seen] = re.findall(r"^GPU 0: .* \(UUID: (GPU-[0-9a-f-]+)\)$", result.stdout, re.M)  # one GPU, as asked
    assert seen in planned_uuids(daily)[0][1], result.stdout  # gpu-worker=1 is kdaily-worker


def test_a_second_up_leaves_the_kubeconfig_and_the_users_current_context_alone(daily):
    kubectl("config", "use-context", "prod")
    before = daily["users"].read_bytes(), daily["users"].stat().st_mtime_ns
    result = invoke("up", "--config", str(daily["spec"]), check=True)
    assert "Nothing to be done." in result.stdout and "merged context" not in result.stdout
    assert (daily["users"].read_bytes(), daily["users"].stat().st_mtime_ns) == before
    line = next_line(result.stdout)
    assert line == f"kubectl --context {KEY} get nodes"
    assert len(run_line(line).stdout.split()) == len(NODES)


def test_status_prints_the_command_that_reaches_the_cluster(daily):
    result = invoke("status", "--name", CLUSTER, check=True)
    assert next_line(result.stdout) == f"kubectl --context {KEY} get nodes"
    doc = json.loads(invoke("status", "--name", CLUSTER, "--json", check=True).stdout)
    assert doc["next"] == f"kubectl --context {KEY} get nodes" and doc["kubeconfig"] == str(daily["private"])


def test_unmerge_and_merge_next_to_an_unrelated_context(daily):
    users = daily["users"]
    result = invoke("kubeconfig", "--name", CLUSTER, "--unmerge", check=True)
    assert f"removed context {KEY} from {users}" in result.stdout
    assert_as_before_kindgpu(users, "prod")  # prod is current, as the user left it
    assert kubectl("--context", KEY, "get", "nodes", check=False).returncode != 0
    # Not merged: status points at the cluster's own kubeconfig, and that line works.
    line = next_line(invoke("status", "--name", CLUSTER, check=True).stdout)
    assert line == f"kubectl --kubeconfig {daily['private']} get nodes"
    assert len(run_line(line).stdout.split()) == len(NODES)

    result = invoke("kubeconfig", "--name", CLUSTER, "--merge", check=True)
    assert f"merged context {KEY} into {users} (now the current context)" in result.stdout
    assert next_line(result.stdout) == "kubectl get nodes"
    assert_only_ours_changed(users, KEY)
    assert len(kubectl("get", "nodes", "-o", "name").stdout.split()) == len(NODES)

    # Unmerged while current: current-context is cleared, nothing else changes.
    invoke("kubeconfig", "--name", CLUSTER, "--unmerge", check=True)
    assert_as_before_kindgpu(users, "")

    # The path alone, for KUBECONFIG=$(invoke kubeconfig).
    path = invoke("kubeconfig", "--name", CLUSTER, check=True).stdout
    assert path == f"{daily['private']}\n"
    own = subprocess.run(["kubectl", "get", "nodes", "-o", "name"], capture_output=True, text=True,
                         env={**os.environ, "KUBECONFIG": path.strip()})
    assert len(own.stdout.split()) == len(NODES), own.stderr

    invoke("kubeconfig", "--name", CLUSTER, "--merge", check=True)  # merged again: down must remove it


def test_kubeconfig_flags_that_contradict_exit_2_naming_the_flag(daily):
    result = invoke("kubeconfig", "--name", CLUSTER, "--merge", "--unmerge")
    assert result.returncode == 2 and "--merge: cannot be given with --unmerge" in result.stderr
    result = invoke("up", "--config", str(daily["spec"]), "--merge", "--no-merge")
    assert result.returncode == 2 and "--merge: cannot be given with --no-merge" in result.stderr


# ---------------------------------------------------------------- the user's own images


def build_app(token):
    """The user's image: kindgpu's simulated plugin image (in the local Docker, no registry here)
    with a file of its own; a new token, a new image ID under the same tag."""
    from kindgpu.simgpu.build import image_tag

    dockerfile = f"FROM {image_tag()}\nRUN echo {token} > /daily-token\n"
    built = subprocess.run(["docker", "build", "-q", "-t", APP, "-"], input=dockerfile, capture_output=True,
                           text=True)
    assert built.returncode == 0, built.stderr
    BUILT.append(built.stdout.strip())


def holds_app(node):
    out = docker("exec", node, "crictl", "images", "-o", "json").stdout
    from kindgpu.nodes import docker_client

    image_id = docker_client().images.get(APP).id
    return any(img["id"] == image_id and f"docker.io/{APP}" in img["repoTags"] for img in json.loads(out)["images"])


def load(*args):
    result = invoke("load", *args, "--name", CLUSTER, "--json", check=True)
    return json.loads(result.stdout)["images"]


def tokens_seen_by_pods(private):
    """A pod per worker runs the image (never pulled: there is no registry) and prints its token."""
    from kindgpu.kube import Kube

    kube = Kube(private)
    run = uuid.uuid4().hex[:6]
    names = [f"daily-{run}-{i}" for i in range(len(WORKERS))]
    for name, node in zip(names, WORKERS):
        kube.core.create_namespaced_pod("default", {
            "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": node},
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "app", "image": APP, "imagePullPolicy": "Never",
                                     "command": ["cat", "/daily-token"]}]}})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pods = [kube.core.read_namespaced_pod(n, "default") for n in names]
            phases = [p.status.phase for p in pods]
            assert "Failed" not in phases, phases
            if all(p == "Succeeded" for p in phases):
                break
            time.sleep(1)
        else:
            states = [(p.metadata.name, p.status.phase, p.status.container_statuses) for p in pods]
            pytest.fail(f"pods not done: {states}")
        return {p.spec.node_name: kube.pod_log(p.metadata.name, "default").strip() for p in pods}
    finally:
        for name in names:
            kube.core.delete_namespaced_pod(name, "default", grace_period_seconds=0)


def test_load_puts_an_image_into_the_workers_named_then_only_into_the_nodes_that_lack_it(daily):
    first = uuid.uuid4().hex
    build_app(first)
    [result] = load(APP, "--workers", "1,3")
    assert result["loaded"] == [f"{CLUSTER}-worker", f"{CLUSTER}-worker3"] and result["present"] == []
    assert [holds_app(n) for n in NODES] == [False, True, False, True]
    [result] = load(APP)
    assert result["loaded"] == [f"{CLUSTER}-control-plane", f"{CLUSTER}-worker2"]  # the others had it
    assert result["present"] == [f"{CLUSTER}-worker", f"{CLUSTER}-worker3"]
    assert all(holds_app(n) for n in NODES)
    assert tokens_seen_by_pods(daily["private"]) == {node: first for node in WORKERS}


def test_a_rebuilt_image_under_the_same_tag_is_loaded_again_everywhere(daily):
    second = uuid.uuid4().hex
    build_app(second)
    [result] = load(APP)
    assert result["loaded"] == NODES and result["present"] == []
    assert tokens_seen_by_pods(daily["private"]) == {node: second for node in WORKERS}
    [again] = load(APP)
    assert again["loaded"] == [] and again["present"] == NODES


def test_smoke_loads_its_image_again_when_rebuilt_under_the_same_tag(daily):
    """Every node holds APP by that tag; smoke with a rebuild of it must run the rebuild (on the
    H200 a rebuilt smoke image under the same tag went unused: only the tag was compared)."""
    build_app(uuid.uuid4().hex)
    assert not any(holds_app(n) for n in NODES)
    result = invoke("smoke", "--name", CLUSTER, "--image", APP, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [holds_app(n) for n in NODES] == [False, True, True, True]  # smoke loads into the GPU workers


def test_load_says_what_is_wrong(daily):
    result = invoke("load", "kindgpu-e2e/absent:1", "--name", CLUSTER)
    assert result.returncode == 1
    assert "not in this host's Docker: kindgpu-e2e/absent:1" in result.stderr and "docker pull" in result.stderr
    result = invoke("load", APP, "--name", CLUSTER, "--workers", "2,7")
    assert result.returncode == 2
    assert "--workers: cluster kdaily has no worker 7" in result.stderr and "its workers are 1, 2, 3" in result.stderr


# ---------------------------------------------------------------- a cluster kindgpu did not make


@pytest.fixture(scope="module")
def foreign_kubeconfig(daily):
    """The cluster as anyone else would get it: a copy of its kubeconfig, nothing more."""
    path = daily["root"] / "given.kubeconfig"
    shutil.copy(daily["private"], path)
    return path


def test_smoke_through_a_kubeconfig_alone_checks_every_gpu_node_by_its_count(daily, foreign_kubeconfig):
    from kindgpu.simgpu.build import image_tag

    result = invoke("smoke", "--kubeconfig", str(foreign_kubeconfig), "--image", image_tag(), "--json",
                    env=without_kind_or_docker())
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"], doc["message"]
    rows = {w["node"]: w for w in doc["workers"]}
    assert {n: w["expectedCount"] for n, w in rows.items()} == dict(zip(WORKERS, [2, 1, 1]))
    assert all(len(w["seen"]) == w["expectedCount"] and w["expected"] == [] for w in rows.values())
    seen = [u for w in rows.values() for u in w["seen"]]
    assert len(set(seen)) == 4 == len(seen)
    assert doc["limitEnforced"]["ok"] and doc["limitEnforced"]["node"] == f"{CLUSTER}-worker"
    assert doc["limitEnforced"]["asked"] == 3
    junit = daily["root"] / "state" / "foreign" / KEY / "smoke-visibility-junit.xml"
    assert 'failures="0"' in junit.read_text()


def test_smoke_image_that_no_node_has_and_none_can_pull_fails_at_once(daily, foreign_kubeconfig):
    """No registry here: the pods back off pulling; smoke says so within seconds, not after its timeout."""
    image = "kindgpu-e2e/no-such-smoke-image:1"
    start = time.monotonic()
    result = invoke("smoke", "--kubeconfig", str(foreign_kubeconfig), "--image", image, "--json",
                    env=without_kind_or_docker())
    took = time.monotonic() - start
    doc = json.loads(result.stdout)
    assert result.returncode == 1 and not doc["ok"]
    assert took < 120, f"took {took:.0f}s (the smoke timeout is 300 s)"
    # smoke --kubeconfig loads nothing into the nodes: the fix says what can get the image there.
    assert f"cannot get image {image}" in doc["message"] and "push it to their registry" in doc["fix"]
    assert f"fix: make {image} pullable by the cluster's nodes" in result.stderr
    assert "`invoke smoke` loads" not in result.stderr


def test_smoke_through_a_kubeconfig_fails_when_one_gpu_shows_on_two_nodes(daily, foreign_kubeconfig):
    """worker3 made to offer, besides its own, a GPU of worker1 (its simulated plugin advertises
    whatever its sim-gpus directory holds): each count is right, but the UUID is on two nodes."""
    from kindgpu.kube import Kube
    from kindgpu.simgpu.build import image_tag

    leaked = planned_uuids(daily)[0][1][0]
    node, sim_dir = f"{CLUSTER}-worker3", "/var/run/kindgpu/sim-gpus"
    kube = Kube(foreign_kubeconfig)
    assert docker("exec", node, "touch", f"{sim_dir}/{leaked}").returncode == 0
    try:
        wait_for_allocatable(kube, node, 2)
        result = invoke("smoke", "--kubeconfig", str(foreign_kubeconfig), "--image", image_tag(), "--json",
                        env=without_kind_or_docker())
        doc = json.loads(result.stdout)
        assert result.returncode == 1 and not doc["ok"]
        assert {w["node"]: w["expectedCount"] for w in doc["workers"]}[node] == 2
        assert f"GPU {leaked} seen on 2 workers ({CLUSTER}-worker, {node})" in doc["message"]
    finally:
        docker("exec", node, "rm", "-f", f"{sim_dir}/{leaked}")
        wait_for_allocatable(kube, node, 1)


def wait_for_allocatable(kube, node, count, timeout=60):
    deadline = time.monotonic() + timeout
    while int(kube.core.read_node(node).status.allocatable.get("nvidia.com/gpu", "0")) != count:
        assert time.monotonic() < deadline, f"{node} does not offer {count} GPU(s)"
        time.sleep(0.5)


# ---------------------------------------------------------------- the pytest plugin, for real

USER_TESTS = '''
import json, os, stat

import pytest


def test_the_plan_says_which_worker_has_which_gpus(gpu_cluster):
    expected = json.loads(os.environ["KDAILY_EXPECTED"])
    assert [(w.node, [g.uuid for g in w.gpus]) for w in gpu_cluster.plan.workers] == \\
        [(node, uuids) for node, uuids in expected]


def test_the_client_and_kubectl_reach_the_cluster(gpu_cluster):
    nodes = sorted(n.metadata.name for n in gpu_cluster.core.list_node().items)
    assert nodes == sorted(json.loads(os.environ["KDAILY_NODES"]))
    assert gpu_cluster.kubectl("get", "nodes", "-o", "name").split() == [f"node/{n}" for n in nodes]
    assert gpu_cluster.client.configuration.host.startswith("https://127.0.0.1:")
    assert stat.S_IMODE(gpu_cluster.kubeconfig.stat().st_mode) == int(os.environ["KDAILY_MODE"], 8)
    assert gpu_cluster.simulated


@pytest.mark.gpu
def test_needs_real_gpus(gpu_cluster):
    raise AssertionError("ran on simulated GPUs")


def test_load_puts_images_into_a_kindgpu_cluster(gpu_cluster):
    image = os.environ.get("KDAILY_LOAD")
    if image is None:
        return
    if image:
        gpu_cluster.load(image)
    else:
        with pytest.raises(AssertionError, match="not a cluster kindgpu made on this host"):
            gpu_cluster.load("any:1")
'''


def run_user_suite(pytester, *options, expected, timeout=600):
    pytester.makepyfile(test_users_suite=USER_TESTS)
    os.environ["KDAILY_EXPECTED"] = json.dumps(expected)
    os.environ["KDAILY_NODES"] = json.dumps(NODES)
    return pytester.runpytest_subprocess(*PLUGIN_ARGS, "-rs", "-s", *options, timeout=timeout)


def planned_uuids(daily):
    doc = json.loads(invoke("config", "--config", str(daily["spec"]), "--json", "--dry-run", check=True).stdout)
    return [(w["node"], [g["uuid"] for g in w["gpus"]]) for w in doc["workers"]]


def test_the_plugin_knows_a_kindgpu_cluster_by_its_kubeconfig_and_never_deletes_it(daily, foreign_kubeconfig,
                                                                                    pytester, monkeypatch):
    """On this host the cluster's record says what it is: its plan with the UUIDs, and load() works
    (README's example test)."""
    from kindgpu.simgpu.build import image_tag

    monkeypatch.setenv("KDAILY_MODE", oct(stat.S_IMODE(foreign_kubeconfig.stat().st_mode)))
    monkeypatch.setenv("KDAILY_LOAD", image_tag())  # in every node already: load skips them all
    before = docker("inspect", "-f", "{{.Id}}", f"{CLUSTER}-control-plane").stdout
    result = run_user_suite(pytester, "--kindgpu-kubeconfig", str(foreign_kubeconfig), expected=planned_uuids(daily))
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["*needs real GPUs; the GPUs of kdaily are simulated*"])
    assert docker("inspect", "-f", "{{.Id}}", f"{CLUSTER}-control-plane").stdout == before


def test_the_plugin_takes_a_cluster_it_cannot_see_the_nodes_of_by_its_nodes_alone(daily, foreign_kubeconfig,
                                                                                  pytester, monkeypatch):
    """From where Docker cannot see the nodes (another machine), only the counts are known: the UUIDs
    are "" (not known), in node-name order, and load() says why it cannot."""
    monkeypatch.setenv("KDAILY_MODE", oct(stat.S_IMODE(foreign_kubeconfig.stat().st_mode)))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("KDAILY_LOAD", "")
    result = run_user_suite(pytester, "--kindgpu-kubeconfig", str(foreign_kubeconfig),
                            expected=[(WORKERS[0], ["", ""]), (WORKERS[1], [""]), (WORKERS[2], [""])])
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["*needs real GPUs; the GPUs of kind-kdaily are simulated*"])


def test_the_plugin_reuses_the_cluster_from_its_spec_and_keeps_it(daily, pytester, monkeypatch):
    monkeypatch.setenv("KDAILY_MODE", "0o600")
    before = docker("inspect", "-f", "{{.Id}}", f"{CLUSTER}-control-plane").stdout
    result = run_user_suite(pytester, "--kindgpu-spec", str(daily["spec"]), "--kindgpu-keep",
                            expected=planned_uuids(daily))
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["*Nothing to be done.*", "*needs real GPUs; the GPUs of kdaily are simulated*"])
    assert docker("inspect", "-f", "{{.Id}}", f"{CLUSTER}-control-plane").stdout == before  # kept, not remade


def test_the_plugin_deletes_the_cluster_at_the_end_with_what_kindgpu_merged(daily, pytester, monkeypatch):
    monkeypatch.setenv("KDAILY_MODE", "0o600")
    users = daily["users"]
    assert kubeconfig_doc(users)["current-context"] == KEY  # merged again above
    result = run_user_suite(pytester, "--kindgpu-spec", str(daily["spec"]), expected=planned_uuids(daily))
    result.assert_outcomes(passed=3, skipped=1)
    assert docker("ps", "-aq", "--filter", f"label=io.x-k8s.kind.cluster={CLUSTER}").stdout.strip() == ""
    assert docker("network", "ls", "-q", "--filter", f"name=kindgpu-{CLUSTER}").stdout.strip() == ""
    assert not (daily["root"] / "state" / CLUSTER).exists()
    assert_as_before_kindgpu(users, "")  # its entries gone, the rest intact
    # `invoke down` now finds nothing, and touches nothing.
    before = users.read_bytes()
    again = invoke("down", "--name", CLUSTER, check=True)
    assert "nothing to delete" in again.stdout and users.read_bytes() == before
