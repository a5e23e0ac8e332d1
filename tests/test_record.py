"""The cluster's record: the plan `up` writes into the cluster is the Plan `status` and `smoke` read."""

from types import SimpleNamespace

from kindgpu import plan, record, render, spec
from paths import h200_inventory


class RecordingKube:
    """The Kubernetes seam (Kube.get) over objects kept in a dict."""

    def __init__(self, objects=None):
        self.objects = objects or {}

    def get(self, kind, name, namespace=None):
        return self.objects.get((kind, name, namespace))


def stored(obj):
    return {(obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]): SimpleNamespace(data=obj["data"])}


def test_the_recorded_plan_reads_back_as_the_plan(state_dir):
    made = plan.make_plan(spec.resolve(env={}, flags={"workers": 2, "gpusPerWorker": 1}), h200_inventory())
    configmap = record.spec_configmap(made)
    assert configmap["data"]["plan.json"] == render.state_files(made)["plan.json"]
    back = record.read(RecordingKube(stored(configmap)))
    assert back.workers == made.workers and back.spec == made.spec and back.spec_hash == made.spec_hash
    assert [g.minor for w in back.workers for g in w.gpus] == [0, 1]
    assert back.to_dict()["workers"] == made.to_dict()["workers"]


def test_a_cluster_without_a_record_has_no_plan():
    assert record.read(RecordingKube()) is None
