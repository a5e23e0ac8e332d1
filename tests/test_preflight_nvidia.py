"""Preflight's NVIDIA checks: the real 2×H200 host's output served by stand-in executables.

The seam is the outermost one: executables on PATH and the /proc directory preflight is
pointed at. Everything between (kindgpu.cmd, kindgpu.inventory, the checks) runs for real.
"""

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from kindgpu.preflight import Request, Status, nvidia
from kindgpu.preflight.model import TOOLKIT_CONFIG

H200 = Path(__file__).resolve().parent / "testdata" / "h200x2"
TOOLKIT = Path(__file__).resolve().parent / "testdata" / "preflight" / "toolkit"

# Stands in for nvidia-smi: answers --query-gpu from a captured CSV (with header) the way the
# real binary would for the fields asked, and prints the captured banner otherwise.
FAKE_NVIDIA_SMI = r'''#!{python}
import os, sys
fix = os.environ["FAKE_NVIDIA_SMI_DIR"]
if os.environ.get("FAKE_NVIDIA_SMI_FAIL"):
    print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
          "Make sure that the latest NVIDIA driver is installed and running.")
    sys.exit(9)
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
if "--query-gpu" not in args:
    sys.stdout.write(open(os.path.join(fix, "nvidia-smi.txt")).read())
    sys.exit(0)
lines = [l for l in open(os.path.join(fix, "query-gpu.csv")).read().splitlines() if l.strip()]
header = [h.strip().split(" [")[0] for h in lines[0].split(",")]
fields = args["--query-gpu"].split(",")
if "noheader" not in args.get("--format", ""):
    print(", ".join(fields))
for line in lines[1:]:
    row = dict(zip(header, (c.strip() for c in line.split(","))))
    print(", ".join(row[f] for f in fields))
'''


def install_fake(bindir, name, text):
    path = bindir / name
    path.write_text(text.replace("{python}", sys.executable))
    path.chmod(0o755)
    return path


def proc_from_dump(proc_root, dump_text):
    """Lay the `== /proc/driver/nvidia/gpus/<bus>/information` dump out as files."""
    for m in re.finditer(r"^== (/proc/(\S+))\n(.*?)(?=^== |\Z)", dump_text, re.M | re.S):
        target = proc_root / m.group(2)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(m.group(3))
    return proc_root


@pytest.fixture
def gpu_host(tmp_path, monkeypatch):
    """PATH holds only a stand-in nvidia-smi serving a copy of the H200 fixtures."""
    fixtures = tmp_path / "fixtures"
    shutil.copytree(H200, fixtures)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    install_fake(bindir, "nvidia-smi", FAKE_NVIDIA_SMI)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("FAKE_NVIDIA_SMI_DIR", str(fixtures))
    proc = proc_from_dump(
        tmp_path / "proc", (fixtures / "proc-driver-nvidia-gpus-information.txt").read_text()
    )
    return fixtures, proc


def h200_truth():
    """What the fixtures say, read independently of kindgpu's parsers."""
    uuids = re.findall(r"\(UUID: (GPU-[0-9a-f-]+)\)", (H200 / "nvidia-smi-L.txt").read_text())
    info = (H200 / "proc-driver-nvidia-gpus-information.txt").read_text()
    minors = dict(
        zip(re.findall(r"GPU UUID:\s+(\S+)", info), map(int, re.findall(r"Device Minor:\s+(\d+)", info)))
    )
    banner = (H200 / "nvidia-smi.txt").read_text()
    driver = re.search(r"Driver Version: (\S+)", banner).group(1)
    cuda = re.search(r"CUDA Version: (\S+)", banner).group(1)
    return uuids, minors, driver, cuda


def test_h200_driver_check_passes_with_full_inventory(gpu_host):
    _, proc = gpu_host
    req = Request(workers=2, gpus=1, proc_root=proc)
    inv, err = nvidia.probe_driver(req)
    assert err is None
    uuids, minors, driver, cuda = h200_truth()
    assert [g.uuid for g in inv.gpus] == uuids
    assert {g.uuid: g.minor for g in inv.gpus} == minors
    assert (inv.driver_version, inv.cuda_version) == (driver, cuda)
    assert all(g.memory_mib > 100_000 and g.mig_mode == "Disabled" for g in inv.gpus)

    check = nvidia.driver_check(req, inv, err)
    assert check.status is Status.PASS
    assert driver in check.found and cuda in check.found
    assert f"{len(uuids)} GPU(s)" in check.found


def test_minor_is_joined_by_uuid_not_index(gpu_host):
    fixtures, proc = gpu_host
    # Swap the minors between the two GPUs on disk: the inventory must follow the UUIDs.
    files = sorted(proc.glob("driver/nvidia/gpus/*/information"))
    texts = [f.read_text() for f in files]
    swapped = [re.sub(r"Device Minor:\s+\d+", "Device Minor: \t 7", texts[0]),
               re.sub(r"Device Minor:\s+\d+", "Device Minor: \t 3", texts[1])]
    for f, t in zip(files, swapped):
        f.write_text(t)
    inv, err = nvidia.probe_driver(Request(proc_root=proc))
    by_uuid = {re.search(r"GPU UUID:\s+(\S+)", t).group(1): int(re.search(r"Device Minor:\s+(\d+)", t).group(1))
               for t in swapped}
    assert {g.uuid: g.minor for g in inv.gpus} == by_uuid
    assert [g.minor for g in inv.gpus] != [g.index for g in inv.gpus]


def test_missing_minor_warns(gpu_host):
    _, proc = gpu_host
    shutil.rmtree(proc / "driver")
    req = Request(proc_root=proc)
    check = nvidia.driver_check(req, *nvidia.probe_driver(req))
    assert check.status is Status.WARN
    assert "no device minor" in check.found


def test_mig_enabled_warns_with_the_command_that_disables_it(gpu_host):
    fixtures, proc = gpu_host
    csv = fixtures / "query-gpu.csv"
    lines = csv.read_text().splitlines()
    lines[2] = lines[2].replace("Disabled", "Enabled")  # GPU 1
    csv.write_text("\n".join(lines) + "\n")
    req = Request(proc_root=proc)
    check = nvidia.driver_check(req, *nvidia.probe_driver(req))
    assert check.status is Status.WARN
    assert check.fix == "sudo nvidia-smi -i 1 -mig 0"


def test_broken_driver_fails_with_modprobe(gpu_host, monkeypatch):
    _, proc = gpu_host
    monkeypatch.setenv("FAKE_NVIDIA_SMI_FAIL", "1")
    req = Request(proc_root=proc)
    inv, err = nvidia.probe_driver(req)
    check = nvidia.driver_check(req, inv, err)
    assert check.status is Status.FAIL
    assert "exit 9" in check.found and "couldn't communicate" in check.found
    assert "modprobe nvidia" in check.fix


def test_no_nvidia_smi_fails_and_points_at_simulated_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    req = Request(proc_root=tmp_path)
    check = nvidia.driver_check(req, *nvidia.probe_driver(req))
    assert check.status is Status.FAIL
    assert "nvidia-smi not found" in check.found
    assert check.fix == "invoke up --simulate 8"

    sim = Request(simulate=8, proc_root=tmp_path)
    assert nvidia.driver_check(sim, None, None).status is Status.SKIP


def test_this_host_as_it_is():
    """The real host, real PATH, real /proc: FAIL exactly when nvidia-smi is absent."""
    req = Request()
    check = nvidia.driver_check(req, *nvidia.probe_driver(req))
    if shutil.which("nvidia-smi") is None:
        assert check.status is Status.FAIL and "--simulate" in check.fix
    else:
        assert check.status in (Status.PASS, Status.WARN, Status.FAIL)
        assert check.found


# --- toolkit ----------------------------------------------------------------------------------

FAKE_CTK = "#!/bin/sh\necho 'NVIDIA Container Toolkit CLI version 1.17.8'\necho 'commit: f202b80'\n"
FAKE_RUNTIME = (
    "#!/bin/sh\necho 'NVIDIA Container Runtime version 1.17.8'\necho 'commit: f202b80'\n"
    "echo 'spec: 1.2.0'\necho\necho 'runc version 1.1.12'\n"
)


def test_toolkit_binaries_found_with_versions(tmp_path, monkeypatch):
    install_fake(tmp_path, "nvidia-ctk", FAKE_CTK)
    install_fake(tmp_path, "nvidia-container-runtime", FAKE_RUNTIME)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    versions, _ = nvidia.probe_toolkit(Request(toolkit_config=TOOLKIT / "ready.toml"))
    assert versions == {"nvidia-ctk": "1.17.8", "nvidia-container-runtime": "1.17.8"}
    assert nvidia.tools_check(versions).status is Status.PASS


def test_toolkit_missing_fails_with_install_command(tmp_path, monkeypatch):
    install_fake(tmp_path, "nvidia-ctk", FAKE_CTK)
    monkeypatch.setenv("PATH", str(tmp_path))  # nvidia-container-runtime is not there
    versions, _ = nvidia.probe_toolkit(Request(toolkit_config=tmp_path / "none.toml"))
    check = nvidia.tools_check(versions)
    assert check.status is Status.FAIL
    assert "nvidia-container-runtime not found" in check.found
    assert check.fix == "sudo apt-get install -y nvidia-container-toolkit"


MOUNTS_FIX = "sudo nvidia-ctk config --set accept-nvidia-visible-devices-as-volume-mounts=true --in-place"
ENVVAR_FIX = (
    "sudo nvidia-ctk config --set accept-nvidia-visible-devices-envvar-when-unprivileged=false "
    "--in-place"
)


@pytest.mark.parametrize(
    "name, mounts, envvar",
    [
        ("default.toml", Status.FAIL, Status.WARN),
        ("ready.toml", Status.PASS, Status.PASS),
        ("mounts-false.toml", Status.FAIL, Status.WARN),
        ("envvar-true.toml", Status.PASS, Status.WARN),
        ("inline-comments.toml", Status.PASS, Status.PASS),
        ("wrong-table.toml", Status.FAIL, Status.WARN),
        ("invalid.toml", Status.FAIL, Status.SKIP),
        ("does-not-exist.toml", Status.FAIL, Status.WARN),
    ],
)
def test_toolkit_config_variants(tmp_path, name, mounts, envvar):
    # Not the toolkit's default path, so the fix names the file with --config-file.
    src = TOOLKIT / name
    req = Request(toolkit_config=src)
    got = nvidia.config_checks(req, nvidia.read_toolkit_config(src))
    assert [c.status for c in got] == [mounts, envvar], [c.found for c in got]
    by_id = {c.id: c for c in got}
    if mounts is Status.FAIL and name != "invalid.toml":
        assert by_id["toolkit-volume-mounts"].fix == MOUNTS_FIX.replace(
            "config --set", f"config --config-file {src} --set"
        )
    if envvar is Status.WARN:
        assert "envvar-when-unprivileged=false" in by_id["toolkit-envvar"].fix
    if name == "invalid.toml":
        assert "not valid TOML" in by_id["toolkit-volume-mounts"].found


def test_fix_commands_for_the_default_config_path():
    config = nvidia.read_toolkit_config(TOOLKIT / "default.toml")
    mounts, envvar = nvidia.config_checks(Request(toolkit_config=TOOLKIT_CONFIG), config)
    assert mounts.fix == MOUNTS_FIX
    assert envvar.fix == ENVVAR_FIX


def test_toolkit_checks_skip_with_simulated_gpus():
    got = nvidia.toolkit_checks(Request(simulate=4), {}, {})
    assert {c.status for c in got} == {Status.SKIP}
    assert all("not needed with simulated GPUs" in c.found for c in got)


# What a toolkit built from source without its Makefile's version flags prints (the GPU host's).
RUNTIME_WITHOUT_VERSION = (
    "NVIDIA Container Runtime version unknown\nspec: 1.2.1\n\nrunc version 1.1.5+ds1\n"
    "commit: v1.1.5-0-gf19387a\nspec: 1.0.2-dev\ngo: go1.19.8\nlibseccomp: 2.5.4\n"
)


def test_tool_version_parser_reads_only_the_tools_own_line():
    assert nvidia.parse_tool_version("NVIDIA Container Runtime version 1.17.8\ncommit: f202b80\n"
                                     "spec: 1.2.0\n\nrunc version 1.1.12\n") == "1.17.8"
    # runc's version on a later line is not the toolkit's.
    assert nvidia.parse_tool_version(RUNTIME_WITHOUT_VERSION) == "unknown"
    assert nvidia.parse_tool_version("garbage") == "unknown"
    assert nvidia.parse_tool_version("") == "unknown"


@pytest.mark.parametrize("runtime, status", [
    ("1.20.0", Status.PASS), ("1.17.0", Status.PASS), ("1.16.2", Status.FAIL), ("0.9", Status.FAIL),
    ("unknown", Status.WARN),
])
def test_toolkit_version_must_be_at_least_1_17(runtime, status):
    check = nvidia.tools_check({"nvidia-ctk": runtime, "nvidia-container-runtime": runtime})
    assert check.status is status, check.found
    if status is not Status.PASS:
        assert "1.17" in check.hint and check.fix


@pytest.mark.parametrize("workers, gpus", [(2, 1), (1, 2), (3, 1), (2, 2)])
def test_h200_host_end_to_end_json(gpu_host, tmp_path, workers, gpus):
    """main() on the stand-in H200 host: the inventory and the capacity come from the fixtures."""
    import io
    import json

    from kindgpu.preflight import main

    _, proc = gpu_host
    (proc / "meminfo").write_text("MemAvailable:   16777216 kB\n")
    out = io.StringIO()
    main(workers=workers, gpus=gpus, as_json=True, out=out, proc_root=proc,
         toolkit_config=TOOLKIT / "ready.toml", docker_url="unix:///nonexistent/docker.sock")
    doc = json.loads(out.getvalue())
    uuids, minors, driver, _ = h200_truth()
    assert doc["inventory"]["driver_version"] == driver
    assert {g["uuid"]: g["minor"] for g in doc["inventory"]["gpus"]} == minors
    checks = {c["id"]: c for c in doc["checks"]}
    assert checks["nvidia-driver"]["status"] == "PASS"
    assert checks["toolkit-volume-mounts"]["status"] == "PASS"
    cap = checks["gpu-capacity"]
    if workers * gpus <= len(uuids):
        assert cap["status"] == "PASS"
    else:
        assert cap["status"] == "FAIL"
        assert cap["fix"] == f"invoke up --workers {len(uuids) // gpus} --gpus {gpus}"


@pytest.mark.parametrize("output, version", [
    ("containerd github.com/containerd/containerd/v2 v2.3.7 0d1c7f1\n", "2.3.7"),
    ("containerd containerd.io 1.7.24 88bf19b2105c8b17560993bee28a01ddc2f97182\n", "1.7.24"),
    ("containerd github.com/containerd/containerd v1.6.20~ds1 1.6.20~ds1-1+b1\n", "1.6.20~ds1"),
    ("garbage", None),
])
def test_containerd_version_of_a_node_image(output, version):
    from kindgpu.preflight import dockerhost

    assert dockerhost.parse_containerd_version(output) == version


@pytest.mark.parametrize("containerd, status, said", [
    ("2.3.7", Status.PASS, "CDI on by default"), ("1.7.24", Status.PASS, "CDI off by default"),
    ("1.6.20", Status.FAIL, "has no CDI"), (None, Status.WARN, "did not say"),
])
def test_node_image_check_says_which_containerd_and_that_kindgpu_enables_cdi(containerd, status, said):
    from kindgpu.preflight import dockerhost

    req = Request(node_image="kindest/node:v1.31.4")
    check = dockerhost.node_image_check(req, {"present": True, "containerd": containerd})
    assert check.status is status and said in check.found
    assert dockerhost.node_image_check(Request(node_image="x", simulate=2), {}).status is Status.SKIP
