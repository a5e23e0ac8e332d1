"""kindgpu's node image on a real kind cluster with simulated GPUs (2 workers × 1 GPU).

The base is the harness's node image with a label of this run's own, so its derived image is
new: up builds it, makes the nodes from it and loads nothing into them; smoke passes; a changed
base makes another derived image; `down --images` removes only the node images kindgpu built.
The tests run in file order and share one cluster.
"""

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from cluster_helpers import cluster_from_spec, docker, invoke, kind_kube

CLUSTER = "kni"
WORKERS = (f"{CLUSTER}-worker", f"{CLUSTER}-worker2")
BASE = "kindgpu-e2e/node-base"
TOKEN = uuid.uuid4().hex[:8]


def build_base(harness_image, tag, token):
    """A base node image of this run's own: the harness's, with one label more (a new image ID)."""
    dockerfile = f"FROM {harness_image}\nLABEL kindgpu.e2e/base-token={token}\n"
    result = subprocess.run(["docker", "build", "--quiet", "--tag", tag, "-"], input=dockerfile, text=True,
                            capture_output=True)
    assert result.returncode == 0, result.stderr


def derived_images():
    """{tag: image ID} of the node images kindgpu built whose base is one of this module's."""
    out = docker("images", "--filter", "label=kindgpu.dev/node-image", "--filter",
                 "label=kindgpu.e2e/base-token", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory, harness, request):
    """The spec on a base of this run's own; afterwards the cluster, the bases and their derived images go."""
    base = f"{BASE}:{TOKEN}"
    build_base(harness, base, TOKEN)
    # The environment's node image (the harness's) comes before the spec file's: this module's, here.
    os.environ["KINDGPU_NODE_IMAGE"] = base
    spec = f"""apiVersion: kindgpu.dev/v1alpha1
kind: GPUCluster
name: {CLUSTER}
nodeImage: {base}
simulate: {{gpus: 2}}
workers: 2
gpusPerWorker: 1
"""
    try:
        with cluster_from_spec(tmp_path_factory.mktemp("kindgpu-kni"), CLUSTER, spec, request) as path:
            yield path
    finally:
        os.environ["KINDGPU_NODE_IMAGE"] = harness
        for tag in derived_images():  # only images made from this module's bases
            docker("rmi", tag)
        docker("rmi", base, f"{BASE}:{TOKEN}-first")


def loads():
    return json.loads((state_dir() / "images-loaded.json").read_text())


def state_dir():
    return Path(os.environ["KINDGPU_STATE_DIR"]) / CLUSTER


def make_plan(spec_file):
    from kindgpu import flags

    return flags.plan_from_flags(str(spec_file))


def test_up_builds_the_node_image_once_and_loads_nothing_into_the_nodes(spec_file):
    assert not derived_images()
    result = invoke("up", "--config", str(spec_file), check=True)
    assert "building node image kindgpu/node:" in result.stdout and "(once)" in result.stdout
    (tag,) = derived_images()
    # Every node runs from it ...
    for node in (f"{CLUSTER}-control-plane", *WORKERS):
        assert docker("inspect", "--format", "{{.Config.Image}}", node).stdout.strip() == tag
    # ... and the steps that load images say they loaded none: the image held the plugin's.
    from kindgpu import deviceplugin

    plugin = deviceplugin.image(make_plan(spec_file))
    record = loads()
    assert record["create"] == {"loaded": {}, "nodeImage": tag, "nodeImageHolds": [plugin]}
    assert record["device-plugin"] == {"loaded": {}}
    for worker in WORKERS:
        crictl = json.loads(docker("exec", worker, "crictl", "info").stdout)
        assert crictl["config"]["enableCDI"] is True  # from the image: kind patched nothing
        assert plugin.partition(":")[2] in docker("exec", worker, "crictl", "images").stdout
    allocatable = {n.metadata.name: n.status.allocatable.get("nvidia.com/gpu") for n in kind_kube(CLUSTER).nodes()}
    assert {w: allocatable[w] for w in WORKERS} == {w: "1" for w in WORKERS}


def test_smoke_passes_on_it(spec_file):
    result = invoke("smoke", "--config", str(spec_file), "--json", check=True)
    doc = json.loads(result.stdout)
    assert doc["ok"] and len(doc["workers"]) == 2


def test_the_node_image_is_reused_and_a_changed_base_makes_another(spec_file, harness):
    from kindgpu import nodeimage, nodes

    client, plan = nodes.docker_client(), make_plan(spec_file)
    notes = []
    first = nodeimage.ensure(plan, client, notes.append)
    assert notes == [] and first.tag in derived_images()  # there already: nothing built
    # The base rebuilt under the same name (here: another label, so another image ID); the first
    # keeps a name, for the cleanup.
    assert docker("tag", plan.spec["nodeImage"], f"{BASE}:{TOKEN}-first").returncode == 0
    build_base(harness, plan.spec["nodeImage"], TOKEN + "-changed")
    changed = nodeimage.ensure(make_plan(spec_file), client, notes.append)
    assert changed.tag != first.tag and changed.base_id != first.base_id
    assert notes[0] == f"building node image {changed.tag} from {plan.spec['nodeImage']} (once)"
    assert set(derived_images()) == {first.tag, changed.tag}
    labels = json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", changed.tag).stdout)
    assert json.loads(labels["kindgpu.dev/node-image"])["baseId"] == changed.base_id
    # The cluster's nodes keep the image they were made from.
    listed = {i["tag"]: i for i in json.loads(invoke("node-images", "--json", check=True).stdout)}
    assert listed[first.tag]["usedBy"] == sorted([f"{CLUSTER}-control-plane", *WORKERS])
    assert listed[changed.tag]["usedBy"] == []


def test_down_images_removes_only_the_node_images_kindgpu_built_and_no_container_uses(spec_file, harness):
    from kindgpu.simgpu.build import image_tag

    result = invoke("down", "--config", str(spec_file), "--images", check=True)
    assert not derived_images()
    assert "removed node image kindgpu/node:" in result.stdout
    # Not kindgpu's node images, or not made by it: left alone.
    for kept in (harness, image_tag(), f"{BASE}:{TOKEN}"):
        assert docker("image", "inspect", kept).returncode == 0, kept
