"""The fake nvidia-smi prints the GPUs it is given in the real nvidia-smi's formats."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kindgpu import inventory
from kindgpu.simgpu import nvidia_smi

# Copies of the real 2×H200 host's output (as in tests/testdata/h200x2).
H200_FIXTURES = Path(__file__).parent / "testdata" / "simgpu"
PROGRAM = nvidia_smi.__file__
FIELDS = ("index", "uuid", "name", "pci.bus_id", "memory.total", "driver_version",
          "mig.mode.current", "minor_number")


def h200_gpus():
    """The real host's two H200s, as the plugin would describe them."""
    rows = inventory.parse_query_csv((H200_FIXTURES / "query-gpu.csv").read_text())
    return [
        {"uuid": r["uuid"], "name": r["name"], "memory_mib": r["memory_mib"],
         "pci_bus_id": "0000" + r["pci_bus_id"], "minor": r["index"]}
        for r in rows
    ]


def simulated_gpus(count=3):
    return [
        {"uuid": g.uuid, "name": g.name, "memory_mib": g.memory_mib,
         "pci_bus_id": "0000" + g.pci_bus_id.upper(), "minor": g.minor}
        for g in inventory.simulated_inventory(count).gpus
    ]


def nvidia_smi_output(gpus, *args, check=True):
    env = {"KINDGPU_SIM_GPUS": json.dumps(gpus), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, PROGRAM, *args], env=env, capture_output=True,
                            text=True, check=check)
    return result


def test_list_matches_the_real_output():
    expected = (H200_FIXTURES / "nvidia-smi-L.txt").read_text()
    assert nvidia_smi_output(h200_gpus(), "-L").stdout == expected


def test_query_matches_the_real_output_format():
    # The real fixture also has compute_cap, which the simulation does not offer.
    real = [line.split(", ") for line in (H200_FIXTURES / "query-gpu.csv").read_text().splitlines()]
    drop = real[0].index("compute_cap")
    real = [cells[:drop] + cells[drop + 1:] for cells in real]
    fields = ",".join(c.split(" [")[0] for c in real[0])

    lines = nvidia_smi_output(h200_gpus(), f"--query-gpu={fields}", "--format=csv").stdout.splitlines()

    assert lines[0].split(", ") == real[0]
    for ours, theirs in zip(lines[1:], real[1:]):
        driver = real[0].index("driver_version")
        theirs[driver] = nvidia_smi.DRIVER_VERSION
        assert ours.split(", ") == theirs


@pytest.mark.parametrize("format_options", ["csv", "csv,noheader", "csv,noheader,nounits", "csv,nounits"])
def test_query_parses_back_to_the_given_gpus(format_options):
    gpus = simulated_gpus()
    text = nvidia_smi_output(gpus, f"--query-gpu={','.join(FIELDS)}", f"--format={format_options}").stdout

    rows = inventory.parse_query_csv(text, fields=FIELDS)

    assert [(r["index"], r["uuid"], r["name"], r["memory_mib"], r["pci_bus_id"]) for r in rows] == [
        (i, g["uuid"], g["name"], g["memory_mib"], inventory.normalize_bus_id(g["pci_bus_id"]))
        for i, g in enumerate(gpus)
    ]
    assert {r["mig_mode"] for r in rows} == {"Disabled"}


def test_units_follow_nvidia_smi():
    gpus = simulated_gpus(1)
    query = "--query-gpu=memory.total,memory.used,minor_number"
    assert nvidia_smi_output(gpus, query, "--format=csv").stdout == (
        "memory.total [MiB], memory.used [MiB], minor_number\n143771 MiB, 0 MiB, 0\n")
    # nounits strips the values' units; the header keeps them, as nvidia-smi does.
    assert nvidia_smi_output(gpus, query, "--format=csv,nounits").stdout == (
        "memory.total [MiB], memory.used [MiB], minor_number\n143771, 0, 0\n")


def test_id_selects_gpus_by_index_or_uuid():
    gpus = simulated_gpus()
    out = nvidia_smi_output(gpus, "-i", f"2,{gpus[0]['uuid']}", "-L").stdout
    assert out == (f"GPU 0: NVIDIA H200 (UUID: {gpus[0]['uuid']})\n"
                   f"GPU 2: NVIDIA H200 (UUID: {gpus[2]['uuid']})\n")


def test_banner_shows_every_gpu_and_says_simulated():
    gpus = simulated_gpus(2)
    lines = nvidia_smi_output(gpus).stdout.splitlines()
    assert "simulated" in lines[2]
    # Same table width as the real banner.
    real = (H200_FIXTURES / "nvidia-smi.txt").read_text().splitlines()
    assert {len(line) for line in lines[1:]} - {0} == {len(line) for line in real[1:]} - {0}
    for i, gpu in enumerate(gpus):
        assert any(line.startswith(f"|{i:>4}  NVIDIA H200") and gpu["pci_bus_id"] in line for line in lines)


def test_no_gpus_and_bad_fields_fail_like_nvidia_smi():
    result = nvidia_smi_output([], "-L", check=False)
    assert (result.returncode, result.stdout) == (6, "No devices were found\n")
    result = nvidia_smi_output(simulated_gpus(1), "--query-gpu=index,bogus", check=False)
    assert result.returncode != 0 and 'Field "bogus" is not a valid field to query.' in result.stderr
