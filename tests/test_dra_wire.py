"""gpuAllocation: dra wired into up, status and smoke (simulated GPUs): the plugin objects, the
ResourceSlice check, smoke's claims."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from kindgpu import deviceplugin, nodeimage, plan as plans, record, spec as specs, versions
from kindgpu.simdra import build as simdra_build, manifest as simdra_manifest
from kindgpu.simgpu import build as simgpu_build
from kindgpu.smoke import jobs as smoke_jobs, report, verdict


def make(dra=True, workers=None, kubernetes=(1, 37, 2)):
    doc = specs.defaults()
    doc.update({"name": "d", "nodeImage": f"kindest/node:v{'.'.join(map(str, kubernetes))}",
                "simulate": {"gpus": 3}, "workers": workers or [{"gpus": [0, 1]}, {"gpus": [2]}, {"gpus": []}]})
    if dra:
        doc["gpuAllocation"] = "dra"
    doc = specs.fill_object_defaults(doc)
    return plans.make_plan(doc, None, versions.Runtime(kubernetes=kubernetes, cgroup=2))


def test_under_dra_the_plugin_is_the_simulated_dra_plugin_and_smoke_keeps_the_sim_image(state_dir):
    p = make()
    assert p.dra and not make(dra=False).dra
    assert deviceplugin.image(p) == simdra_build.image_tag()
    assert deviceplugin.smoke_image(p) == simgpu_build.image_tag()
    objs = deviceplugin.objects(p, "img:1")
    assert [o["kind"] for o in objs] == ["DeviceClass", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                         "DaemonSet"]
    assert deviceplugin.plugin_selector(p) == f"app.kubernetes.io/name={simdra_manifest.APP_NAME}"
    # The derived node image holds both: the DRA plugin and smoke's image.
    assert nodeimage.held_images(p) == [simdra_build.image_tag(), simgpu_build.image_tag()]
    assert nodeimage.held_images(make(dra=False)) == [simgpu_build.image_tag()]


def slice_of(node, uuids, driver="gpu.nvidia.com"):
    return {"spec": {"driver": driver, "nodeName": node, "pool": {"name": node},
                     "devices": [{"name": f"gpu-{i}", "attributes": {"uuid": {"string": u}}}
                                 for i, u in enumerate(uuids)]}}


class FakeKube:
    def __init__(self, slices):
        self.slices = slices

    def resource_slices(self):
        return self.slices


def test_dra_shortfall_is_empty_only_when_every_worker_publishes_exactly_its_gpus(state_dir):
    p = make()
    w1, w2, cpu = p.workers
    good = [slice_of(w1.node, [g.uuid for g in w1.gpus]), slice_of(w2.node, [g.uuid for g in w2.gpus]),
            slice_of("other-node", ["GPU-x"]), slice_of(w1.node, ["GPU-y"], driver="gpu.example.com")]
    assert record.published_gpus(good)[w1.node] == sorted(g.uuid for g in w1.gpus)
    assert record.dra_shortfall(FakeKube(good), p) == []
    short = record.dra_shortfall(FakeKube(good[1:]), p)
    assert short == [f"{w1.node} publishes no ResourceSlice, 2 assigned"]
    wrong = [slice_of(w1.node, [w1.gpus[0].uuid]), *good[1:2], slice_of(cpu.node, ["GPU-z"])]
    found = record.dra_shortfall(FakeKube(wrong), p)
    assert len(found) == 2 and found[0].startswith(f"{w1.node} publishes 1 GPU(s)")
    assert found[1].startswith(f"{cpu.node} publishes 1 GPU(s) GPU-z, 0 assigned")


def test_dra_smoke_asks_through_claim_templates_not_limits(state_dir):
    p = make()
    templates = {t["metadata"]["name"]: t for t in smoke_jobs.claim_templates("r1", p)}
    counts = {name: t["spec"]["spec"]["devices"]["requests"][0]["exactly"]["count"] for name, t in templates.items()}
    assert counts == {"smoke-r1-w1": 2, "smoke-r1-w2": 1, "smoke-r1-overask": 3, "smoke-r1-one": 1}
    for t in templates.values():
        exactly = t["spec"]["spec"]["devices"]["requests"][0]["exactly"]
        assert exactly["deviceClassName"] == "gpu.nvidia.com" and exactly["allocationMode"] == "ExactCount"
    jobs = smoke_jobs.level_jobs("r1", p, "visibility", "img", "img")
    pods = {j["metadata"]["name"]: j["spec"]["template"]["spec"] for j in jobs}
    claim = {name: (spec.get("resourceClaims") or [{}])[0].get("resourceClaimTemplateName")
             for name, spec in pods.items()}
    assert claim == {"smoke-r1-w1": "smoke-r1-w1", "smoke-r1-w2": "smoke-r1-w2", "smoke-r1-cpu1": None,
                     "smoke-r1-cpu1-gpuask": "smoke-r1-one", "smoke-r1-w1-overask": "smoke-r1-overask"}
    for name, spec in pods.items():
        resources = spec["containers"][0].get("resources", {})
        assert "limits" not in resources
        assert resources.get("claims") == ([{"name": "gpus"}] if claim[name] else None)
    assert pods["smoke-r1-w1"]["nodeSelector"] == {"kubernetes.io/hostname": p.workers[0].node}
    # The device-plugin path is as it was: limits, no claims.
    plain = {j["metadata"]["name"]: j["spec"]["template"]["spec"]
             for j in smoke_jobs.level_jobs("r1", make(dra=False), "visibility", "img", "img")}
    assert all("resourceClaims" not in s for s in plain.values())
    assert plain["smoke-r1-w1"]["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": "2"}}


def test_junit_names_say_dra():
    outcome = verdict.Outcome(level="visibility", ok=True, message="", workers=[
        {"node": "n1", "ok": True, "message": "ok"}], limit={"ok": True, "message": "m"}, cpu_workers=[],
        seconds=1.0, checks=[])
    root = ET.fromstring(report.junit_xml(outcome, "c", dra=True))
    names = [c.get("name") for c in root.iter("testcase")]
    assert names == ["visibility[n1][dra]", "gpu-limit-enforced[dra]"]
    assert {c.get("classname") for c in root.iter("testcase")} == {"kindgpu.smoke.visibility.dra"}
