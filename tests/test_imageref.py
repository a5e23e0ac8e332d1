"""Image references: distribution/reference's own test cases, then the spec fields and flags that take one."""

import json

import pytest

from kindgpu import imageref, spec
from kindgpu.errors import SpecError
from paths import TESTDATA

CASES = json.loads((TESTDATA / "imageref" / "reference_cases.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["input"][:60] or "(empty)")
def test_the_reference_grammar_agrees_with_distribution_reference(case):
    if case["error"]:
        with pytest.raises(imageref.InvalidReference):
            imageref.parse(case["input"])
        return
    ref = imageref.parse(case["input"])
    assert ref.repository == case.get("repository", "")
    assert ref.domain == case.get("domain", "")
    assert ref.tag == case.get("tag", "")
    assert ref.digest == case.get("digest", "")


def test_the_reasons_are_distributions():
    assert imageref.problem("Uppercase:tag") == "repository name must be lowercase"
    assert imageref.problem("") == "repository name must have at least one component"
    assert imageref.problem("a:b:c") == "invalid reference format"
    assert imageref.problem("a/" * 127 + "toolong") == "repository name must not be more than 255 characters"
    assert imageref.problem("kindest/node:v1.37.0@sha256:" + "a" * 64) is None
    assert imageref.tag_problem("v0.20.0") is None and imageref.tag_problem("-x") and imageref.tag_problem("a b")


@pytest.mark.parametrize("field, flags, doc", [
    ("nodeImage", {"nodeImage": "kindest/node:v1.37.0 "}, {}),
    ("nodeImage", {}, {"nodeImage": "Kindest/Node:v1"}),
    ("devicePlugin.image", {}, {"devicePlugin": {"image": "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"}}),
    ("devicePlugin.version", {}, {"devicePlugin": {"version": "v0.20.0/evil"}}),
    ("smoke.cudaImage", {}, {"smoke": {"cudaImage": "nvcr.io//cuda"}}),
    ("smoke.pytorchImage", {}, {"smoke": {"pytorchImage": "pytorch@sha256:abc"}}),
])
def test_spec_image_fields_are_checked_as_references(field, flags, doc, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps({"apiVersion": "kindgpu.dev/v1alpha1", "kind": "GPUCluster", **doc}))
    with pytest.raises(SpecError) as caught:
        spec.resolve(path, env={}, flags={"simulate": 2, **flags})
    assert [p.field for p in caught.value.problems] == [field]
    assert caught.value.problems[0].fix


def test_an_empty_flag_is_an_error_not_the_default():
    with pytest.raises(SpecError) as caught:
        spec.resolve(env={}, flags={"nodeImage": "", "simulate": 2})
    [problem] = caught.value.problems
    assert (problem.field, problem.message) == ("--node-image", "is empty")


@pytest.mark.parametrize("name", ["NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "KINDGPU_EXPECTED_UUIDS",
                                  "NCCL_HOSTID", "MASTER_ADDR", "NCCL_DEBUG"])
def test_smoke_env_may_not_set_what_smoke_judges_by(name):
    with pytest.raises(SpecError) as caught:
        spec.resolve(env={}, flags={"simulate": 2, "smoke": {"env": {name: "x"}}})
    [problem] = caught.value.problems
    assert problem.field == f"smoke.env.{name}" and "smoke judges" in problem.message
    assert problem.fix == f"leave {name} out of smoke.env"


def test_smoke_env_keeps_nccl_safety_off_but_passes_everything_else():
    ok = spec.resolve(env={}, flags={"simulate": 2, "smoke": {"env": {"NCCL_NVLS_ENABLE": "0", "MY_FLAG": "1"}}})
    assert ok["smoke"]["env"] == {"NCCL_NVLS_ENABLE": "0", "MY_FLAG": "1"}
    with pytest.raises(SpecError) as caught:
        spec.resolve(env={}, flags={"simulate": 2, "smoke": {"env": {"NCCL_NVLS_ENABLE": "1"}}})
    assert caught.value.problems[0].field == "smoke.env.NCCL_NVLS_ENABLE"


def test_a_key_given_twice_names_the_key_and_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("apiVersion: kindgpu.dev/v1alpha1\nkind: GPUCluster\nworkers: 2\nname: a\nworkers: 3\n")
    with pytest.raises(SpecError) as caught:
        spec.resolve(path, env={})
    [problem] = caught.value.problems
    assert problem.field == "workers" and "lines 3 and 5" in problem.message
    nested = tmp_path / "nested.yaml"
    nested.write_text("apiVersion: kindgpu.dev/v1alpha1\nkind: GPUCluster\napiServer:\n  port: 1\n  port: 2\n")
    with pytest.raises(SpecError, match="lines 4 and 5"):
        spec.resolve(nested, env={})
