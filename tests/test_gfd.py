"""GPU Feature Discovery's labels as kindgpu makes them, against GFD's names and value formats.

GFD here is NVIDIA's k8s-device-plugin v0.20.0, internal/lm/ (see kindgpu/gfd.py for which file
makes which label). The expected values of the MOCKMODEL cases are those of GFD's own tests
(internal/lm/resource_test.go TestGPUResourceLabeler, internal/lm/nvml_test.go).
"""

import re

import pytest

from kindgpu import gfd, inventory, plan, spec
from kindgpu.errors import SpecError
from kindgpu.inventory import GPU, Inventory

H200_LABELS = {
    "nvidia.com/gpu.count": "2",
    "nvidia.com/gpu.product": "NVIDIA-H200",
    "nvidia.com/gpu.replicas": "1",
    "nvidia.com/gpu.sharing-strategy": "none",
    "nvidia.com/gpu.memory": "143771",
    "nvidia.com/gpu.family": "hopper",
    "nvidia.com/gpu.compute.major": "9",
    "nvidia.com/gpu.compute.minor": "0",
    "nvidia.com/mig.capable": "true",
    "nvidia.com/mps.capable": "false",
    "nvidia.com/cuda.driver.major": "580",
    "nvidia.com/cuda.driver.minor": "159",
    "nvidia.com/cuda.driver.rev": "04",
    "nvidia.com/cuda.driver-version.major": "580",
    "nvidia.com/cuda.driver-version.minor": "159",
    "nvidia.com/cuda.driver-version.revision": "04",
    "nvidia.com/cuda.driver-version.full": "580.159.04",
    "nvidia.com/cuda.runtime.major": "13",
    "nvidia.com/cuda.runtime.minor": "0",
    "nvidia.com/cuda.runtime-version.major": "13",
    "nvidia.com/cuda.runtime-version.minor": "0",
    "nvidia.com/cuda.runtime-version.full": "13.0",
}


def gpu(name, index=0, memory=143771, mig="Disabled", cap=""):
    return GPU(index, f"GPU-{index:08d}-0000-0000-0000-000000000000", name, f"0000:{index:02x}:00.0", memory,
               index, mig, cap)


def legal_value(value):
    return len(value) <= spec.VALUE_MAX and re.fullmatch(spec.LABEL_VALUE, value)


def test_real_h200_inventory_gives_gfd_labels(h200_inventory):
    labels = gfd.node_labels(h200_inventory.gpus, h200_inventory)
    assert labels == H200_LABELS
    assert all(legal_value(v) for v in labels.values())


def test_one_h200_of_the_real_host_counts_one(h200_inventory):
    labels = gfd.node_labels(h200_inventory.gpus[1:], h200_inventory)
    assert labels == {**H200_LABELS, "nvidia.com/gpu.count": "1"}


@pytest.mark.parametrize("replicas, renamed, product, strategy", [
    (1, False, "MOCKMODEL", "none"),  # "no sharing"
    (2, False, "MOCKMODEL-SHARED", "time-slicing"),  # "time-slicing appends suffix and doubles count"
    (2, True, "MOCKMODEL", "time-slicing"),  # "time-slicing renamed does not append suffix ..."
])
def test_gfd_own_test_cases(replicas, renamed, product, strategy):
    """GFD's TestGPUResourceLabeler: a mock ampere GPU (compute 8.0) of 300 MiB, count 1."""
    mock = gpu("MOCKMODEL", memory=300, mig="[N/A]", cap="8.0")
    labels = gfd.node_labels([mock], Inventory((mock,)), replicas=replicas, renamed=renamed)
    resource = {k: v for k, v in labels.items() if k.startswith("nvidia.com/gpu.")}
    assert resource == {
        "nvidia.com/gpu.count": "1",
        "nvidia.com/gpu.replicas": str(replicas),
        "nvidia.com/gpu.sharing-strategy": strategy,
        "nvidia.com/gpu.memory": "300",
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.family": "ampere",
        "nvidia.com/gpu.compute.major": "8",
        "nvidia.com/gpu.compute.minor": "0",
    }
    assert labels["nvidia.com/mig.capable"] == "false"  # nvml_test.go: "single non-mig capable device"


# nvidia-smi's name -> GFD's product, family, compute major/minor, mig.capable (from the table).
PRODUCTS = [
    ("NVIDIA H200", "NVIDIA-H200", "hopper", 9, 0, "true"),
    ("NVIDIA H100 80GB HBM3", "NVIDIA-H100-80GB-HBM3", "hopper", 9, 0, "true"),
    ("NVIDIA GH200 480GB", "NVIDIA-GH200-480GB", "hopper", 9, 0, "true"),
    ("NVIDIA B200", "NVIDIA-B200", "blackwell", 10, 0, "true"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB", "ampere", 8, 0, "true"),
    ("NVIDIA A100 80GB PCIe", "NVIDIA-A100-80GB-PCIe", "ampere", 8, 0, "true"),
    ("NVIDIA A10G", "NVIDIA-A10G", "ampere", 8, 6, "false"),
    ("NVIDIA L40S", "NVIDIA-L40S", "ada-lovelace", 8, 9, "false"),
    ("NVIDIA L4", "NVIDIA-L4", "ada-lovelace", 8, 9, "false"),
    ("NVIDIA GeForce RTX 4090", "NVIDIA-GeForce-RTX-4090", "ada-lovelace", 8, 9, "false"),
    ("Tesla T4", "Tesla-T4", "turing", 7, 5, "false"),
    ("Tesla V100-SXM2-16GB", "Tesla-V100-SXM2-16GB", "volta", 7, 0, "false"),
]


@pytest.mark.parametrize("name, product, family, major, minor, mig", PRODUCTS)
def test_simulated_products_take_family_and_compute_capability_from_the_table(name, product, family, major,
                                                                               minor, mig):
    inv = inventory.simulated_inventory(2, cluster="gfd", product=name, memory_mib=81559)
    labels = gfd.node_labels(inv.gpus, inv)
    assert labels["nvidia.com/gpu.product"] == product
    assert (labels["nvidia.com/gpu.family"], labels["nvidia.com/gpu.compute.major"],
            labels["nvidia.com/gpu.compute.minor"]) == (family, str(major), str(minor))
    assert labels["nvidia.com/mig.capable"] == mig
    assert (labels["nvidia.com/gpu.count"], labels["nvidia.com/gpu.memory"]) == ("2", "81559")
    # A simulated driver has no version: no version label.
    assert not [k for k in labels if k.startswith("nvidia.com/cuda.")]
    assert all(legal_value(v) for v in labels.values())


def test_every_known_product_makes_legal_labels():
    for name, (major, minor, _) in gfd.KNOWN_PRODUCTS.items():
        assert gfd.arch_family(major, minor) != "undefined", name
        assert legal_value(gfd.product(name, replicas=2)), name


def test_an_unknown_simulated_product_gets_no_family_compute_or_mig_label():
    inv = inventory.simulated_inventory(1, cluster="gfd", product="Acme Tensor 9000")
    labels = gfd.node_labels(inv.gpus, inv)
    assert labels["nvidia.com/gpu.product"] == "Acme-Tensor-9000"
    assert not {"nvidia.com/gpu.family", "nvidia.com/gpu.compute.major", "nvidia.com/mig.capable"} & set(labels)


def test_the_inventorys_compute_capability_wins_over_the_table():
    inv = Inventory((gpu("NVIDIA H200", cap="9.0"), gpu("Acme Tensor 9000", index=1, cap="12.1")))
    assert gfd.node_labels(inv.gpus[1:], inv)["nvidia.com/gpu.family"] == "blackwell"


@pytest.mark.parametrize("major, minor, family", [
    (1, 3, "tesla"), (2, 1, "fermi"), (3, 7, "kepler"), (5, 2, "maxwell"), (6, 1, "pascal"), (7, 0, "volta"),
    (7, 2, "volta"), (7, 5, "turing"), (8, 0, "ampere"), (8, 6, "ampere"), (8, 7, "ampere"), (8, 9, "ada-lovelace"),
    (9, 0, "hopper"), (10, 0, "blackwell"), (12, 0, "blackwell"), (13, 0, "rubin"), (11, 0, "undefined"),
    (4, 0, "undefined"),
])
def test_arch_family_is_gfds_get_arch_family(major, minor, family):
    assert gfd.arch_family(major, minor) == family


@pytest.mark.parametrize("name, sanitised", [
    ("NVIDIA H200", "NVIDIA-H200"),
    ("  NVIDIA   A100-SXM4-40GB ", "NVIDIA-A100-SXM4-40GB"),
    ("NVIDIA RTX A6000 (Ada)", "NVIDIA-RTX-A6000-Ada"),
    ("NVIDIA\tH100_NVL v2.0", "NVIDIAH100_NVL-v2.0"),  # a tab is dropped, not a blank
])
def test_sanitise_is_gfds(name, sanitised):
    assert gfd.sanitise(name) == sanitised


@pytest.mark.parametrize("modes, expected", [
    (["Disabled"], "true"), (["Enabled"], "true"), (["[N/A]"], "false"), (["[N/A]", "Disabled"], "true"),
    (["N/A"], None), ([""], None),
])
def test_mig_capable_from_the_real_inventory(modes, expected):
    gpus = tuple(gpu("NVIDIA H200", index=i, mig=m) for i, m in enumerate(modes))
    assert gfd.node_labels(gpus, Inventory(gpus)).get("nvidia.com/mig.capable") == expected


def test_driver_versions_are_split_as_gfd_does():
    two = gfd.version_labels("550.54", "12.4")
    assert (two["nvidia.com/cuda.driver.major"], two["nvidia.com/cuda.driver.minor"], two["nvidia.com/cuda.driver.rev"],
            two["nvidia.com/cuda.driver-version.full"]) == ("550", "54", "", "550.54")
    assert two["nvidia.com/cuda.runtime-version.full"] == "12.4"
    assert gfd.version_labels("simulated", "") == {}
    assert gfd.version_labels("1.2.3.4", "") == {}  # GFD refuses a version of 4 parts


def test_a_worker_of_mixed_products_is_labelled_for_most_of_its_gpus():
    gpus = (gpu("NVIDIA L4", 0, memory=23034, mig="[N/A]"), gpu("NVIDIA H200", 1), gpu("NVIDIA H200", 2))
    labels = gfd.node_labels(gpus, Inventory(gpus))
    assert (labels["nvidia.com/gpu.product"], labels["nvidia.com/gpu.count"]) == ("NVIDIA-H200", "2")
    tie = gfd.node_labels(gpus[:2], Inventory(gpus))
    assert tie["nvidia.com/gpu.product"] == "NVIDIA-L4"  # the first by index


def doc(**fields):
    base = {"apiVersion": "kindgpu.dev/v1alpha1", "kind": "GPUCluster", "simulate": {"gpus": 3},
            "workers": [{"gpus": [0]}, {"gpus": []}, {"gpus": [1, 2]}]}
    return spec.resolve(env={}, flags={}, config_file=None) | base | fields


def make(**fields):
    d = spec.fill_object_defaults(doc(**fields))
    return plan.make_plan(d)


def test_gpu_workers_get_the_labels_and_cpu_only_workers_none(state_dir):
    p = make()
    first, cpu, second = p.workers
    assert first.labels["nvidia.com/gpu.count"] == "1" and second.labels["nvidia.com/gpu.count"] == "2"
    assert first.labels["nvidia.com/gpu.product"] == "NVIDIA-H200"
    assert not [k for k in cpu.labels if gfd.is_feature_key(k)]


def test_the_spec_switch_turns_them_off(state_dir):
    p = make(gpuFeatureLabels=False)
    assert not [k for w in p.workers for k in w.labels if gfd.is_feature_key(k)]
    assert p.workers[0].labels["nvidia.com/gpu.present"] == "true"  # the plugin still lands there


def test_a_spec_without_the_switch_hashes_as_before():
    d = spec.resolve(env={}, flags={})
    assert "gpuFeatureLabels" not in d


def test_a_label_of_gfds_is_refused_in_the_spec_unless_the_switch_is_off():
    with pytest.raises(SpecError) as caught:
        spec.check(doc(labels={"nvidia.com/gpu.product": "mine"}))
    (problem,) = caught.value.problems
    assert problem.field == "labels.nvidia.com/gpu.product" and "gpuFeatureLabels: false" in problem.fix
    spec.check(doc(labels={"nvidia.com/gpu.product": "mine"}, gpuFeatureLabels=False))


def test_a_simulated_product_that_makes_no_legal_label_is_refused():
    with pytest.raises(SpecError) as caught:
        spec.check(doc(simulate={"gpus": 3, "product": "NVIDIA " + "X" * 60}))
    assert caught.value.problems[0].field == "simulate.product"
    spec.check(doc(simulate={"gpus": 3, "product": "NVIDIA " + "X" * 60}, gpuFeatureLabels=False))


def recorded_gfd():
    import json

    from paths import TESTDATA

    return json.loads((TESTDATA / "gfd" / "gfd-v0.20.0-labels.json").read_text())


def test_labels_equal_what_gfds_own_labelers_made_of_the_same_gpus():
    """tests/testdata/gfd: GFD v0.20.0's labelers run on mock devices of every product in the
    table (1, 4 and 2 renamed replicas) and the real H200 host."""
    cases = recorded_gfd()
    assert len(cases) > 3 * len(gfd.KNOWN_PRODUCTS)
    for case in cases:
        d = case["device"]
        gpus = tuple(gpu(d["name"], index=i, memory=d["memory"], mig="Disabled" if d["mig"] else "[N/A]",
                         cap=f"{d['major']}.{d['minor']}") for i in range(d["count"]))
        inv = Inventory(gpus, driver_version=d["driver"], cuda_version=f"{d['cudaMajor']}.{d['cudaMinor']}")
        ours = gfd.node_labels(gpus, inv, replicas=d["replicas"], renamed=d["rename"])
        assert ours == case["labels"], d


def test_the_real_h200_hosts_labels_are_what_gfd_made_of_it(h200_inventory):
    (h200,) = [c for c in recorded_gfd() if c["device"]["name"] == "NVIDIA H200" and c["device"]["memory"] == 143771]
    assert h200["labels"] == H200_LABELS == gfd.node_labels(h200_inventory.gpus, h200_inventory)
