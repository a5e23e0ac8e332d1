"""Helpers for the e2e suite: run tasks as a user would, keep kind's logs on failure."""

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("KINDGPU_ARTIFACTS", REPO / "out" / "e2e"))


def invoke(*args, check=False, timeout=900, env=None):
    """Run a task exactly as a user would, from the repo."""
    result = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, **(env or {})})
    print(f"$ invoke {' '.join(args)}  -> exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    if check and result.returncode != 0:
        pytest.fail(f"invoke {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


# A plain kind cluster (one kindgpu did not make) from the harness's 1.35+ node image: on a cgroup v1
# host its kubelet starts only when told, as kindgpu tells it; on cgroup v2 the setting changes nothing.
PLAIN_KIND_CONFIG = """kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
kubeadmConfigPatches:
- |
  kind: KubeletConfiguration
  failCgroupV1: false
"""


def plain_kind_cluster(name, image, where):
    """`kind create cluster` as a user would, with no kindgpu in it; its kubeconfig goes to `where`."""
    config = where.with_suffix(".kind.yaml")
    config.write_text(PLAIN_KIND_CONFIG)
    return subprocess.run(["kind", "create", "cluster", "--name", name, "--image", image, "--config", str(config),
                           "--kubeconfig", str(where)], capture_output=True, text=True)


def without_kind_or_docker():
    """Environment for a command line that cannot reach kind or Docker: all it has is a kubeconfig."""
    harness_bin = str(Path(shutil.which("kind")).parent)
    return {"PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != harness_bin),
            "DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def export_logs(cluster, why):
    where = ARTIFACTS / f"{cluster}-{why}"
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["kind", "export", "logs", str(where), "--name", cluster], capture_output=True)
    print(f"kind logs of {cluster} kept in {where}")


def docker(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True)


def node_gpu_minors(node):
    """The minors of the GPU device nodes (/dev/nvidiaN) a node container has."""
    out = docker("exec", node, "sh", "-c", 'for f in /dev/nvidia[0-9]*; do [ -c "$f" ] && echo "$f"; done; true')
    assert out.returncode == 0, out.stderr
    return sorted(int(p.removeprefix("/dev/nvidia")) for p in out.stdout.split())


@contextmanager
def fake_host_gpu_devices(minors):
    """Fake GPU device nodes on the host (char major 195, like the NVIDIA driver's): privileged
    kind nodes inherit them, so isolation by device minor runs for real. Removes only what it made."""
    made = []
    for minor in minors:
        path = Path(f"/dev/nvidia{minor}")
        if not path.exists():
            subprocess.run(["mknod", str(path), "c", "195", str(minor)], check=True)
            made.append(path)
    try:
        yield
    finally:
        for path in made:
            path.unlink(missing_ok=True)


@contextmanager
def cluster_from_spec(root, cluster, spec_text, request):
    """A spec file for `cluster` in a state dir of its own under root; afterwards kind's logs when
    a test failed, then the cluster, its network and the previous KINDGPU_STATE_DIR are gone/back."""
    before = os.environ.get("KINDGPU_STATE_DIR")
    os.environ["KINDGPU_STATE_DIR"] = str(root / "state")
    path = root / f"{cluster}.yaml"
    path.write_text(spec_text)
    try:
        yield path
    finally:
        if getattr(request.session, "e2e_failed", False):
            export_logs(cluster, "failed")
        subprocess.run(["kind", "delete", "cluster", "--name", cluster], capture_output=True)
        docker("network", "rm", f"kindgpu-{cluster}")
        if before is None:
            os.environ.pop("KINDGPU_STATE_DIR")
        else:
            os.environ["KINDGPU_STATE_DIR"] = before


def kind_kube(cluster):
    from kindgpu.kube import Kube

    return Kube.for_kind_cluster(cluster)
