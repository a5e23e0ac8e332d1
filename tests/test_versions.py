"""Kubernetes and kind versions: the node image's, kind's default, the kubelet's cgroup v1 rule."""

import pytest

from kindgpu import versions
from kindgpu.preflight import dockerhost, tools
from kindgpu.preflight.model import Request, Status

KIND_DEFAULT = versions.KIND_PINNED_DEFAULT_IMAGE


def test_kind_default_image_is_read_from_the_binary(tmp_path):
    binary = tmp_path / "kind"
    binary.write_bytes(b"\x7fELF...junk...kindest/node:v1.36.4@sha256:" + b"ab" * 32 + b"\x00more")
    assert versions.kind_default_image(binary) == "kindest/node:v1.36.4@sha256:" + "ab" * 32
    (tmp_path / "other").write_bytes(b"no image here")
    assert versions.kind_default_image(tmp_path / "other") is None
    assert versions.kind_default_image(tmp_path / "missing") is None


@pytest.mark.parametrize("image, expected", [
    (KIND_DEFAULT, (1, 37, 0)),
    ("kindgpu-harness/node:v1.34.4-5df0fca2ae9d", (1, 34, 4)),
    ("localhost:5000/kindest/node:v1.35.8", (1, 35, 8)),
    ("registry.example.com/node@sha256:" + "0" * 64, None),  # no tag: only the image itself can tell
    ("mynode:latest", None),
])
def test_the_node_images_kubernetes_comes_from_its_tag(image, expected):
    assert versions.image_kubernetes(image) == expected


@pytest.mark.parametrize("runtime, needed", [
    (versions.Runtime((1, 35, 0), 1), True),
    (versions.Runtime((1, 37, 2), 1), True),
    (versions.Runtime((1, 34, 4), 1), False),
    (versions.Runtime((1, 37, 2), 2), False),
    (versions.Runtime(None, 1), False),
    (versions.Runtime((1, 37, 2), None), False),
])
def test_the_kubelet_is_told_to_run_on_cgroup_v1_from_1_35(runtime, needed):
    assert runtime.needs_cgroup_v1_override is needed
    assert bool(runtime.warnings()) is needed


def request(image):
    return Request(cluster_name="t", simulate=8, node_image=image)


def test_preflight_names_kinds_default_image_and_its_kubernetes():
    check = tools.kubernetes_check(request(KIND_DEFAULT), {}, KIND_DEFAULT)
    assert check.status == Status.PASS
    assert "(kind's default): Kubernetes v1.37.0" in check.found


def test_preflight_fails_a_kind_older_than_the_node_image():
    old_kind = "kindest/node:v1.34.0@sha256:" + "1" * 64
    check = tools.kubernetes_check(request("kindest/node:v1.37.2"), {}, old_kind)
    assert check.status == Status.FAIL
    assert check.fix == "invoke preflight --fix" and versions.KIND_PINNED in check.hint


def test_preflight_warns_about_a_line_kindgpu_is_not_tested_on():
    check = tools.kubernetes_check(request("kindest/node:v1.30.4"), {}, KIND_DEFAULT)
    assert check.status == Status.WARN and "1.34, 1.35, 1.36, 1.37" in check.hint
    unknown = tools.kubernetes_check(request("mynode:latest"), {"kubernetes": None}, KIND_DEFAULT)
    assert unknown.status == Status.WARN
    read_inside = tools.kubernetes_check(request("mynode:latest"), {"kubernetes": (1, 36, 1)}, KIND_DEFAULT)
    assert read_inside.status == Status.PASS and "Kubernetes v1.36.1" in read_inside.found


def test_preflight_says_cgroup_v1_is_overridden_for_1_35_and_later():
    info = {"CgroupVersion": "1", "CgroupDriver": "cgroupfs"}
    new = dockerhost.cgroup_check(info, (1, 37, 0))
    assert new.status == Status.WARN and "failCgroupV1: false" in new.found
    assert "systemd.unified_cgroup_hierarchy=1" in new.fix and new.details["kubelet_override"] is True
    old = dockerhost.cgroup_check(info, (1, 34, 4))
    assert old.status == Status.WARN and "failCgroupV1" not in old.found
    assert dockerhost.cgroup_check({"CgroupVersion": "2"}, (1, 37, 0)).status == Status.PASS


def test_preflight_fails_a_node_image_whose_containerd_config_kindgpu_cannot_patch():
    real = Request(cluster_name="t", node_image="odd/node:v1.37.0")
    assert dockerhost.containerd_config_version("version = 2\n[plugins]\n") == 2
    assert dockerhost.containerd_config_version("not toml = [") is None
    odd = dockerhost.node_image_check(real, {"present": True, "containerd": "2.3.7", "config_version": 4})
    assert odd.status == Status.FAIL and "version 4" in odd.found
    fine = dockerhost.node_image_check(real, {"present": True, "containerd": "2.3.7", "config_version": 3})
    assert fine.status == Status.PASS
