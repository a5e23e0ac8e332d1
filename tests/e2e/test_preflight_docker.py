"""Docker checks against the real dockerd (CI starts one): runtimes, storage, name ownership."""

import io
import json
import secrets
import tarfile

import pytest

from kindgpu import cmd, names
from kindgpu.preflight import Request, Status, dockerhost, main


@pytest.fixture(scope="module")
def api():
    import docker

    client = docker.from_env(version="auto")
    yield client.api
    client.close()


@pytest.fixture(scope="module")
def local_image(api):
    """Any image already on the host (nothing can be pulled); an empty imported one if none."""
    tagged = [t for img in api.images() for t in (img.get("RepoTags") or []) if t != "<none>:<none>"]
    if tagged:
        yield tagged[0]
        return
    buf = io.BytesIO()
    tarfile.open(fileobj=buf, mode="w").close()
    repo = f"kindgpu-test/empty-{secrets.token_hex(3)}"
    api.import_image_from_data(buf.getvalue(), repository=repo, tag="1")
    yield f"{repo}:1"
    api.remove_image(f"{repo}:1", force=True)


@pytest.fixture
def make_node(api, local_image):
    """Create (never start) containers labelled like kind nodes; remove them afterwards."""
    made = []

    def make(cluster, node, owned):
        kwargs = {"volumes": [names.OWNER_MOUNT]} if owned else {}
        c = api.create_container(
            local_image, command=["/kindgpu-never-runs"], name=f"{cluster}-{node}",
            labels={names.KIND_CLUSTER_LABEL: cluster, names.KIND_ROLE_LABEL: node},
            host_config=api.create_host_config(), **kwargs,
        )
        made.append(c["Id"])
        return c["Id"]

    yield make
    for cid in made:
        api.remove_container(cid, v=True, force=True)


def random_name():
    return f"pf-{secrets.token_hex(4)}"


def test_daemon_reachable_and_read_through_the_sdk():
    req = Request(simulate=2)
    facts = dockerhost.probe(req)
    assert facts.error is None
    checks = {c.id: c for c in dockerhost.checks(req, facts)}
    server = cmd.run(["docker", "version", "--format", "{{.Server.Version}}"]).stdout.strip()
    assert checks["docker"].status is Status.PASS and server in checks["docker"].found
    cli_runtimes = json.loads(cmd.run(["docker", "info", "--format", "{{json .Runtimes}}"]).stdout)
    assert checks["docker-nvidia-runtime"].details["runtimes"] == sorted(cli_runtimes)
    cgroup = cmd.run(["docker", "info", "--format", "{{.CgroupVersion}} {{.CgroupDriver}}"]).stdout.split()
    assert checks["docker-cgroup"].found == f"cgroup v{cgroup[0]}, driver {cgroup[1]}"
    assert checks["docker-cgroup"].status is (Status.WARN if cgroup[0] == "1" else Status.PASS)
    storage = checks["docker-storage"]
    driver = cmd.run(["docker", "info", "--format", "{{.Driver}}"]).stdout.strip()
    assert storage.details["storage_driver"] == driver
    assert storage.details["free_bytes"] > 0


def test_nvidia_runtime_as_the_daemon_reports_it():
    """FAIL with the nvidia-ctk fix unless the daemon has nvidia as its default runtime."""
    req = Request()
    facts = dockerhost.probe(req)
    check = dockerhost.runtime_check(req, facts.info)
    runtimes = facts.info.get("Runtimes") or {}
    if "nvidia" in runtimes and facts.info.get("DefaultRuntime") == "nvidia":
        assert check.status is Status.PASS
    else:
        assert check.status is Status.FAIL
        assert check.fix == (
            "sudo nvidia-ctk runtime configure --runtime=docker --set-as-default && "
            "sudo systemctl restart docker"
        )
    # The same daemon without nvidia among its runtimes, whatever this host has.
    info = dict(facts.info, Runtimes={k: v for k, v in runtimes.items() if k != "nvidia"})
    missing = dockerhost.runtime_check(req, info)
    assert missing.status is Status.FAIL and missing.found.startswith("no nvidia runtime")
    assert missing.fix == dockerhost.RUNTIME_FIX
    # nvidia present but not the default.
    info = dict(facts.info, Runtimes=dict(runtimes, nvidia={"path": "nvidia-container-runtime"}),
                DefaultRuntime="runc")
    notdefault = dockerhost.runtime_check(req, info)
    assert notdefault.status is Status.FAIL and "default is runc" in notdefault.found
    # Simulated GPUs do not need it.
    assert dockerhost.runtime_check(Request(simulate=8), facts.info).status is Status.SKIP


def test_unreachable_daemon_fails_with_start_command():
    req = Request(docker_url="unix:///nonexistent/docker.sock")
    facts = dockerhost.probe(req)
    checks = {c.id: c for c in dockerhost.checks(req, facts)}
    assert checks["docker"].status is Status.FAIL
    assert checks["docker"].fix == "sudo systemctl start docker"
    assert {checks[i].status for i in ("docker-nvidia-runtime", "docker-cgroup", "docker-storage")} == {Status.SKIP}
    assert dockerhost.cluster_name_check(req, facts).status is Status.SKIP


def test_free_name_passes():
    name = random_name()
    req = Request(cluster_name=name)
    c = dockerhost.cluster_name_check(req, dockerhost.probe(req))
    assert c.status is Status.PASS and c.found == f"{name!r} is free"


def test_someone_elses_kind_cluster_fails(make_node):
    name = random_name()
    make_node(name, "control-plane", owned=False)
    req = Request(cluster_name=name)
    c = dockerhost.cluster_name_check(req, dockerhost.probe(req))
    assert c.status is Status.FAIL
    assert c.fix == f"invoke preflight --name {name}-gpu" and "delete" not in c.fix  # never the user's cluster
    assert "another --name" in c.hint and "smoke --kubeconfig" in c.hint
    assert c.details["foreign"] == [f"{name}-control-plane"]


def two_node_check(make_node, worker_owned):
    """The name check of a two-node cluster whose control plane is kindgpu's."""
    name = random_name()
    make_node(name, "control-plane", owned=True)
    make_node(name, "worker", owned=worker_owned)
    req = Request(cluster_name=name)
    return name, dockerhost.cluster_name_check(req, dockerhost.probe(req))


def test_kindgpu_cluster_passes_and_will_be_resumed(make_node):
    name, c = two_node_check(make_node, worker_owned=True)
    assert c.status is Status.PASS
    assert "made by kindgpu" in c.found and "resume" in c.found
    assert sorted(c.details["nodes"]) == [f"{name}-control-plane", f"{name}-worker"]


def test_one_foreign_node_makes_the_cluster_foreign(make_node):
    name, c = two_node_check(make_node, worker_owned=False)
    assert c.status is Status.FAIL and c.details["foreign"] == [f"{name}-worker"]


def test_main_end_to_end_json(make_node):
    name = random_name()
    make_node(name, "control-plane", owned=False)
    out = io.StringIO()
    rc = main(workers=2, gpus=1, cluster_name=name, simulate=2, as_json=True, out=out)
    doc = json.loads(out.getvalue())
    checks = {c["id"]: c for c in doc["checks"]}
    assert checks["docker"]["status"] == "PASS"
    assert checks["cluster-name"]["status"] == "FAIL"
    assert rc == 1 and doc["result"] == "FAIL"
    # And a free name: the exit code follows the checks, whatever else this host lacks.
    out = io.StringIO()
    rc = main(workers=2, gpus=1, cluster_name=random_name(), simulate=2, as_json=True, out=out)
    doc = json.loads(out.getvalue())
    failing = [c["id"] for c in doc["checks"] if c["status"] == "FAIL"]
    assert rc == (1 if failing else 0)
    assert "cluster-name" not in failing


def test_node_image_containerd_read_from_the_image_itself():
    """The harness's node image (containerd 2.3.7): CDI is on by default, kindgpu enables it anyway."""
    import os

    image = os.environ["KINDGPU_NODE_IMAGE"]
    req = Request(node_image=image)
    facts = dockerhost.probe(req)
    assert facts.node_image["present"] and facts.node_image["containerd"].startswith("2.3.7")  # "2.3.7+unknown"
    assert facts.node_image["config_version"] == 2  # kind's node config, read from the image without running it
    assert facts.node_image["kubernetes"] == (1, 37, 2)
    check = dockerhost.node_image_check(req, facts.node_image)
    assert check.status is Status.PASS and "CDI on by default" in check.found
    missing = Request(node_image=f"kindgpu-test/no-such-node:{secrets.token_hex(3)}")
    check = dockerhost.node_image_check(missing, dockerhost.probe(missing).node_image)
    assert check.status is Status.WARN and check.fix == f"docker pull {missing.node_image}"
