"""The NVIDIA device plugin DaemonSet kindgpu deploys for real GPUs."""

import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from kubernetes.client import V1ContainerState, V1ContainerStateTerminated, V1ContainerStateWaiting, V1ContainerStatus

from kindgpu import deviceplugin, diagnostics, nvdriver, pods, spec
from kindgpu.errors import KindgpuError

TESTDATA = Path(__file__).parent / "testdata"


def daemonset(nvml="/usr/lib/x86_64-linux-gnu", bin_dir="/usr/bin", **plugin):
    doc = spec.resolve(env={}, flags={})
    doc["devicePlugin"].update(plugin)
    return deviceplugin.nvidia_daemonset(doc, nvdriver.DriverLayout(nvml, bin_dir))


def container_of(ds):
    return ds["spec"]["template"]["spec"]["containers"][0]


def test_default_is_v0_20_with_cdi_and_no_runtime_in_the_node():
    ds = daemonset()
    c = container_of(ds)
    env = {e["name"]: e["value"] for e in c["env"]}
    assert c["image"] == "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"
    assert env["DEVICE_LIST_STRATEGY"] == "cdi-cri" and env["DEVICE_ID_STRATEGY"] == "uuid"
    assert env["NVIDIA_CDI_HOOK_PATH"] == "/usr/bin/nvidia-ctk"  # the host's, mounted by the kind config
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert "/var/run/cdi" in mounts and mounts["/driver-root"]["readOnly"]
    assert c["securityContext"] == {"privileged": True}
    pod = ds["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    # The seed's troubleshooting selects the pods by this label.
    assert ds["spec"]["selector"]["matchLabels"] == {"name": "nvidia-device-plugin-ds"}


def test_envvar_strategy_needs_no_privilege_and_no_cdi_dir():
    c = container_of(daemonset(deviceListStrategy="envvar", deviceIDStrategy="index", version="v0.17.1"))
    env = {e["name"]: e["value"] for e in c["env"]}
    assert c["image"].endswith(":v0.17.1")
    assert (env["DEVICE_LIST_STRATEGY"], env["DEVICE_ID_STRATEGY"]) == ("envvar", "index")
    assert "NVIDIA_CDI_HOOK_PATH" not in env
    assert "/var/run/cdi" not in {m["mountPath"] for m in c["volumeMounts"]}
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def env_of(ds):
    return {e["name"]: e["value"] for e in container_of(ds)["env"]}


def test_nvml_directory_comes_from_the_nodes_ldcache():
    # A GPU worker's `ldconfig -p` on the H200 host: the driver under /usr/local/nvidia/lib64.
    text = (TESTDATA / "gpu-host" / "ldconfig-p-worker.txt").read_text()
    assert nvdriver.nvml_dir(text) == "/usr/local/nvidia/lib64"  # the 64-bit one, not i386's
    assert nvdriver.nvml_dir("3 libs found in cache\n\tlibc.so.6 (libc6,x86-64) => /lib/libc.so.6") is None


def test_plugin_is_told_where_nvml_is_only_outside_the_directories_it_searches():
    assert env_of(daemonset("/usr/local/nvidia/lib64"))["LD_LIBRARY_PATH"] == "/driver-root/usr/local/nvidia/lib64"
    assert "LD_LIBRARY_PATH" not in env_of(daemonset("/usr/lib/x86_64-linux-gnu"))
    assert "LD_LIBRARY_PATH" not in env_of(daemonset("/lib64"))


def run_mask(tmp_path, params_text):
    """The plugin container's start script, with /proc's file and `mount` replaced by stand-ins."""
    params = tmp_path / "params"
    params.write_text(params_text)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mount").write_text('#!/bin/sh\n[ "$1 $2" = "-o bind" ] && cp "$3" "$4"\n')
    (bin_dir / "nvidia-device-plugin").write_text(f"#!/bin/sh\necho started; cat {params}\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    (tmp_path / "mask").mkdir()
    script = (deviceplugin.MASK_PARAMS.replace(nvdriver.PARAMS, str(params))
              .replace(nvdriver.MASK_DIR, str(tmp_path / "mask")))
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})


def test_plugin_starts_with_device_file_modification_masked(tmp_path):
    c = container_of(daemonset())
    assert c["command"] == ["sh", "-c", deviceplugin.MASK_PARAMS]
    assert {"name": "params-mask", "mountPath": nvdriver.MASK_DIR} in c["volumeMounts"]
    got = run_mask(tmp_path, "ResmanDebugLevel: 4294967295\nModifyDeviceFiles: 1\nDeviceFileUID: 0\n")
    assert got.returncode == 0, got.stderr
    assert got.stdout == "started\nResmanDebugLevel: 4294967295\nModifyDeviceFiles: 0\nDeviceFileUID: 0\n"


def test_plugin_does_not_start_when_masking_fails(tmp_path):
    got = run_mask(tmp_path, "ModifyDeviceFiles: 2\n")  # sed leaves it: the check must catch it
    assert got.returncode == 1 and "could not mask" in got.stderr and "started" not in got.stdout


def test_envvar_strategy_is_not_privileged_so_nothing_to_mask():
    c = container_of(daemonset(deviceListStrategy="envvar"))
    assert "command" not in c


def status(waiting=None, terminated=None, last=None, restarts=0):
    return V1ContainerStatus(
        name="nvidia-device-plugin-ctr", image="x", image_id="", ready=False, restart_count=restarts,
        state=V1ContainerState(waiting=waiting and V1ContainerStateWaiting(reason=waiting), terminated=terminated),
        last_state=V1ContainerState(terminated=last))


class Pod:
    def __init__(self, *statuses):
        self.status = type("S", (), {"container_statuses": list(statuses)})()


@pytest.mark.parametrize("st, expected", [
    (status(waiting="CrashLoopBackOff", restarts=2), "CrashLoopBackOff"),
    (status(waiting="ContainerCreating"), None),
    (status(terminated=V1ContainerStateTerminated(exit_code=1, reason="Error"), restarts=1),
     "exited 1 (Error) 1 time(s)"),
    (status(last=V1ContainerStateTerminated(exit_code=1, reason="Error"), restarts=1), None),  # running again
    (status(terminated=V1ContainerStateTerminated(exit_code=0, reason="Completed")), None),
    # Killed with its node (the node restarts, kubelet starts it again): not a crash.
    (status(terminated=V1ContainerStateTerminated(exit_code=255, reason="Unknown"), restarts=1), None),
])
def test_a_crashing_plugin_is_seen_at_once(st, expected):
    found = pods.crash(Pod(st))
    assert (found and found[1]) == expected


# The error NVIDIA's plugin v0.20.0 logged on the H200 host without NVML (the glog prefix is made up).
NVML_LOG = ("I1201 10:00:01.000000       1 main.go:235] Starting NVIDIA Device Plugin\n"
            "E1201 10:00:01.000100       1 main.go:132] error starting plugins: unable to validate flags: "
            "CDI --device-list-strategy options are only supported on NVML-based systems\n")


def test_crash_fix_fits_the_log():
    assert diagnostics.last_error_line(NVML_LOG).endswith("only supported on NVML-based systems")
    assert "ldconfig -p" in diagnostics.crash_fix(NVML_LOG, "gpu-cluster-worker")
    assert "gpu-cluster-worker" in diagnostics.crash_fix(NVML_LOG, "gpu-cluster-worker")
    assert "sed, mount" in diagnostics.crash_fix("kindgpu: could not mask /proc/driver/nvidia/params", "w")
    assert "logs" in diagnostics.crash_fix("panic: something else", "w")


@pytest.mark.parametrize("info, enabled", [
    ('{"status": {}, "config": {"containerd": {}, "enableCDI": false, "cdiSpecDirs": []}}', False),
    ('{"config": {"enableCDI": true, "cdiSpecDirs": ["/etc/cdi", "/var/run/cdi"]}}', True),
    ('{"config": {}}', None),
    ("not json", None),
])
def test_cdi_state_read_from_crictl_info(info, enabled):
    assert nvdriver.cdi_enabled(info) is enabled


def test_cdi_state_of_a_real_kind_node():
    # `crictl info` of a kind node (harness image, containerd 2.3.7) made with kindgpu's patch.
    info = (TESTDATA / "gpu-host" / "crictl-info-containerd-2.3.7.json").read_text()
    assert nvdriver.cdi_enabled(info) is True
    assert nvdriver.cdi_enabled(info.replace('"enableCDI": true', '"enableCDI": false')) is False


class ProbedNode:
    """A GPU worker that answers the device-plugin step's probe, and counts how often it is asked."""

    def __init__(self, started="2026-12-07T05:00:00+00:00"):
        self.name, self.asked, self.started = "c-worker", 0, started
        self.container = type("C", (), {"id": "abc123"})()

    def started_at(self):
        return datetime.fromisoformat(self.started)

    def sh(self, script, check=True):
        self.asked += 1
        sep = nvdriver.SEPARATOR
        out = (f"\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib64/libnvidia-ml.so.1\n{sep}\n/usr/bin\n{sep}\n"
               '{"config": {"enableCDI": false}}\n')
        return type("R", (), {"stdout": out})()


def test_a_workers_driver_and_cdi_are_asked_once_per_container_start(tmp_path):
    node, record = ProbedNode(), tmp_path / "node-facts.json"
    first = nvdriver.node_facts(node, record)
    assert first == (deviceplugin.DriverLayout("/usr/lib64", "/usr/bin"), False)
    assert nvdriver.node_facts(node, record) == first and node.asked == 1  # kept: the node is not asked
    node.started = "2026-12-07T06:00:00+00:00"  # restarted: the runtime put the driver in anew
    assert nvdriver.node_facts(node, record) == first and node.asked == 2
    record.unlink()  # state directory deleted by hand: asked again
    nvdriver.node_facts(node, record)
    assert node.asked == 3
    with pytest.raises(KindgpuError, match="has CDI off"):
        nvdriver.check_cdi(node.name, False)
