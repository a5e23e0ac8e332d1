"""README.md's examples are checked against what they name, so the docs cannot rot."""

import json
import re

import yaml

from kindgpu import spec
from paths import REPO

README = (REPO / "README.md").read_text()


def yaml_blocks():
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", README, re.S)]


def test_every_config_the_readme_names_exists_and_is_valid():
    named = sorted(set(re.findall(r"configs/[\w.-]+\.yaml", README)))
    assert named
    for path in named:
        spec.resolve(REPO / path, env={})


def test_the_time_slicing_example_is_configs_time_slicing_yaml():
    [example] = [b for b in yaml_blocks() if isinstance(b, dict) and b.get("name") == "gpu-shared"]
    assert example == yaml.safe_load((REPO / "configs" / "time-slicing.yaml").read_text())
    assert "kind-gpu-shared" in README and "/sched/" not in README


def test_the_seeds_kubectl_run_uses_overrides_for_the_limit_not_the_removed_flag():
    runs = re.findall(r"kubectl run .*?--overrides='(\{.*?\})'", README, re.S)
    assert runs and "--limits=" not in README
    pod = json.loads(runs[0])["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}


def test_the_dra_example_is_a_claim_template_and_a_pod_asking_through_it_on_configs_dra_yaml():
    section = README[README.index("## Testing DRA"):]
    section = section[:section.index("\n## ", 1)]
    template, pod = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    assert template["kind"] == "ResourceClaimTemplate" and pod["kind"] == "Pod"
    [request] = template["spec"]["spec"]["devices"]["requests"]
    assert request["exactly"]["deviceClassName"] == "gpu.nvidia.com"
    assert pod["spec"]["resourceClaims"] == [{"name": "gpus",
                                              "resourceClaimTemplateName": template["metadata"]["name"]}]
    assert pod["spec"]["containers"][0]["resources"] == {"claims": [{"name": "gpus"}]}
    assert "configs/dra.yaml" in section
    doc = spec.resolve(REPO / "configs" / "dra.yaml", env={})
    assert doc["gpuAllocation"] == "dra" and doc["simulate"]["product"] in request["exactly"]["selectors"][0]["cel"][
        "expression"]
