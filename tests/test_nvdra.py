"""NVIDIA's DRA driver for real GPUs, as kindgpu renders it: against the chart of the pinned release
(tests/testdata/dra/chart-v25.12.0), per Kubernetes version."""

import os
import re
import subprocess

import pytest

from kindgpu import deviceplugin, nvdra, nvdriver, plan as plans, spec as specs, versions
from kindgpu.errors import KindgpuError, SpecError
from paths import TESTDATA

CHART = TESTDATA / "dra" / "chart-v25.12.0"


def real_dra_doc(**fields):
    doc = specs.defaults()
    doc.update({"workers": 2, "gpusPerWorker": 1, "nodeImage": "kindest/node:v1.37.2", "gpuAllocation": "dra",
                **fields})
    return specs.fill_object_defaults(doc)


def real_plan(h200_inventory, kubernetes=(1, 37, 2), **fields):
    return plans.make_plan(real_dra_doc(**fields), h200_inventory, versions.Runtime(kubernetes=kubernetes))


def by_kind(objs):
    return {o["kind"]: o for o in objs}


def gpus_container_of_chart():
    """The chart's `gpus` container, as text: from its name to the end of its volumeMounts."""
    text = (CHART / "kubeletplugin.yaml").read_text()
    return text[text.index("      - name: gpus\n"):text.index("      volumes:")]


def test_chart_test_data_says_where_it_comes_from():
    assert "v25.12.0" in (CHART / "SOURCE").read_text()
    assert "gpu-kubelet-plugin -v $(LOG_VERBOSITY)" in gpus_container_of_chart()


def test_real_gpus_under_dra_get_nvidias_driver_not_the_device_plugin(h200_inventory):
    plan = real_plan(h200_inventory)
    assert plan.dra and not plan.simulated
    objs = deviceplugin.objects(plan)
    assert [o["kind"] for o in objs] == ["DeviceClass", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                         "DaemonSet"]
    ds = by_kind(objs)["DaemonSet"]
    [container] = ds["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "nvcr.io/nvidia/k8s-dra-driver-gpu:v25.12.0" == deviceplugin.image(plan)
    assert deviceplugin.plugin_selector(plan) == f"app.kubernetes.io/name={nvdra.APP_NAME}"
    assert ds["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == nvdra.APP_NAME


def test_the_image_follows_the_spec_and_specs_without_the_field_keep_their_hash(h200_inventory):
    assert "draDriver" not in specs.defaults()
    plan = real_plan(h200_inventory, draDriver={"image": "registry.local/dra", "version": "v25.12.1"})
    assert deviceplugin.image(plan) == "registry.local/dra:v25.12.1"


@pytest.mark.parametrize("field, value", [("draDriver.image", "nvcr.io/nvidia/k8s-dra-driver-gpu:v1"),
                                          ("draDriver.version", "25.12"), ("draDriver.image", "Bad/Name")])
def test_bad_driver_images_name_the_field(field, value):
    doc = real_dra_doc(draDriver={field.split(".")[1]: value})
    assert field in [p.field for p in specs.problems(doc)]


def test_the_plugin_container_carries_every_setting_of_the_charts(h200_inventory):
    """Every environment variable and mount of the chart's `gpus` container, but those the chart sets only
    for options kindgpu does not use (feature gates, a CDI hook path, its own params-mask switch: kindgpu
    masks in its entry script)."""
    chart = gpus_container_of_chart()
    chart_env = set(re.findall(r"^        - name: ([A-Z_]+)$", chart, re.M))
    unused = {"FEATURE_GATES", "NVIDIA_CDI_HOOK_PATH", "MASK_NVIDIA_DRIVER_PARAMS"}
    assert unused <= chart_env
    [container] = by_kind(deviceplugin.objects(real_plan(h200_inventory)))["DaemonSet"]["spec"]["template"][
        "spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert chart_env - unused == set(env) - {"DRIVER_ROOT_CTR_PATH"}
    assert env["NVIDIA_DRIVER_ROOT"] == "/" and env["DRIVER_ROOT_CTR_PATH"] == nvdriver.DRIVER_ROOT
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void" and env["CDI_ROOT"] == "/var/run/cdi"
    values = {".Values.kubeletPlugin.kubeletRegistrarDirectoryPath": "/var/lib/kubelet/plugins_registry",
              ".Values.kubeletPlugin.kubeletPluginsDirectoryPath": "/var/lib/kubelet/plugins"}
    mounted = chart.split("volumeMounts:")[1].split("{{- if and .Values.featureGates")[0]
    chart_mounts = {}
    for path, propagation in re.findall(r"mountPath: (.+)\n(?:\s+mountPropagation: (\S+))?", mounted):
        path = re.sub(r"\{\{ (\S+) \| quote \}\}", lambda m: values[m[1]], path)
        chart_mounts[path] = propagation
    mounts = {m["mountPath"]: m.get("mountPropagation", "") for m in container["volumeMounts"]}
    assert {p: m for p, m in mounts.items() if p != nvdriver.MASK_DIR} == chart_mounts
    assert container["securityContext"] == {"privileged": True}
    assert container["startupProbe"]["grpc"] == {"port": 51516, "service": "liveness"}


def test_rights_are_the_charts_for_gpus(h200_inventory):
    chart = (CHART / "rbac-kubeletplugin.yaml").read_text()
    role = by_kind(deviceplugin.objects(real_plan(h200_inventory)))["ClusterRole"]
    for rule in role["rules"]:
        resources = ", ".join(rule["resources"])
        assert f'resources: ["{resources}"]' in chart
        verbs = ", ".join(f'"{v}"' for v in rule["verbs"])
        assert f'resources: ["{resources}"]\n  verbs: [{verbs}]' in chart
    assert "computedomains" not in str(role)  # the ComputeDomain parts are not deployed


@pytest.mark.parametrize("kubernetes, mapped", [((1, 34, 4), True), ((1, 37, 2), True)])
def test_device_class_is_the_charts_with_the_mapping(h200_inventory, kubernetes, mapped):
    chart = (CHART / "deviceclass-gpu.yaml").read_text()
    dc = by_kind(deviceplugin.objects(real_plan(h200_inventory, kubernetes)))["DeviceClass"]
    assert dc["metadata"]["name"] == "gpu.nvidia.com"
    assert f'expression: "{dc["spec"]["selectors"][0]["cel"]["expression"]}"' in chart
    assert ("extendedResourceName" in dc["spec"]) == mapped
    assert "extendedResourceName: nvidia.com/gpu" in chart


def test_dra_still_needs_1_34_for_real_gpus(h200_inventory):
    with pytest.raises(SpecError) as refused:
        real_plan(h200_inventory, kubernetes=(1, 33, 1), nodeImage="kindest/node:v1.33.1")
    assert [p.field for p in refused.value.problems] == ["gpuAllocation"]


@pytest.mark.parametrize("nvml, smi, root", [
    ("/usr/lib/x86_64-linux-gnu", "/usr/bin", "/"),  # Debian and Ubuntu hosts
    ("/usr/lib64", "/usr/bin", "/"),
    ("/usr/local/nvidia/lib64", "/usr/local/nvidia/bin", "/usr/local/nvidia"),  # the GPU machine's (ldconfig -p)
    ("/home/kubernetes/bin/nvidia/lib64", "/home/kubernetes/bin/nvidia/bin", "/home/kubernetes/bin/nvidia"),  # GKE
])
def test_driver_root_is_where_the_dra_plugin_finds_nvml_and_nvidia_smi(nvml, smi, root):
    assert nvdra.driver_root("w", nvdriver.DriverLayout(nvml, smi)) == root


def test_the_gpu_machines_node_gets_its_driver_tree_as_root(h200_inventory):
    ldcache = (TESTDATA / "gpu-host" / "ldconfig-p-worker.txt").read_text()
    layout = nvdriver.DriverLayout(nvdriver.nvml_dir(ldcache), "/usr/local/nvidia/bin")
    root = nvdra.driver_root("rig-worker", layout)
    ds = by_kind(deviceplugin.objects(real_plan(h200_inventory), driver=layout, driver_root=root))["DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    assert {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}["NVIDIA_DRIVER_ROOT"] == root
    assert {"name": "driver-root", "hostPath": {"path": root, "type": "DirectoryOrCreate"}} in pod["volumes"]


@pytest.mark.parametrize("nvml, smi", [("/usr/local/nvidia/lib64", "/usr/bin"), ("/usr/lib64", None),
                                       ("/opt/nv/lib/deep", "/opt/nv/bin")])
def test_a_driver_the_dra_plugin_cannot_find_is_refused_with_the_fix(nvml, smi):
    with pytest.raises(KindgpuError, match="NVIDIA's DRA driver needs both below one driver root") as refused:
        nvdra.driver_root("w", nvdriver.DriverLayout(nvml, smi))
    assert "gpuAllocation: devicePlugin" in refused.value.fix


def test_plugin_starts_with_device_file_modification_masked(tmp_path):
    params = tmp_path / "params"
    params.write_text("ResmanDebugLevel: 4294967295\nModifyDeviceFiles: 1\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mount").write_text('#!/bin/sh\n[ "$1 $2" = "-o bind" ] && cp "$3" "$4"\n')
    (bin_dir / "gpu-kubelet-plugin").write_text(f'#!/bin/sh\necho "started $*"; cat {params}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    (tmp_path / "mask").mkdir()
    script = nvdra.MASK_AND_RUN.replace(nvdriver.PARAMS, str(params)).replace(nvdriver.MASK_DIR, str(tmp_path / "mask"))
    got = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG_VERBOSITY": "4"})
    assert got.returncode == 0, got.stderr
    assert got.stdout == "started -v 4\nResmanDebugLevel: 4294967295\nModifyDeviceFiles: 0\n"
