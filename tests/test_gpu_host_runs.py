"""What kindgpu printed on a real H200 host in real mode (hack/gpu-host/rig.sh, 2026-12-01), judged.

Each file is one command's output as rig.sh kept it: "$ command", the output, "# exit N, T s".
The restart/ runs come from an earlier machine of the same kind (another GPU UUID).
"""

import json
import re
from pathlib import Path

import pytest

RUN = Path(__file__).parent / "testdata" / "gpu-host" / "h200-2026-12-01"


def output(rel):
    return (RUN / rel).read_text()


def exit_code(rel):
    return int(re.search(r"^# exit (\d+), [0-9.]+ s$", output(rel), re.M).group(1))


def doc(rel):
    """The JSON a `--json` task printed."""
    text = output(rel)
    return json.loads(text[text.index("{"):text.rindex("}") + 1])


def host_uuid():
    return re.search(r"UUID: (GPU-[0-9a-f-]+)\)", output("probe/nvidia-smi.txt")).group(1)


def test_preflight_passes_every_check_and_reads_the_toolkit_version_right():
    report = doc("gpu1/preflight.txt")
    assert exit_code("gpu1/preflight.txt") == 0
    assert {c["id"]: c["status"] for c in report["checks"] if c["status"] != "PASS"} == {}
    toolkit = next(c for c in report["checks"] if c["id"] == "nvidia-toolkit")
    assert toolkit["found"] == "nvidia-ctk 1.20.0, nvidia-container-runtime 1.20.0"  # not runc's 1.1.5
    node_image = next(c for c in report["checks"] if c["id"] == "node-image")
    assert "CDI on by default; kindgpu enables it" in node_image["found"]
    assert [g["uuid"] for g in report["inventory"]["gpus"]] == [host_uuid()]


def test_up_made_a_healthy_cluster_whose_worker_offers_its_gpu():
    assert exit_code("gpu1/up.txt") == 0
    assert "Nothing to be done." in output("gpu1/up-again.txt")
    status = doc("gpu1/status.txt")
    assert status["healthy"] and not status["simulated"]
    worker = next(n for n in status["nodes"] if n["node"] == "rig-worker")
    assert (worker["assignedGPUs"], worker["allocatableGPUs"], worker["plugin"]) == (1, 1, "Running")
    assert worker["uuids"] == [host_uuid()]


def test_plugin_found_the_driver_where_the_node_has_it_and_cannot_recreate_devices():
    env = dict(line.split("=", 1) for line in output("gpu1/plugin-env.txt").splitlines()[1:-1])
    assert env["LD_LIBRARY_PATH"] == "/driver-root/usr/local/nvidia/lib64"
    assert env["PATH"].startswith("/usr/local/nvidia/bin:")  # /usr/bin/nvidia-smi is a script there
    assert "ModifyDeviceFiles: 1" in output("probe/devices.txt")  # the host's driver default
    assert "ModifyDeviceFiles: 0" in output("gpu1/plugin-params.txt")  # masked in the plugin
    assert "Registered device plugin for 'nvidia.com/gpu' with Kubelet" in output("gpu1/plugin-log.txt")


@pytest.mark.parametrize("rel", ["gpu1/smoke-visibility.txt", "restart/smoke-visibility.txt"])
def test_visibility_smoke_saw_exactly_the_hosts_gpu_and_the_limit_held(rel):
    outcome = doc(rel)
    assert exit_code(rel) == 0 and outcome["ok"]
    (worker,) = outcome["workers"]
    assert worker["seen"] == worker["expected"] and len(worker["seen"]) == 1
    assert worker["seen"][0].startswith("GPU-")
    assert outcome["limitEnforced"]["ok"] and "Insufficient nvidia.com/gpu" in outcome["limitEnforced"]["message"]


def test_restarted_worker_comes_back_with_up():
    assert exit_code("restart/docker-restart.txt") == 0
    assert exit_code("restart/up.txt") == 0
    assert doc("restart/status.txt")["healthy"]


def test_cpu_only_worker_has_no_gpu_and_no_plugin():
    labels = {line.split()[0]: line.split()[-1] for line in output("cpu/labels.txt").splitlines()[2:-1]}
    assert "nvidia.com/gpu.present=true" in labels["rig-worker"]
    assert "nvidia.com/gpu.present" not in labels["rig-worker2"] and "gpu-worker=" not in labels["rig-worker2"]
    assert "No such file" in output("cpu/cpu-worker-devices.txt")
    assert output("cpu/gpu-worker-devices.txt").splitlines()[1] == "/dev/nvidia0"
    pods = output("cpu/plugin-pods.txt").splitlines()[2:-1]
    assert len(pods) == 1 and " rig-worker " in pods[0]
    outcome = doc("cpu/smoke-visibility.txt")
    assert outcome["ok"]
    (cpu,) = outcome["cpuWorkers"]
    assert cpu["node"] == "rig-worker2" and cpu["seen"] == [] and cpu["gpuAsk"]["ok"]


def test_down_leaves_no_container_network_or_state():
    assert exit_code("down/down.txt") == 0
    assert output("down/containers.txt").splitlines()[1:-1] == []
    assert output("down/networks.txt").splitlines()[1:-1] == ["bridge", "host", "none"]
    assert "No such file or directory" in output("down/state.txt")


def seconds(rel):
    return float(re.search(r"^# exit 0, ([0-9.]+) s$", output(rel), re.M).group(1))


def test_bench_bare_kind_and_up_with_the_same_config():
    bare, up = seconds("bench/kind-create.txt"), seconds("bench/up.txt")
    assert 0 < bare < up  # up also waits for Ready nodes and a registered plugin
    assert re.search(r"✓ create .*\(([0-9.]+)s\)", output("bench/up.txt"))
