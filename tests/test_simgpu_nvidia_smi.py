"""The fake nvidia-smi prints the GPUs it is given in the real nvidia-smi's formats.

It is a POSIX sh script that a static busybox runs in the pod (tests/e2e/test_fake_nvidia_smi_images.py
runs it so in Docker); here the host's sh runs it, with an empty PATH: it needs no command but
busybox's date, which only the banner prints.
"""

import subprocess
from pathlib import Path

import pytest

from kindgpu import inventory
from kindgpu.simgpu import build

# Copies of the real 2×H200 host's output (as in tests/testdata/h200x2).
H200_FIXTURES = Path(__file__).parent / "testdata" / "simgpu"
SCRIPT = build.CONTEXT_DIR / "nvidia-smi.sh"
FIELDS = ("index", "uuid", "name", "pci.bus_id", "memory.total", "driver_version",
          "mig.mode.current", "minor_number")
NO_PATH = "/nonexistent"  # every command the script runs must be a shell builtin


def h200_gpus(plugin):
    """The real host's two H200s, as the plugin would describe them."""
    rows = inventory.parse_query_csv((H200_FIXTURES / "query-gpu.csv").read_text())
    return [
        {"uuid": r["uuid"], "name": r["name"], "memory_mib": r["memory_mib"],
         "pci_bus_id": plugin.nvidia_smi_bus_id(r["pci_bus_id"]), "minor": r["index"]}
        for r in rows
    ]


def simulated_gpus(plugin, count=3, first=0):
    """`count` GPUs of a simulated host from GPU `first` on: the plan's minors and bus ids."""
    return [
        {"uuid": g.uuid, "name": g.name, "memory_mib": g.memory_mib,
         "pci_bus_id": plugin.nvidia_smi_bus_id(g.pci_bus_id), "minor": g.minor}
        for g in inventory.simulated_inventory(first + count, cluster="smi").gpus[first:]
    ]


def nvidia_smi_output(plugin, gpus, *args, check=True, path=NO_PATH):
    env = {"KINDGPU_SIM_GPUS": plugin.gpu_lines(gpus), "PATH": path}
    return subprocess.run(["/bin/sh", SCRIPT, *args], env=env, capture_output=True, text=True, check=check)


def test_its_interpreter_is_the_busybox_the_plugin_mounts(plugin):
    assert SCRIPT.read_text().splitlines()[0] == f"#!{plugin.BUSYBOX_PATH} sh"
    assert f"BUSYBOX={plugin.BUSYBOX_PATH}\n" in SCRIPT.read_text()


def test_list_matches_the_real_output(plugin):
    expected = (H200_FIXTURES / "nvidia-smi-L.txt").read_text()
    assert nvidia_smi_output(plugin, h200_gpus(plugin), "-L").stdout == expected
    assert nvidia_smi_output(plugin, h200_gpus(plugin), "--list-gpus").stdout == expected


def test_query_matches_the_real_output_format(plugin):
    # The real fixture also has compute_cap, which the simulation does not offer.
    real = [line.split(", ") for line in (H200_FIXTURES / "query-gpu.csv").read_text().splitlines()]
    drop = real[0].index("compute_cap")
    real = [cells[:drop] + cells[drop + 1:] for cells in real]
    fields = ",".join(c.split(" [")[0] for c in real[0])

    lines = nvidia_smi_output(plugin, h200_gpus(plugin), f"--query-gpu={fields}", "--format=csv").stdout.splitlines()

    assert lines[0].split(", ") == real[0]
    for ours, theirs in zip(lines[1:], real[1:]):
        driver = real[0].index("driver_version")
        theirs[driver] = "simulated"
        assert ours.split(", ") == theirs


@pytest.mark.parametrize("format_options", ["csv", "csv,noheader", "csv,noheader,nounits", "csv,nounits"])
def test_query_parses_back_to_the_given_gpus(plugin, format_options):
    gpus = simulated_gpus(plugin)
    text = nvidia_smi_output(plugin, gpus, f"--query-gpu={','.join(FIELDS)}", f"--format={format_options}").stdout

    rows = inventory.parse_query_csv(text, fields=FIELDS)

    assert [(r["index"], r["uuid"], r["name"], r["memory_mib"], r["pci_bus_id"]) for r in rows] == [
        (i, g["uuid"], g["name"], g["memory_mib"], inventory.normalize_bus_id(g["pci_bus_id"]))
        for i, g in enumerate(gpus)
    ]
    assert {r["mig_mode"] for r in rows} == {"Disabled"}


def test_indices_count_from_0_while_minor_and_bus_id_are_the_plans(plugin):
    """A pod given the simulated host's GPUs 3 and 4 sees them as 0 and 1, as a real container
    does, with the host's minor numbers and bus ids."""
    gpus = simulated_gpus(plugin, count=2, first=3)
    out = nvidia_smi_output(plugin, gpus, "--query-gpu=index,minor_number,pci.bus_id,uuid,count",
                            "--format=csv,noheader").stdout
    assert out == (f"0, 3, 00000000:13:00.0, {gpus[0]['uuid']}, 2\n"
                   f"1, 4, 00000000:14:00.0, {gpus[1]['uuid']}, 2\n")


def test_units_follow_nvidia_smi(plugin):
    gpus = simulated_gpus(plugin, 1)
    query = "--query-gpu=memory.total,memory.used,memory.free,minor_number"
    assert nvidia_smi_output(plugin, gpus, query, "--format=csv").stdout == (
        "memory.total [MiB], memory.used [MiB], memory.free [MiB], minor_number\n143771 MiB, 0 MiB, 143771 MiB, 0\n")
    # nounits strips the values' units; the header keeps them, as nvidia-smi does.
    assert nvidia_smi_output(plugin, gpus, query, "--format=csv,nounits").stdout == (
        "memory.total [MiB], memory.used [MiB], memory.free [MiB], minor_number\n143771, 0, 143771, 0\n")


def test_options_take_their_value_either_way_and_aliases_their_field(plugin):
    gpus = simulated_gpus(plugin, 2)
    expected = nvidia_smi_output(plugin, gpus, "--query-gpu=uuid,name,pci.bus_id", "--format=csv,noheader").stdout
    assert nvidia_smi_output(plugin, gpus, "--query-gpu", "gpu_uuid, gpu_name, gpu_bus_id",
                             "--format", "csv, noheader").stdout == expected


def test_id_selects_gpus_by_index_or_uuid(plugin):
    gpus = simulated_gpus(plugin)
    listed = (f"GPU 0: NVIDIA H200 (UUID: {gpus[0]['uuid']})\n"
              f"GPU 2: NVIDIA H200 (UUID: {gpus[2]['uuid']})\n")
    assert nvidia_smi_output(plugin, gpus, "-i", f"2,{gpus[0]['uuid']}", "-L").stdout == listed
    assert nvidia_smi_output(plugin, gpus, f"--id=2, {gpus[0]['uuid']}", "-L").stdout == listed
    assert nvidia_smi_output(plugin, gpus, "-i1", "--query-gpu=index", "--format=csv,noheader").stdout == "1\n"
    result = nvidia_smi_output(plugin, gpus, "-i", "0,7", "-L", check=False)
    assert (result.returncode, result.stdout, result.stderr) == (6, "", "No devices were found matching 0,7\n")


def test_banner_shows_every_gpu_and_says_simulated(plugin):
    gpus = simulated_gpus(plugin, 2, first=2)
    lines = nvidia_smi_output(plugin, gpus, path="/usr/bin:/bin").stdout.splitlines()
    assert "simulated" in lines[2]
    # Same table width as the real banner.
    real = (H200_FIXTURES / "nvidia-smi.txt").read_text().splitlines()
    assert {len(line) for line in lines[1:]} - {0} == {len(line) for line in real[1:]} - {0}
    for i, gpu in enumerate(gpus):
        assert any(line.startswith(f"|{i:>4}  NVIDIA H200") and gpu["pci_bus_id"] in line for line in lines)
    # The real headers and process table, line for line.
    assert lines[3:8] == real[3:8] and lines[-8:] == real[-8:]


def test_a_long_product_name_is_cut_to_its_column(plugin):
    gpus = [{**simulated_gpus(plugin, 1)[0], "name": "NVIDIA H100 80GB HBM3 with a very long name"}]
    banner = nvidia_smi_output(plugin, gpus, path="/usr/bin:/bin").stdout
    assert "|   0  NVIDIA H100 80GB HBM3 with a veOn  |" in banner
    assert nvidia_smi_output(plugin, gpus, "-L").stdout == f"GPU 0: {gpus[0]['name']} (UUID: {gpus[0]['uuid']})\n"


def test_no_gpus_and_bad_arguments_fail_like_nvidia_smi(plugin):
    result = nvidia_smi_output(plugin, [], "-L", check=False)
    assert (result.returncode, result.stdout) == (6, "No devices were found\n")
    result = nvidia_smi_output(plugin, simulated_gpus(plugin, 1), "--query-gpu=index,bogus", check=False)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == 'Field "bogus" is not a valid field to query.\n'
    result = nvidia_smi_output(plugin, simulated_gpus(plugin, 1), "--bogus", check=False)
    assert result.returncode == 2 and "nvidia-smi -h" in result.stderr
    result = nvidia_smi_output(plugin, simulated_gpus(plugin, 1), "--query-gpu", check=False)
    assert result.returncode == 2 and "--query-gpu needs a value" in result.stderr
    assert "--query-gpu" in nvidia_smi_output(plugin, [], "-h").stdout


def test_query_report_shows_the_xid_kindgpu_injected_and_none_once_healed(plugin, tmp_path):
    gpus = simulated_gpus(plugin, count=2)
    xids = tmp_path / "xids"
    xids.write_text(f"{gpus[1]['uuid']} 79\n")

    def report(*args):
        env = {"KINDGPU_SIM_GPUS": plugin.gpu_lines(gpus), "PATH": "/usr/bin:/bin", "KINDGPU_SIM_XIDS": str(xids)}
        return subprocess.run(["/bin/sh", SCRIPT, "-q", *args], env=env, capture_output=True, text=True,
                              check=True).stdout

    blocks = report().split("\nGPU ")
    assert "Attached GPUs                             : 2" in blocks[0]
    assert blocks[1].startswith(gpus[0]["pci_bus_id"]) and blocks[2].startswith(gpus[1]["pci_bus_id"])
    assert f"    GPU UUID                              : {gpus[1]['uuid']}\n" in blocks[2]
    assert "        Last Xid                          : 79\n" in blocks[2]
    assert "        Last Xid                          : None" in blocks[1]
    assert report("-i", "1").count("Last Xid") == 1 and "Last Xid                          : 79" in report("-i", "1")
    xids.write_text("")  # healed
    assert "Last Xid                          : 79" not in report()
    xids.unlink()  # a container of a plugin older than the health directory
    assert report().count("Last Xid                          : None") == 2
