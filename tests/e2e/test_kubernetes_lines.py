"""The smaller set on each other Kubernetes line kindgpu supports (the harness builds them:
KINDGPU_NODE_IMAGES_EXTRA, v1.34 today): up, smoke, a restarted worker, down. The whole suite runs on
the default line (KINDGPU_NODE_IMAGE, v1.37).

The tests run in file order, per line, and share one cluster per line.
"""

import json
import os

import pytest

from cluster_helpers import cluster_from_spec, docker, invoke, kind_kube

EXTRA = os.environ.get("KINDGPU_NODE_IMAGES_EXTRA", "").split()
CLUSTER = "kline"
SPEC = f"""apiVersion: kindgpu.dev/v1alpha1
kind: GPUCluster
name: {CLUSTER}
simulate: {{gpus: 2}}
workers: 2
gpusPerWorker: 1
"""


@pytest.fixture(scope="module", params=EXTRA or ["(none)"])
def line(request, harness, tmp_path_factory):
    """A cluster of one other line's node image; fails (never skips) when the harness built none."""
    image = request.param
    if image == "(none)":
        pytest.fail("KINDGPU_NODE_IMAGES_EXTRA is empty: `bash hack/harness/setup.sh` builds the other "
                    "Kubernetes lines (K8S_EXTRA_VERSIONS) and writes it into /var/cache/kindgpu-harness/env")
    # The flag, not the spec: KINDGPU_NODE_IMAGE (the default line's image) outranks a spec file.
    with cluster_from_spec(tmp_path_factory.mktemp("kindgpu-kline"), CLUSTER, SPEC, request) as path:
        yield ["--config", str(path), "--node-image", image], image


def allocatable():
    return {n.metadata.name: n.status.allocatable.get("nvidia.com/gpu") for n in kind_kube(CLUSTER).nodes()}


def test_up_on_the_line(line):
    given, image = line
    result = invoke("up", *given, check=True)
    assert "✓ create" in result.stdout and "✓ device-plugin" in result.stdout
    wanted = image.split(":")[1].split("-")[0]  # kindgpu-harness/node:v1.34.4-<hash>
    versions = {n.status.node_info.kubelet_version for n in kind_kube(CLUSTER).nodes()}
    assert versions == {wanted}
    assert allocatable() == {f"{CLUSTER}-control-plane": None, f"{CLUSTER}-worker": "1", f"{CLUSTER}-worker2": "1"}
    assert "Nothing to be done." in invoke("up", *given, check=True).stdout


def test_smoke_on_the_line(line):
    result = invoke("smoke", "--name", CLUSTER, "--json", check=True)
    outcome = json.loads(result.stdout)
    assert outcome["ok"] and [w["ok"] for w in outcome["workers"]] == [True, True]


def test_a_restarted_worker_comes_back_with_up(line):
    given, _ = line
    assert docker("restart", f"{CLUSTER}-worker2").returncode == 0
    invoke("up", *given, check=True)
    assert allocatable()[f"{CLUSTER}-worker2"] == "1"
    invoke("smoke", "--name", CLUSTER, check=True)


def test_down_on_the_line(line):
    invoke("down", "--name", CLUSTER, check=True)
    assert docker("ps", "-aq", "--filter", f"label=io.x-k8s.kind.cluster={CLUSTER}").stdout.strip() == ""
