"""The simulated-GPU device plugin's DaemonSet and the image tag it runs."""

import yaml

from kindgpu import names
from kindgpu.simgpu import build, manifest


def daemonset(**overrides):
    args = {"image": "kindgpu/sim-device-plugin:0.1.0-abc", "product": "NVIDIA H200",
            "memory_mib": 143771, **overrides}
    (obj,) = manifest.sim_device_plugin_objects(**args)
    return obj


def test_daemonset_runs_on_gpu_nodes_with_the_preloaded_image():
    ds = daemonset()
    assert (ds["apiVersion"], ds["kind"]) == ("apps/v1", "DaemonSet")
    assert ds["metadata"]["namespace"] == "kube-system"
    assert ds["metadata"]["labels"] == {
        "app.kubernetes.io/name": "kindgpu-sim-device-plugin",
        "app.kubernetes.io/managed-by": "kindgpu",
    }
    pod = ds["spec"]["template"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["nodeSelector"] == {names.LABEL_GPU_PRESENT: "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "kindgpu/sim-device-plugin:0.1.0-abc"
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_daemonset_passes_the_gpu_model_and_mounts_node_dirs():
    ds = daemonset(product="NVIDIA H100 80GB HBM3", memory_mib=81559, namespace="gpu-system")
    assert ds["metadata"]["namespace"] == "gpu-system"
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["KINDGPU_SIM_PRODUCT"], env["KINDGPU_SIM_MEMORY_MIB"]) == ("NVIDIA H100 80GB HBM3", "81559")

    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    mounts = {m["name"]: (m["mountPath"], m["readOnly"]) for m in container["volumeMounts"]}
    # Each node directory appears at the same path inside the plugin.
    assert mounts == {
        "device-plugins": ("/var/lib/kubelet/device-plugins", False),
        "sim-gpus": (names.SIM_DEVICE_MOUNT_DIR, True),
        "share": (manifest.SHARE_DIR, False),
    }
    assert host_paths == {name: path for name, (path, _) in mounts.items()}
    # The GPUs' files the plugin reads follow the node's (`invoke fault --remove-device` and heal); no other does.
    assert {m["name"]: m.get("mountPropagation") for m in container["volumeMounts"]} == {
        "device-plugins": None, "sim-gpus": "HostToContainer", "share": None}


def test_objects_serialize_to_yaml():
    text = yaml.safe_dump_all(manifest.sim_device_plugin_objects("img:1", "NVIDIA H200", 143771))
    assert list(yaml.safe_load_all(text)) == manifest.sim_device_plugin_objects("img:1", "NVIDIA H200", 143771)


def test_image_tag_is_version_plus_a_hash_of_the_plugin_sources(monkeypatch, tmp_path):
    tag = build.image_tag()
    repository, _, version = tag.partition(":")
    assert repository == "kindgpu/sim-device-plugin"
    assert build.image_tag() == tag

    # Editing a file that goes into the image changes the tag.
    for name in build.IMAGE_FILES:
        (tmp_path / name).write_bytes((build.CONTEXT_DIR / name).read_bytes())
    monkeypatch.setattr(build, "CONTEXT_DIR", tmp_path)
    assert build.image_tag() == tag
    with open(tmp_path / "plugin.py", "a") as f:
        f.write("# edited\n")
    assert build.image_tag() != tag
