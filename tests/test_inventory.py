"""The inventory parsers against the real 2×H200 host's output."""

from kindgpu import inventory
from paths import H200_FIXTURES, parse_information_dump


def test_h200_inventory_has_real_uuids_and_minors(h200_inventory):
    assert [(g.index, g.uuid, g.minor) for g in h200_inventory.gpus] == [
        (0, "GPU-55e9074e-b906-1fb5-f563-e979295320c7", 0),
        (1, "GPU-6ecd4567-d6bf-079a-0073-a3e5ae679589", 1),
    ]
    gpu = h200_inventory.gpus[1]
    assert (gpu.name, gpu.pci_bus_id, gpu.memory_mib, gpu.mig_mode) == (
        "NVIDIA H200", "0000:00:07.0", 143771, "Disabled")
    assert (h200_inventory.driver_version, h200_inventory.cuda_version) == ("580.159.04", "13.0")


def test_minor_is_joined_by_uuid_not_position():
    rows = inventory.parse_query_csv((H200_FIXTURES / "query-gpu.csv").read_text())
    proc = parse_information_dump(
        (H200_FIXTURES / "proc-driver-nvidia-gpus-information.txt").read_text())
    # A host where index and minor differ: swap the minors the driver reports.
    proc[0]["minor"], proc[1]["minor"] = 1, 0
    inv = inventory.merge(rows, list(reversed(proc)))
    assert [(g.index, g.minor) for g in inv.gpus] == [(0, 1), (1, 0)]


def test_noheader_csv_uses_query_field_order():
    rows = inventory.parse_query_csv(
        "3, GPU-abc, NVIDIA H100 80GB HBM3, 00000000:9A:00.0, 81559 MiB, Enabled\n")
    assert rows == [{"index": 3, "uuid": "GPU-abc", "name": "NVIDIA H100 80GB HBM3",
                     "pci_bus_id": "0000:9a:00.0", "memory_mib": 81559, "mig_mode": "Enabled"}]


def test_host_without_nvidia_smi_raises_with_command(monkeypatch):
    import pytest

    from kindgpu.errors import CommandError

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(CommandError) as caught:
        inventory.read_host_inventory()
    assert caught.value.returncode == 127 and "nvidia-smi" in str(caught.value)


def test_simulated_inventory_is_deterministic():
    a, b = inventory.simulated_inventory(4), inventory.simulated_inventory(4)
    assert a == b and len({g.uuid for g in a.gpus}) == 4 and a.simulated
