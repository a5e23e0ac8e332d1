"""The simulated DRA plugin: its manifests per Kubernetes version, the feature gates a version needs,
the spec field that asks for DRA, its image's recipe, and its Go unit tests (NVIDIA's attribute names)."""

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from kindgpu import plan as plans, spec as specs, versions
from kindgpu.errors import SpecError
from kindgpu.inventory import GPU, simulated_inventory
from kindgpu.simdra import build, manifest
from paths import TESTDATA

ROOT = Path(__file__).resolve().parents[1]
NVIDIA = json.loads((ROOT / "tests" / "testdata" / "dra" / "nvidia-gpu-device.json").read_text())


def test_nvidia_test_data_says_where_it_comes_from():
    assert "dra-driver-nvidia-gpu" in NVIDIA["source"] and "v25.12.0" in NVIDIA["source"]
    assert len(NVIDIA["source"].split("commit ")[1]) == 40
    assert NVIDIA["driver"] == manifest.DRIVER == "gpu.nvidia.com"


@pytest.mark.parametrize("minor", [34, 35, 36, 37])
def test_device_class_is_nvidias_with_the_extended_resource_mapping(minor):
    cls = manifest.device_class((1, minor, 0))
    assert cls["apiVersion"] == "resource.k8s.io/v1" and cls["kind"] == "DeviceClass"
    assert cls["metadata"]["name"] == NVIDIA["deviceClass"]["name"]
    assert cls["spec"]["selectors"] == [{"cel": {"expression": NVIDIA["deviceClass"]["cel"]}}]
    assert cls["spec"]["extendedResourceName"] == NVIDIA["deviceClass"]["extendedResourceName"] == "nvidia.com/gpu"


@pytest.mark.parametrize("kubernetes", [(1, 33, 5), None])
def test_no_extended_resource_mapping_where_the_version_lacks_it_or_is_unknown(kubernetes):
    assert "extendedResourceName" not in manifest.device_class(kubernetes)["spec"]


@pytest.mark.parametrize("kubernetes, gates", [
    ((1, 34, 4), {"DRAExtendedResource": True}),   # alpha, off by default
    ((1, 35, 4), {"DRAExtendedResource": True}),   # alpha, off by default
    ((1, 36, 3), {}),                              # beta, on by default
    ((1, 37, 2), {}),                              # GA, locked on
    ((1, 38, 0), {}),
])
def test_feature_gates_per_version(kubernetes, gates):
    assert versions.dra_feature_gates(kubernetes) == gates


def test_no_dra_before_1_34():
    with pytest.raises(ValueError, match="1.34 or newer"):
        versions.dra_feature_gates((1, 33, 0))
    assert not versions.dra_supported(None)


FEATURES = json.loads((TESTDATA / "dra" / "kube-features-dra-extended-resource.json").read_text())["versions"]


@pytest.mark.parametrize("version", sorted(FEATURES))
def test_feature_gates_match_kubernetes_own_feature_table(version):
    """Kubernetes' feature table (copied per version into tests/testdata/dra) says what dra_feature_gates says."""
    stages = [line for line in FEATURES[version].splitlines() if "Version:" in line]
    since = [versions.parse("v" + s.split('"')[1] + ".0")[:2] for s in stages if "Default: true" in s]
    parsed = versions.parse(version)
    on = [minor for minor in since if minor <= parsed[:2]]
    assert bool(on) == ("DRAExtendedResource" not in versions.dra_feature_gates(parsed))


def gpus():
    return list(simulated_inventory(4, cluster="dra-unit").gpus)


def test_plugin_is_told_each_gpu_as_nvml_would_describe_it():
    ds = manifest.daemonset("kindgpu/sim-dra-plugin:x", gpus(), "kube-system")
    env = {e["name"]: e.get("value") for e in ds["spec"]["template"]["spec"]["containers"][0]["env"]}
    described = json.loads(env["KINDGPU_SIM_PLAN_GPUS"])
    assert [g["uuid"] for g in described] == [g.uuid for g in gpus()]
    assert described[1] == {"uuid": gpus()[1].uuid, "minor": 1, "pci_bus_id": "0000:11:00.0", "name": "NVIDIA H200",
                            "memory_mib": 143771, "brand": "Nvidia", "architecture": "Hopper", "compute_cap": "9.0"}
    assert env["KINDGPU_SIM_DEVICE_DIR"] == "/var/run/kindgpu/sim-gpus"
    assert env["CDI_ROOT"] == "/var/run/cdi"


@pytest.mark.parametrize("name, brand, architecture, cap", [
    ("NVIDIA L4", "Nvidia", "Ada Lovelace", "8.9"),
    ("NVIDIA A100-SXM4-80GB", "Nvidia", "Ampere", "8.0"),
    ("Tesla T4", "Tesla", "Turing", "7.5"),
    ("NVIDIA B200", "Nvidia", "Blackwell", "10.0"),
    ("Some Future GPU", "Nvidia", "Unknown", "0.0"),
])
def test_products(name, brand, architecture, cap):
    gpu = GPU(index=0, uuid="GPU-x", name=name, pci_bus_id="0000:10:00.0", memory_mib=1024, minor=0)
    assert {k: manifest.describe(gpu)[k] for k in ("brand", "architecture", "compute_cap")} == {
        "brand": brand, "architecture": architecture, "compute_cap": cap}


def test_daemonset_mounts_what_kubelet_and_cdi_need():
    ds = manifest.daemonset("img", gpus(), "kube-system")
    pod = ds["spec"]["template"]["spec"]
    volumes = {v["hostPath"]["path"]: v["name"] for v in pod["volumes"]}
    assert set(volumes) == {"/var/lib/kubelet/plugins", "/var/lib/kubelet/plugins_registry", "/var/run/cdi",
                            "/var/run/kindgpu/sim-gpus", manifest.SHARE_DIR}
    mounts = {m["mountPath"]: m["readOnly"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts == {path: path == "/var/run/kindgpu/sim-gpus" for path in volumes}  # same paths as the node's
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["serviceAccountName"] == manifest.APP_NAME
    assert pod["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_rbac_grants_what_the_kubeletplugin_helper_does():
    objects = manifest.rbac("kube-system")
    assert [o["kind"] for o in objects] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    rules = {(r["apiGroups"][0], r["resources"][0]): set(r["verbs"]) for r in objects[1]["rules"]}
    assert rules[("resource.k8s.io", "resourceslices")] >= {"list", "watch", "create", "update", "delete"}
    assert rules[("resource.k8s.io", "resourceclaims")] == {"get"}
    assert rules[("", "nodes")] == {"get"}
    assert objects[2]["subjects"] == [{"kind": "ServiceAccount", "name": manifest.APP_NAME, "namespace": "kube-system"}]


def test_objects_come_in_the_order_they_are_applied():
    kinds = [o["kind"] for o in manifest.sim_dra_objects("img", gpus(), (1, 37, 2))]
    assert kinds == ["DeviceClass", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]


# The spec field.

def spec_doc(**fields):
    doc = specs.defaults()
    doc.update({"simulate": {"gpus": 2}, "workers": 2, "gpusPerWorker": 1, **fields})
    return specs.fill_object_defaults(doc)


def test_gpu_allocation_is_optional_and_keeps_the_hash_of_specs_without_it():
    assert "gpuAllocation" not in specs.defaults()
    assert specs.problems(spec_doc(nodeImage="kindest/node:v1.37.0")) == []


@pytest.mark.parametrize("value", ["devicePlugin", "dra"])
def test_gpu_allocation_values(value):
    assert specs.problems(spec_doc(nodeImage="kindest/node:v1.34.0", gpuAllocation=value)) == []


def test_gpu_allocation_unknown_value_names_the_field():
    found = specs.problems(spec_doc(nodeImage="kindest/node:v1.37.0", gpuAllocation="DRA"))
    assert [p.field for p in found] == ["gpuAllocation"]


def test_dra_refused_on_a_node_image_older_than_1_34():
    found = specs.problems(spec_doc(nodeImage="kindest/node:v1.33.4", gpuAllocation="dra"))
    assert len(found) == 1 and found[0].field == "gpuAllocation"
    assert "1.34" in found[0].message and "v1.33.4" in found[0].message
    assert "kindest/node:v1.37.0" in found[0].fix and "leave gpuAllocation out" in found[0].fix
    # The device plugin works on any image.
    assert specs.problems(spec_doc(nodeImage="kindest/node:v1.33.4")) == []


def test_dra_with_an_image_whose_version_is_known_only_to_the_image_itself():
    doc = spec_doc(nodeImage="registry.local/node:latest", gpuAllocation="dra")
    assert specs.problems(doc) == []  # the tag does not say: the plan asks the image
    inventory = simulated_inventory(2, cluster=doc["name"])
    with pytest.raises(SpecError) as refused:
        plans.make_plan(doc, inventory, versions.Runtime(kubernetes=None))
    assert [p.field for p in refused.value.problems] == ["gpuAllocation"]
    assert "does not say which Kubernetes" in refused.value.problems[0].message
    with pytest.raises(SpecError):
        plans.make_plan(doc, inventory, versions.Runtime(kubernetes=(1, 33, 0)))
    assert plans.make_plan(doc, inventory, versions.Runtime(kubernetes=(1, 34, 4))).spec["gpuAllocation"] == "dra"


# The image.

def test_image_tag_is_stable_and_hashes_the_go_sources():
    tag = build.image_tag()
    assert tag == build.image_tag() and tag.startswith("kindgpu/sim-dra-plugin:")
    sources = {p.name for p in build.go_sources()}
    assert {"go.mod", "go.sum", "main.go", "gpus.go", "driver.go"} <= sources
    assert not any(name.endswith("_test.go") for name in sources)


def test_rootfs_holds_the_plugin_busybox_and_fake_nvidia_smi():
    layer = build.rootfs_tar(b"ELF-plugin", b"ELF-busybox", b"#!/usr/local/kindgpu/bin/busybox sh\n")
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        files = {m.name: m.mode for m in tar.getmembers() if m.isfile()}
        assert tar.extractfile("usr/local/bin/kindgpu-sim-dra").read() == b"ELF-plugin"
    assert files == {"usr/local/bin/kindgpu-sim-dra": 0o755, "opt/kindgpu/busybox": 0o755,
                     "opt/kindgpu/nvidia-smi.sh": 0o755}


def test_go_unit_tests():
    """The plugin's own tests (gpus_test.go): among them, its devices carry exactly NVIDIA's attribute
    names and kinds from tests/testdata/dra/nvidia-gpu-device.json."""
    try:
        go = build.go_binary()
    except Exception as missing:
        pytest.fail(f"{missing}: the plugin's Go tests need Go (hack/test.sh's machine has it)")
    result = subprocess.run([go, "-C", str(build.SOURCE_DIR), "test", "-trimpath", "-count=1", "./..."],
                            env={**os.environ, **build.GO_ENV}, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("sharing", [{"timeSlicing": {"replicas": 4}},
                                     {"timeSlicing": {"replicas": 2, "renameByDefault": True}},
                                     {"timeSlicing": {"replicas": 1}}])
def test_dra_with_time_slicing_is_refused_naming_both_fields(tmp_path, sharing):
    """The device plugin's replicas mean nothing where no device plugin runs: refused, not ignored."""
    doc = spec_doc(nodeImage="kindest/node:v1.37.0", gpuAllocation="dra", devicePlugin={"sharing": sharing})
    found = specs.problems(doc)
    assert [p.field for p in found] == ["devicePlugin.sharing"]
    assert "gpuAllocation: dra" in found[0].message and "ResourceClaim" in found[0].message
    assert "leave devicePlugin.sharing out" in found[0].fix and "leave gpuAllocation out" in found[0].fix
    # The same sharing is fine with the device plugin, and dra is fine without it.
    assert specs.problems({**doc, "gpuAllocation": "devicePlugin"}) == []
    assert specs.problems({**doc, "devicePlugin": {}}) == []
    # From a spec file: exit 2 (SpecError) before anything is made.
    path = tmp_path / "dra-shared.yaml"
    path.write_text("apiVersion: kindgpu.dev/v1alpha1\nkind: GPUCluster\nname: kgd-shared\ngpuAllocation: dra\n"
                    "nodeImage: kindest/node:v1.37.0\nsimulate: 2\nworkers: 2\ngpusPerWorker: 1\n"
                    f"devicePlugin: {{sharing: {json.dumps(sharing)}}}\n")
    with pytest.raises(SpecError) as refused:
        specs.resolve(path, env={})
    assert refused.value.exit_code == 2
    assert [p.field for p in refused.value.problems] == ["devicePlugin.sharing"]
