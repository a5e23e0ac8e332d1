import pytest

from paths import H200_FIXTURES


@pytest.fixture
def h200_inventory():
    from kindgpu import inventory

    return inventory.merge(
        inventory.parse_query_csv((H200_FIXTURES / "query-gpu.csv").read_text()),
        inventory.parse_information_dump(
            (H200_FIXTURES / "proc-driver-nvidia-gpus-information.txt").read_text()
        ),
        *inventory.parse_driver_versions((H200_FIXTURES / "nvidia-smi.txt").read_text()),
    )


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    """Keep every test's cluster state out of the user's home."""
    monkeypatch.setenv("KINDGPU_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("CLUSTER_NAME", raising=False)
    monkeypatch.delenv("KINDGPU_NODE_IMAGE", raising=False)
    return tmp_path / "state"


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/testdata/golden")
