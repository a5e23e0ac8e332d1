"""GPU sharing by time-slicing: NVIDIA's plugin config, the plugins' objects, live spec changes."""

import json
import re

import pytest
import yaml

from fakes import Notes
from kindgpu import cluster, deviceplugin, drift, nvdriver, plan, sharing, spec
from kindgpu.errors import SpecError
from kindgpu.simgpu import manifest
from paths import h200_inventory as read_h200_inventory

# NVIDIA's device plugin config, as k8s-device-plugin v0.20.0 defines it (api/config/v1/): the
# JSON names of the Go struct tags, and what the UnmarshalJSON methods demand.
CONFIG_KEYS = {"version", "flags", "resources", "sharing", "imex"}  # config.go Config
SHARING_KEYS = {"timeSlicing", "mps"}  # sharing.go Sharing
REPLICATED_KEYS = {"renameByDefault", "failRequestsGreaterThanOne", "resources"}  # replicas.go ReplicatedResources
RESOURCE_KEYS = {"name", "rename", "devices", "replicas"}  # replicas.go ReplicatedResource
RESOURCE_NAME_MAX = 63  # consts.go MaxResourceNameLength
DNS1123_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"


def resource_name_problems(name):
    """resources.go NewResourceName: nvidia.com/ prefixed, at most 63 characters, a DNS subdomain."""
    if not isinstance(name, str):
        return [f"resource name {name!r} is not a string"]
    full = name if name.startswith("nvidia.com/") else f"nvidia.com/{name}"
    if len(full) > RESOURCE_NAME_MAX:
        return [f"{full} is longer than {RESOURCE_NAME_MAX}"]
    return [] if re.fullmatch(DNS1123_SUBDOMAIN, full.split("/", 1)[1]) else [f"{full} is not a DNS subdomain"]


def nvidia_config_problems(doc):
    """What NVIDIA's parser (config.go parseConfigFrom) would refuse, and keys it would silently
    drop (sigs.k8s.io/yaml ignores unknown fields; here they are problems, so typos show)."""
    problems = []
    problems += [f"unknown key {k}" for k in set(doc) - CONFIG_KEYS]
    if doc.get("version", "v1") != "v1":
        problems.append(f"unknown version: {doc['version']}")
    shared = doc.get("sharing", {})
    problems += [f"unknown key sharing.{k}" for k in set(shared) - SHARING_KEYS]
    for strategy in ("timeSlicing", "mps"):
        if strategy not in shared:
            continue
        rrs = shared[strategy]
        problems += [f"unknown key sharing.{strategy}.{k}" for k in set(rrs) - REPLICATED_KEYS]
        if not isinstance(rrs.get("renameByDefault", False), bool):
            problems.append("renameByDefault is not a bool")
        if not rrs.get("resources"):
            problems.append("no resources specified")
        for r in rrs.get("resources") or []:
            problems += [f"unknown key {k} in a resource" for k in set(r) - RESOURCE_KEYS]
            if "name" not in r:
                problems.append("no resource name specified")
            else:
                problems += resource_name_problems(r["name"])
            if "rename" in r:
                problems += resource_name_problems(r["rename"])
            devices = r.get("devices", "all")
            if not (devices == "all" or (isinstance(devices, int) and devices > 0) or isinstance(devices, list)):
                problems.append(f"devices {devices!r}: 'all', a count > 0 or a list")
            if "replicas" not in r:
                problems.append("no replicas specified")
            elif not isinstance(r["replicas"], int) or r["replicas"] < 2:
                problems.append("number of replicas must be >= 2")
    return problems


def with_sharing(doc=None, **time_slicing):
    doc = doc or spec.resolve(env={}, flags={})
    doc["devicePlugin"] = {**doc["devicePlugin"], "sharing": {"timeSlicing": time_slicing} if time_slicing else {}}
    return doc


@pytest.mark.parametrize("time_slicing", [{}, {"replicas": 1}, {"replicas": 2}, {"replicas": 4},
                                          {"replicas": 4, "renameByDefault": True},
                                          {"replicas": 1, "renameByDefault": True},
                                          {"replicas": 3, "renameByDefault": False}])
def test_plugin_config_fits_nvidias_config_schema(time_slicing):
    doc = with_sharing(**time_slicing)
    config = yaml.safe_load(sharing.config_text(doc))
    assert config == sharing.plugin_config(doc)
    assert nvidia_config_problems(config) == []
    replicas = time_slicing.get("replicas", 1)
    resources = config.get("sharing", {}).get("timeSlicing", {}).get("resources", [])
    assert [r["replicas"] for r in resources] == ([replicas] if replicas > 1 else [])


def test_the_schema_checker_refuses_what_nvidias_parser_refuses():
    assert nvidia_config_problems({"version": "v1", "sharing": {"timeSlicing": {"resources": [
        {"name": "nvidia.com/gpu", "replicas": 1}]}}}) == ["number of replicas must be >= 2"]
    assert nvidia_config_problems({"version": "v2"}) == ["unknown version: v2"]
    assert nvidia_config_problems({"sharing": {"timeSlicing": {"renameByDefault": True}}}) == [
        "no resources specified"]
    assert nvidia_config_problems({"sharing": {"timeSlicing": {"replica": 4}}}) == [
        "unknown key sharing.timeSlicing.replica", "no resources specified"]


def recorded_configs():
    from paths import TESTDATA

    return json.loads((TESTDATA / "gfd" / "plugin-config-v0.20.0.json").read_text())


def test_nvidias_own_parser_read_the_configs_as_meant():
    """tests/testdata/gfd: what NVIDIA's parser (v0.20.0) made of the config files kindgpu writes."""
    parsed = recorded_configs()
    ours = [e for e in parsed if "kindgpuSharing" in e]
    assert len(ours) == 5
    for entry in ours:
        doc = spec.resolve(env={}, flags={})
        doc["devicePlugin"]["sharing"] = entry["kindgpuSharing"]
        ts = sharing.of(doc)
        assert entry["config"] == sharing.config_text(doc)  # the very text NVIDIA's parser read
        assert "error" not in entry
        assert entry["strategy"] == ("time-slicing" if ts.shared else "none")
        expected = [{"name": "nvidia.com/gpu", "rename": "nvidia.com/gpu.shared" if ts.renamed else "",
                     "replicas": ts.replicas, "allDevices": True}] if ts.shared else None
        assert entry["resources"] == expected
    refused = {e["name"]: e["error"] for e in parsed if e["name"].startswith("refused")}
    assert "number of replicas must be >= 2" in refused["refused-replicas-1"]
    for entry in parsed:
        problems = nvidia_config_problems(yaml.safe_load(entry["config"]))
        assert bool(problems) == ("error" in entry), entry["name"]


def test_time_slicing_read_from_the_spec():
    assert sharing.of(spec.resolve(env={}, flags={})) == sharing.TimeSlicing(1, False)
    assert not sharing.configured(spec.resolve(env={}, flags={}))
    ts = sharing.of(with_sharing(replicas=4, renameByDefault=True))
    assert (ts.shared, ts.renamed, ts.resource, ts.allocatable(2)) == (True, True, "nvidia.com/gpu.shared", 8)
    one = sharing.of(with_sharing(replicas=1, renameByDefault=True))
    assert (one.shared, one.resource, one.allocatable(2)) == (False, "nvidia.com/gpu", 2)
    assert sharing.of({"spec": "an old record without devicePlugin"}) == sharing.TimeSlicing()


def test_replica_ids_are_nvidias():
    assert sharing.replica_ids("GPU-a", 3) == ["GPU-a::0", "GPU-a::1", "GPU-a::2"]
    assert sharing.replica_ids("GPU-a", 1) == ["GPU-a"]


def test_spec_schema_takes_time_slicing_and_refuses_what_is_wrong():
    spec.check(with_sharing(replicas=4, renameByDefault=True))
    spec.check(with_sharing())  # sharing: {} shares nothing
    for bad, field in (({"replicas": 0}, "devicePlugin.sharing.timeSlicing.replicas"),
                       ({"replicas": "4"}, "devicePlugin.sharing.timeSlicing.replicas"),
                       ({"renameByDefault": True}, "devicePlugin.sharing.timeSlicing"),
                       ({"replicas": 2, "rename": "x"}, "devicePlugin.sharing.timeSlicing.rename")):
        with pytest.raises(SpecError) as caught:
            spec.check(with_sharing(**bad))
        assert [p.field for p in caught.value.problems] == [field], bad


def test_a_spec_without_sharing_hashes_as_before():
    doc = spec.resolve(env={}, flags={})
    assert "sharing" not in doc["devicePlugin"]


def sim_plan(state_dir, **time_slicing):
    doc = spec.resolve(env={}, flags={"simulate": 2, "workers": 2, "gpusPerWorker": 1})
    if time_slicing:
        doc = with_sharing(doc, **time_slicing)
    return plan.make_plan(doc)


def env_of(daemonset):
    return {e["name"]: e["value"] for e in daemonset["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_simulated_plugin_is_told_the_replicas_only_when_the_spec_says_anything_of_sharing(state_dir):
    p = sim_plan(state_dir)
    (plain,) = deviceplugin.objects(p, "img:1")
    gpus = [g for w in p.workers for g in w.gpus]
    assert plain == manifest.sim_device_plugin_objects("img:1", "NVIDIA H200", 143771, gpus=gpus)[0]
    assert "KINDGPU_SIM_REPLICAS" not in env_of(plain)
    (four,) = deviceplugin.objects(sim_plan(state_dir, replicas=4), "img:1")
    assert (env_of(four)["KINDGPU_SIM_REPLICAS"], env_of(four)["KINDGPU_SIM_RESOURCE"]) == ("4", "nvidia.com/gpu")
    (one,) = deviceplugin.objects(sim_plan(state_dir, replicas=1), "img:1")
    assert env_of(one)["KINDGPU_SIM_REPLICAS"] == "1" and one != four  # back to 1 rolls the plugin
    (renamed,) = deviceplugin.objects(sim_plan(state_dir, replicas=2, renameByDefault=True), "img:1")
    assert env_of(renamed)["KINDGPU_SIM_RESOURCE"] == "nvidia.com/gpu.shared"


def real_plan(h200_inventory, **time_slicing):
    doc = spec.resolve(env={}, flags={"workers": 2, "gpusPerWorker": 1})
    if time_slicing:
        doc = with_sharing(doc, **time_slicing)
    return plan.make_plan(doc, h200_inventory)


DRIVER = nvdriver.DriverLayout("/usr/lib/x86_64-linux-gnu", "/usr/bin")


def test_nvidia_plugin_reads_its_config_from_a_configmap_by_its_config_file_flag(h200_inventory, state_dir):
    (plain,) = deviceplugin.objects(real_plan(h200_inventory), None, DRIVER)
    assert "CONFIG_FILE" not in env_of(plain)  # no sharing in the spec: the DaemonSet as it was
    configmap, daemonset = deviceplugin.objects(real_plan(h200_inventory, replicas=4), None, DRIVER)
    assert (configmap["kind"], configmap["metadata"]["name"]) == ("ConfigMap", sharing.CONFIG_MAP)
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    assert config["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    assert env_of(daemonset)["CONFIG_FILE"] == "/config/config.yaml"
    pod = daemonset["spec"]["template"]["spec"]
    assert {"name": "plugin-config", "mountPath": "/config", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert {"name": "plugin-config", "configMap": {"name": sharing.CONFIG_MAP}} in pod["volumes"]
    # Another replica count changes the pod template: the plugin rolls and reads the new config.
    _, back = deviceplugin.objects(real_plan(h200_inventory, replicas=1), None, DRIVER)
    annotation = "kindgpu.dev/plugin-config-sha256"
    assert (back["spec"]["template"]["metadata"]["annotations"][annotation]
            != daemonset["spec"]["template"]["metadata"]["annotations"][annotation])
    assert deviceplugin.objects(real_plan(h200_inventory, replicas=4), None, DRIVER)[1] == daemonset  # idempotent


def test_labels_follow_the_sharing(state_dir):
    labels = sim_plan(state_dir, replicas=4).workers[0].labels
    assert (labels["nvidia.com/gpu.replicas"], labels["nvidia.com/gpu.sharing-strategy"],
            labels["nvidia.com/gpu.product"], labels["nvidia.com/gpu.count"]) == ("4", "time-slicing",
                                                                                  "NVIDIA-H200-SHARED", "1")
    renamed = sim_plan(state_dir, replicas=4, renameByDefault=True).workers[0].labels
    assert renamed["nvidia.com/gpu.product"] == "NVIDIA-H200"
    one = sim_plan(state_dir, replicas=1).workers[0].labels
    assert (one["nvidia.com/gpu.replicas"], one["nvidia.com/gpu.sharing-strategy"]) == ("1", "none")


def test_sharing_is_a_live_field_and_nothing_else_is():
    a = with_sharing(replicas=4)
    b = with_sharing(replicas=1)
    assert a != b and drift.without_live_fields(a) == drift.without_live_fields(b)
    assert "sharing" in a["devicePlugin"]  # without_live_fields copies
    c = {**b, "gpusPerWorker": 2}
    assert drift.without_live_fields(a) != drift.without_live_fields(c)


class FakeCtx:
    def __init__(self, plan_):
        self.plan = plan_
        self.kube = None

    def nodes(self):
        return {"c": object()}


def test_up_changes_sharing_in_place_and_refuses_other_changes(state_dir, monkeypatch):
    from types import SimpleNamespace

    recorded = with_sharing(spec.resolve(env={}, flags={"simulate": 2, "workers": 2, "gpusPerWorker": 1}),
                            replicas=4)
    monkeypatch.setattr(cluster.record, "read", lambda kube: SimpleNamespace(spec=recorded))
    monkeypatch.setattr(cluster.nodes, "made_by_kindgpu", lambda found: True)
    wanted = plan.make_plan(with_sharing(spec.resolve(env={}, flags={"simulate": 2, "workers": 2,
                                                                      "gpusPerWorker": 1}), replicas=1))
    wanted.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    wanted.kubeconfig.write_text("{}")
    reporter = Notes()
    cluster.check_same_spec(FakeCtx(wanted), False, reporter)
    assert reporter.notes == ['changing gpu-cluster in place: devicePlugin.sharing: {"timeSlicing": {"replicas": 4}} '
                              '-> {"timeSlicing": {"replicas": 1}}']
    other = plan.make_plan(with_sharing(spec.resolve(env={}, flags={"simulate": 2, "workers": 1,
                                                                     "gpusPerWorker": 2}), replicas=1))
    with pytest.raises(Exception, match="was made from another spec"):
        cluster.check_same_spec(FakeCtx(other), False, Notes())


def test_the_record_is_out_of_date_when_sharing_or_the_plan_changed(state_dir):
    from kindgpu import record
    from test_record import RecordingKube, stored

    old = sim_plan(state_dir, replicas=4)
    kube = RecordingKube(stored(record.spec_configmap(old)))
    assert record.out_of_date(kube, old) == ""
    assert record.out_of_date(RecordingKube(), old) == "the cluster does not record its spec yet"
    new = sim_plan(state_dir, replicas=1)
    assert record.out_of_date(kube, new) == "the cluster records another spec (devicePlugin changed)"
    relabelled = record.spec_configmap(old)
    relabelled["data"]["plan.json"] = json.dumps({**json.loads(relabelled["data"]["plan.json"]), "workers": []})
    assert record.out_of_date(RecordingKube(stored(relabelled)), old) == "the cluster records an older plan"
    # What record.read gives back keeps only the workers' GPUs: a host GPU left out still matches.
    real = plan.make_plan(spec.resolve(env={}, flags={"workers": 1, "gpusPerWorker": 1}), read_h200_inventory())
    assert record.out_of_date(RecordingKube(stored(record.spec_configmap(real))), real) == ""


def test_nvidias_plugin_itself_ran_with_the_config_kindgpu_gives_it():
    """tests/testdata/gfd: NVIDIA's plugin binary read kindgpu's config file through CONFIG_FILE."""
    from paths import TESTDATA

    text = (TESTDATA / "gfd" / "nvidia-device-plugin-v0.20.0-reads-config.txt").read_text()
    given = text.split("\n", 1)[1].split("$ docker run", 1)[0]
    doc = with_sharing(replicas=4)
    assert given == sharing.config_text(doc)
    assert "-e CONFIG_FILE=/config/config.yaml" in text and sharing.CONFIG_FILE == "/config/config.yaml"
    ran = json.loads(text.split("Running with config:\n", 1)[1].split("\nI1201", 1)[0])
    assert ran["sharing"] == {"timeSlicing": {"resources": [
        {"name": "nvidia.com/gpu", "devices": "all", "replicas": 4}]}}
