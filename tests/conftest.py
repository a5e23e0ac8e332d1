import importlib
import os
import sys
import tempfile

import pytest
from grpc_tools import protoc

import paths
from fake_kubelet import SIMGPU_DIR


@pytest.fixture
def h200_inventory():
    return paths.h200_inventory()


@pytest.fixture(autouse=True)
def own_tools_dir(tmp_path_factory, monkeypatch):
    """kindgpu's own tools directory (cmd.tools_dir()) is empty and the test's: `preflight --fix` never
    installs into the user's home."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))


@pytest.fixture
def proven_tools(tmp_path, monkeypatch):
    """kind and kubectl of proven versions on PATH (scripts that print them), so --fix installs nothing."""
    bin_dir = tmp_path / "proven-bin"
    bin_dir.mkdir()
    scripts = {"kind": "echo 'kind v0.33.0 go1.26.8 linux/amd64'",
               "kubectl": """echo '{"clientVersion": {"gitVersion": "v1.37.2"}}'"""}
    for name, line in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{line}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    """Keep every test's cluster state out of the user's home."""
    monkeypatch.setenv("KINDGPU_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("CLUSTER_NAME", raising=False)
    monkeypatch.delenv("KINDGPU_NODE_IMAGE", raising=False)
    return tmp_path / "state"


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/testdata/golden")


# The device plugin's gRPC API and a node directory, for tests/fake_kubelet.py's fakes.


@pytest.fixture(scope="module")
def plugin_api(tmp_path_factory):
    """Generate the gRPC code from api.proto with the host's grpcio-tools, as the image does."""
    out = tmp_path_factory.mktemp("deviceplugin-api")
    args = ["protoc", f"-I{SIMGPU_DIR}", f"--python_out={out}", f"--grpc_python_out={out}", "api.proto"]
    assert protoc.main(args) == 0
    sys.path.insert(0, str(out))
    yield importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")
    sys.path.remove(str(out))


@pytest.fixture(scope="module")
def plugin(plugin_api):
    return importlib.import_module("kindgpu.simgpu.plugin")


@pytest.fixture
def node_dir():
    # Short path: unix socket paths are limited to about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="simgpu-") as root:
        yield root
