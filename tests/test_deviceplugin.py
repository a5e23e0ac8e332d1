"""The NVIDIA device plugin DaemonSet kindgpu deploys for real GPUs."""

from kindgpu import deviceplugin, spec


def daemonset(**plugin):
    doc = spec.resolve(env={}, flags={})
    doc["devicePlugin"].update(plugin)
    return deviceplugin.nvidia_daemonset(doc)


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
