"""kindgpu's node image: its tag follows its inputs, its containerd config, the spec switch.
Building it and making clusters from it run in tests/e2e (test_derived_node_image.py)."""

import dataclasses
import json

import pytest

from fakes import FakeDocker
from kindgpu import images, nodeimage, plan, render, spec
from kindgpu.errors import KindgpuError, SpecError
from kindgpu.toml_text import load_toml
from paths import TESTDATA

KIND_CONTAINERD_CONFIG = (TESTDATA / "containerd" / "kind-v0.32.0-config.toml").read_text()
BASE = nodeimage.Inputs(base="kindest/node:v1.31.4", base_id="sha256:" + "a" * 64,
                        held={"nvcr.io/nvidia/k8s-device-plugin:v0.20.0": "sha256:" + "b" * 64,
                              "nvcr.io/nvidia/cuda:12.6.3-base-ubuntu24.04": "sha256:" + "c" * 64})


@pytest.mark.parametrize("change", [
    dict(base_id="sha256:" + "d" * 64),  # the base image rebuilt under the same name
    dict(held={**BASE.held, "nvcr.io/nvidia/k8s-device-plugin:v0.20.0": "sha256:" + "e" * 64}),  # a held image rebuilt
    dict(held={"nvcr.io/nvidia/k8s-device-plugin:v0.20.0": "sha256:" + "b" * 64}),  # one image fewer
    dict(held={**BASE.held, "nvcr.io/nvidia/k8s-device-plugin:v0.21.0": "sha256:" + "b" * 64}),  # another version
    dict(cdi=False),
    dict(recipe="2"),  # kindgpu builds it another way
], ids=["base-id", "held-image-id", "held-fewer", "held-other-version", "cdi", "recipe"])
def test_the_tag_changes_when_an_input_changes(change):
    changed = dataclasses.replace(BASE, **change)
    assert changed.tag != BASE.tag
    assert changed.tag.startswith("kindgpu/node:v1.31.4-")


def test_the_tag_stays_for_the_same_inputs():
    same = nodeimage.Inputs(base=BASE.base, base_id=BASE.base_id, held=dict(reversed(list(BASE.held.items()))))
    assert same.tag == BASE.tag  # the order images are listed in is no input
    # The same base image under another name is the same derived image (the name's tag is only shown).
    assert dataclasses.replace(BASE, base="registry.local/kindest/node:v1.31.4").tag == BASE.tag
    assert dataclasses.replace(BASE, base="kindest/node").tag == BASE.tag.replace("v1.31.4", "latest")


def h200_plan(h200_inventory, **flags):
    return plan.make_plan(spec.resolve(env={}, flags={"workers": 2, "gpusPerWorker": 1, **flags}), h200_inventory)


def test_inputs_hold_the_plugin_and_smoke_images_the_host_has(state_dir, h200_inventory):
    p = h200_plan(h200_inventory, nodeImage="kindgpu-harness/node:v1")
    plugin, cuda = "nvcr.io/nvidia/k8s-device-plugin:v0.20.0", p.spec["smoke"]["cudaImage"]
    assert nodeimage.held_images(p) == [plugin, cuda]
    ids = {"kindgpu-harness/node:v1": "sha256:1", plugin: "sha256:2", cuda: "sha256:3"}
    full = nodeimage.inputs(p, FakeDocker(image_ids=ids))
    assert full.base_id == "sha256:1" and full.held == {plugin: "sha256:2", cuda: "sha256:3"}
    # The host lacks the CUDA image: the nodes pull it, as without the derived image; another tag.
    partial = nodeimage.inputs(p, FakeDocker(image_ids={k: v for k, v in ids.items() if k != cuda}))
    assert partial.held == {plugin: "sha256:2"} and partial.tag != full.tag
    with pytest.raises(KindgpuError, match="not in the host's Docker") as caught:
        nodeimage.inputs(p, FakeDocker(image_ids={plugin: "sha256:2"}))
    assert "docker pull kindgpu-harness/node:v1" in caught.value.fix


def test_simulated_gpus_need_one_image_their_plugin_and_smoke_share(state_dir):
    from kindgpu.simgpu.build import image_tag

    p = plan.make_plan(spec.resolve(env={}, flags={"workers": 2, "gpusPerWorker": 1, "simulate": 2}))
    assert nodeimage.held_images(p) == [image_tag()]


def test_cdi_goes_into_kinds_containerd_config_and_nothing_else_changes():
    patched = nodeimage.with_cdi(KIND_CONTAINERD_CONFIG, "kindest/node:v1.31.4")
    cri, before = load_toml(patched)["plugins"][nodeimage.CRI_V2], load_toml(KIND_CONTAINERD_CONFIG)
    assert cri["enable_cdi"] is True and cri["cdi_spec_dirs"] == ["/etc/cdi", "/var/run/cdi"]
    assert "enable_cdi" not in before["plugins"][nodeimage.CRI_V2]
    after = load_toml(patched)
    for key in ("enable_cdi", "cdi_spec_dirs"):
        del after["plugins"][nodeimage.CRI_V2][key]
    assert after == before
    # Without a CRI table of its own, the config gets one.
    bare = nodeimage.with_cdi("version = 2\n", "x")
    assert load_toml(bare)["plugins"][nodeimage.CRI_V2]["enable_cdi"] is True


def test_containerd_configs_kindgpu_cannot_patch_are_refused():
    assert nodeimage.with_cdi("version = 3\n", "x") == "version = 3\n"  # containerd 2: CDI on by default
    refused = ["version = 3\n[plugins.'io.containerd.cri.v1.runtime']\nenable_cdi = false\n",
               "version = 1\n", "not toml [",
               'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nenable_cdi = false\n']
    for config in refused:
        with pytest.raises(KindgpuError) as caught:
            nodeimage.with_cdi(config, "some/node:1")
        assert "some/node:1" in str(caught.value) and "prepareNodeImage: false" in caught.value.fix


def test_the_switch_is_on_unless_false_and_leaves_spec_hashes_as_they_were(state_dir, h200_inventory):
    assert nodeimage.SPEC_SWITCH not in spec.defaults()  # a default would change every spec's hash
    on = h200_plan(h200_inventory)
    assert nodeimage.enabled(on.spec) and nodeimage.enabled(h200_plan(h200_inventory, prepareNodeImage=True).spec)
    off = h200_plan(h200_inventory, prepareNodeImage=False)
    assert not nodeimage.enabled(off.spec)
    # With it on, kind must not patch containerd (it would restart it in every node): the image has CDI on.
    assert "containerdConfigPatches" not in render.kind_config(on)
    assert render.kind_config(off)["containerdConfigPatches"] == [render.CONTAINERD_CDI_PATCH]
    with pytest.raises(SpecError, match="prepareNodeImage"):
        spec.resolve(env={}, flags={"prepareNodeImage": "yes"})


def test_each_step_records_what_it_loaded_beside_the_others(tmp_path):
    path = tmp_path / "images-loaded.json"
    images.record_loads(path, "create", {"plugin:1": []}, nodeImage="kindgpu/node:x")
    images.record_loads(path, "device-plugin", {"plugin:1": ["c-worker2", "c-worker"]})
    assert json.loads(path.read_text()) == {
        "create": {"loaded": {}, "nodeImage": "kindgpu/node:x"},
        "device-plugin": {"loaded": {"plugin:1": ["c-worker", "c-worker2"]}}}
    images.record_loads(path, "device-plugin", {})
    assert json.loads(path.read_text())["device-plugin"] == {"loaded": {}}
