"""Around the steps: one command at a time per cluster, and what changed in its spec."""

import pytest

from kindgpu import cluster
from kindgpu.errors import KindgpuError


def test_a_second_command_on_the_same_cluster_is_refused(state_dir):
    with cluster.cluster_lock("busy"):
        with pytest.raises(KindgpuError, match="being changed by kindgpu"):
            with cluster.cluster_lock("busy"):
                pass
    with cluster.cluster_lock("busy"):  # released after the first
        pass


def test_spec_differences_name_the_fields():
    diff = cluster.spec_differences({"workers": 2, "gpusPerWorker": 4, "name": "a"},
                                    {"workers": 3, "gpusPerWorker": 4, "name": "a"})
    assert diff == ["workers: 2 -> 3"]
