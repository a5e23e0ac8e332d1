"""gpuAllocation: dra wired into up, status and smoke (simulated GPUs): the plugin objects, the
ResourceSlice check, smoke's claims."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

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


# ---------------------------------------------------------------- smoke's checks and levels under DRA


def vis_log(worker, *uuids):
    """A visibility payload's log that saw `uuids`."""
    import json

    result = {"level": "visibility", "worker": worker, "ok": True, "rc": 0, "bad_lines": 0, "count": len(uuids),
              "uuids": list(uuids), "error": ""}
    return "\n".join([f"kindgpu visibility payload: worker {worker}, pod p", *(f"  | {u}" for u in uuids),
                      f"KINDGPU-RESULT {json.dumps(result)}", ""])


def pod_of(job):
    return job["spec"]["template"]["spec"]


def test_under_dra_smoke_selects_by_product_name_in_cel_and_two_pods_share_one_claim(state_dir):
    from kindgpu.smoke import checks

    p = make()
    w1, w2, _ = p.workers
    found = {c.kind: c for c in checks.for_plan(p)}
    assert list(found) == ["product", "product-cel", "shared-claim"]  # no time-slicing check: not shared
    cel, shared = found["product-cel"], found["shared-claim"]
    assert (cel.subject, cel.allowed, cel.pods) == ("NVIDIA H200", {w1.node: [g.uuid for g in w1.gpus],
                                                                   w2.node: [g.uuid for g in w2.gpus]}, 1)
    assert (shared.subject, shared.allowed, shared.pods) == (w2.node, {w2.node: [w2.gpus[0].uuid]}, 2)
    assert [cel.name, shared.name] == ["gpu-product-cel[NVIDIA H200]", f"shared-claim[{w2.node}]"]

    (template,) = smoke_jobs.check_claims("r1", cel)
    exactly = template["spec"]["spec"]["devices"]["requests"][0]["exactly"]
    assert template["kind"] == "ResourceClaimTemplate" and exactly["count"] == 1
    assert exactly["selectors"] == [{"cel": {"expression":
                                             "device.attributes['gpu.nvidia.com'].productName == 'NVIDIA H200'"}}]
    (cel_job,) = smoke_jobs.check_jobs("r1", "img", cel, "nvidia.com/gpu", dra=True)
    assert "nodeSelector" not in pod_of(cel_job)  # the claim's CEL alone places it
    assert pod_of(cel_job)["resourceClaims"] == [{"name": "gpus",
                                                  "resourceClaimTemplateName": "smoke-r1-product-cel-1"}]

    (claim,) = smoke_jobs.check_claims("r1", shared)
    assert claim["kind"] == "ResourceClaim" and claim["metadata"]["name"] == "smoke-r1-shared-claim-1"
    assert claim["spec"]["devices"]["requests"][0]["exactly"]["count"] == 1
    assert claim["metadata"]["labels"][smoke_jobs.RUN_LABEL] == "r1"  # the run's cleanup finds it
    jobs = smoke_jobs.check_jobs("r1", "img", shared, "nvidia.com/gpu", dra=True)
    assert [pod_of(j)["resourceClaims"] for j in jobs] == [[{"name": "gpus",
                                                             "resourceClaimName": "smoke-r1-shared-claim-1"}]] * 2
    assert [pod_of(j)["nodeSelector"] for j in jobs] == [{"kubernetes.io/hostname": w2.node}] * 2
    assert all(pod_of(j)["containers"][0]["resources"] == {"claims": [{"name": "gpus"}]} for j in jobs)
    # The label-selected product check asks its one GPU through a template too; without DRA none of these.
    (label_job,) = smoke_jobs.check_jobs("r1", "img", found["product"], "nvidia.com/gpu", dra=True)
    assert pod_of(label_job)["resourceClaims"][0]["resourceClaimTemplateName"] == "smoke-r1-one"
    assert smoke_jobs.check_claims("r1", found["product"]) == []
    assert [c.kind for c in checks.for_plan(make(dra=False))] == ["product"]
    # A quote in a product name stays inside the CEL string.
    assert checks.cel_selector("A'B") == "device.attributes['gpu.nvidia.com'].productName == 'A\\'B'"


def test_shared_claim_passes_only_when_both_pods_see_the_same_one_gpu_of_the_worker(state_dir):
    from kindgpu.smoke import checks

    p = make()
    w1, w2, _ = p.workers
    found = {c.kind: c for c in checks.for_plan(p)}
    shared, cel = found["shared-claim"], found["product-cel"]
    mine = w2.gpus[0].uuid
    ok = checks.verdict(shared, [(w2.node, "Succeeded", vis_log("s", mine))] * 2)
    assert ok["ok"]
    assert ok["message"] == f"shared claim on {w2.node}: 2 pods referencing one ResourceClaim all saw {mine}"
    other = w1.gpus[0].uuid
    two = checks.verdict(shared, [(w2.node, "Succeeded", vis_log("s", mine)),
                                  (w2.node, "Succeeded", vis_log("s", other))])
    assert not two["ok"] and f"not the worker's GPU(s): {other}" in two["message"]
    apart = checks.Check("shared-claim", w1.node, "shared-claim-1", {w1.node: [g.uuid for g in w1.gpus]}, 2)
    differ = checks.verdict(apart, [(w1.node, "Succeeded", vis_log("s", w1.gpus[0].uuid)),
                                    (w1.node, "Succeeded", vis_log("s", w1.gpus[1].uuid))])
    assert not differ["ok"] and "saw different GPUs" in differ["message"]
    assert not checks.verdict(shared, [(w2.node, "Succeeded", vis_log("s", mine))])["ok"]  # one pod of two
    assert not checks.verdict(shared, [(w2.node, "Succeeded", vis_log("s", mine)), (None, "Pending", None)])["ok"]
    # The CEL check: on a worker with that product, one of its GPUs; the verdict names the expression.
    cel_ok = checks.verdict(cel, [(w1.node, "Succeeded", vis_log("c", other))])
    assert cel_ok["ok"] and "productName == 'NVIDIA H200'" in cel_ok["message"]
    # JUnit names say which, and [dra].
    outcome = verdict.Outcome(level="visibility", ok=True, message="", workers=[], limit={"ok": True},
                              checks=[cel_ok, ok])
    names = [c.get("name") for c in ET.fromstring(report.junit_xml(outcome, "d", dra=True)).iter("testcase")]
    assert names == ["gpu-limit-enforced[dra]", "gpu-product-cel[NVIDIA H200][dra]", f"shared-claim[{w2.node}][dra]"]


@pytest.mark.parametrize("level", ["compute", "collective"])
def test_compute_and_collective_ask_through_the_workers_claims(state_dir, level):
    """Simulated GPUs do not run them (levels.problem), but their objects are those of real GPUs under DRA
    (a cluster with NVIDIA's DRA driver, through smoke --kubeconfig): one claim per worker for all its GPUs."""
    p = make()
    jobs = {j["metadata"]["name"]: j for j in smoke_jobs.level_jobs("r1", p, level, "pytorch:1", "cuda:1")}
    for w in p.gpu_workers:
        spec = pod_of(jobs[f"smoke-r1-w{w.number}"])
        assert spec["resourceClaims"] == [{"name": "gpus", "resourceClaimTemplateName": f"smoke-r1-w{w.number}"}]
        container = spec["containers"][0]
        assert container["resources"] == {"claims": [{"name": "gpus"}]} and container["image"] == "pytorch:1"
        assert spec["nodeSelector"] == {"kubernetes.io/hostname": w.node}
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["KINDGPU_LEVEL"] == level
        if level == "collective":
            assert env["KINDGPU_EXPECTED_GPUS"] == str(len(w.gpus)) and env["KINDGPU_NNODES"] == "2"
            assert {"name": "kindgpu-dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
        else:
            assert env["KINDGPU_EXPECTED_UUIDS"] == ",".join(g.uuid for g in w.gpus)
    # The CPU-only worker's pods and the over-ask run visibility; the over-ask asks through its own claim.
    assert pod_of(jobs["smoke-r1-w1-overask"])["resourceClaims"][0]["resourceClaimTemplateName"] == "smoke-r1-overask"
    kinds = [o["kind"] for o in smoke_jobs.support_objects("r1", level)]
    assert kinds == (["ConfigMap", "Service"] if level == "collective" else ["ConfigMap"])


def test_the_run_makes_the_checks_claims_before_their_pods_and_deletes_them_after(state_dir):
    from kindgpu.smoke import run as smoke_run

    class Resource:
        def __init__(self):
            self.deleted = []

        def delete_collection_namespaced_resource_claim_template(self, namespace, label_selector):
            self.deleted.append("ResourceClaimTemplate")

        def delete_collection_namespaced_resource_claim(self, namespace, label_selector):
            self.deleted.append("ResourceClaim")

    class Calls:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    class Kube:
        resource, batch, core = Resource(), Calls(), Calls()

    run, order = smoke_run.SmokeRun(Kube(), make(), "visibility"), []
    run.load_image = run.ensure_namespace = lambda *args: None
    run.create = lambda obj: order.append(obj["kind"] + (
        "-check" if obj["kind"] == "Job" and "kindgpu.dev/smoke-check" in obj["spec"]["template"]["metadata"]["labels"]
        else ""))
    run.failure_fix = ""
    run.wait_jobs = lambda: ({}, "")
    run.check_pending = lambda *check: {"ok": True}
    run.finish_check = lambda check: {"ok": True, "check": check.kind, "message": ""}
    run.run()
    first_check = order.index("Job-check")
    assert {"ResourceClaim", "ResourceClaimTemplate"} <= set(order[:first_check])
    assert order.index("ResourceClaim") > max(i for i, kind in enumerate(order) if kind == "Job")  # after the level's
    assert order.count("Job-check") == 4  # product, product-cel, 2 × shared-claim
    assert Kube.resource.deleted == ["ResourceClaimTemplate", "ResourceClaim"]
