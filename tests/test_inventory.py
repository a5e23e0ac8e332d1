"""The inventory parsers against the real 2×H200 host's output."""

import re

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
        "3, GPU-abc, NVIDIA H100 80GB HBM3, 00000000:9A:00.0, 81559 MiB, Enabled, 9.0\n")
    assert rows == [{"index": 3, "uuid": "GPU-abc", "name": "NVIDIA H100 80GB HBM3",
                     "pci_bus_id": "0000:9a:00.0", "memory_mib": 81559, "mig_mode": "Enabled",
                     "compute_cap": "9.0"}]


def test_compute_cap_is_read_from_the_real_query_and_blank_when_unknown(h200_inventory):
    assert [g.compute_cap for g in h200_inventory.gpus] == ["9.0", "9.0"]
    rows = inventory.parse_query_csv("0, GPU-abc, Tesla T4, 00000000:01:00.0, 15360 MiB, [N/A], [N/A]\n")
    assert rows[0]["compute_cap"] == "" and rows[0]["mig_mode"] == "[N/A]"
    old = inventory.parse_query_csv("0, GPU-abc, Tesla T4, 00000000:01:00.0, 15360 MiB, [N/A]\n",
                                    inventory.OLD_QUERY_FIELDS)
    assert old[0]["compute_cap"] == ""


def test_an_nvidia_smi_without_compute_cap_is_asked_again_without_it(tmp_path, monkeypatch):
    """Drivers before 510 refuse a query naming compute_cap: the inventory still reads."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text("""#!/bin/sh
case "$1" in
  --query-gpu=*compute_cap*) echo 'Field "compute_cap" is not a valid field to query.'; exit 2 ;;
  --query-gpu=*) echo "0, GPU-abc, Tesla T4, 00000000:01:00.0, 15360 MiB, [N/A]" ;;
  *) echo "| NVIDIA-SMI 470.82.01    Driver Version: 470.82.01    CUDA Version: 11.4     |" ;;
esac
""")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    inv = inventory.read_host_inventory(proc_root=tmp_path / "no-proc")
    assert [(g.uuid, g.name, g.compute_cap, g.mig_mode) for g in inv.gpus] == [("GPU-abc", "Tesla T4", "", "[N/A]")]
    assert (inv.driver_version, inv.cuda_version) == ("470.82.01", "11.4")


def test_host_without_nvidia_smi_raises_with_command(monkeypatch):
    import pytest

    from kindgpu.errors import CommandError

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(CommandError) as caught:
        inventory.read_host_inventory()
    assert caught.value.returncode == 127 and "nvidia-smi" in str(caught.value)


def test_simulated_inventory_is_the_same_for_the_same_cluster_and_its_own_for_another():
    a, b = inventory.simulated_inventory(4, cluster="a"), inventory.simulated_inventory(4, cluster="a")
    assert a == b and len({g.uuid for g in a.gpus}) == 4 and a.simulated
    other = inventory.simulated_inventory(4, cluster="b")
    assert not {g.uuid for g in a.gpus} & {g.uuid for g in other.gpus}  # as two real hosts
    # Only the UUIDs differ: indices, minors, bus ids, name and memory are the simulated host's layout.
    assert [(g.index, g.minor, g.pci_bus_id, g.name, g.memory_mib) for g in a.gpus] == \
        [(g.index, g.minor, g.pci_bus_id, g.name, g.memory_mib) for g in other.gpus]
    assert [g.pci_bus_id for g in a.gpus] == ["0000:10:00.0", "0000:11:00.0", "0000:12:00.0", "0000:13:00.0"]
    assert all(re.fullmatch(r"GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", g.uuid) for g in a.gpus)
