"""The runner's logic, with steps whose "live state" is a dict: the outermost seam of a step.

Every real step runs against real kind clusters in tests/e2e.
"""

import io

import pytest

from kindgpu import cluster, parallel, pipeline
from kindgpu.errors import KindgpuError, SpecError
from kindgpu.report import Reporter


class FakeStep(pipeline.Step):
    needs_cluster = False

    def __init__(self, name, state, fixes=True, boom=None):
        self.name, self.state, self.fixes, self.boom = name, state, fixes, boom

    def reason(self, ctx):
        return "" if self.state.get(self.name) else f"{self.name} not done"

    def run(self, ctx, progress):
        self.state.setdefault("ran", []).append(self.name)
        if self.boom:
            raise self.boom
        if self.fixes:
            self.state[self.name] = True


class Ctx:
    def __init__(self):
        self.out = io.StringIO()
        self.reporter = Reporter(stream=self.out)

    def nodes(self):
        return {"node": None}  # a cluster exists, so failures write a diagnostics bundle


class FakePreflight(pipeline.Preflight):
    """The real step's reasons; its checks replaced by a note that it ran."""

    def __init__(self, state):
        self.state = state

    def run(self, ctx, progress):
        self.state.setdefault("ran", []).append(self.name)


def pipe(state, **kw):
    return [FakePreflight(state), *(FakeStep(n, state, **kw.get(n, {})) for n in ("config", "create", "label"))]


@pytest.fixture(autouse=True)
def no_diagnostics(monkeypatch):
    """A failed step writes a diagnostics bundle from a real cluster; these steps have none."""
    from kindgpu import diagnostics

    monkeypatch.setattr(diagnostics, "collect", lambda ctx, step: f"<bundle for {step}>")


def test_runs_what_is_due_then_nothing_to_be_done():
    state, ctx = {}, Ctx()
    assert pipeline.run(ctx, pipeline=pipe(state)) == 4
    assert state["ran"] == ["preflight", "config", "create", "label"]
    ctx2 = Ctx()
    assert pipeline.run(ctx2, pipeline=pipe(state)) == 0
    assert "Nothing to be done." in ctx2.out.getvalue()
    assert state["ran"] == ["preflight", "config", "create", "label"]


def test_skips_done_steps_and_runs_preflight_only_when_work_remains():
    state, ctx = {"config": True, "create": True}, Ctx()
    pipeline.run(ctx, pipeline=pipe(state))
    assert state["ran"] == ["preflight", "label"]
    out = ctx.out.getvalue()
    assert "– config  up to date" in out and "✓ label  label not done" in out


def test_dry_run_prints_reasons_and_changes_nothing():
    state, ctx = {"config": True}, Ctx()
    assert pipeline.run(ctx, pipeline=pipe(state), dry_run=True) == 0
    assert "ran" not in state
    assert "would run: create not done" in ctx.out.getvalue()


def test_force_reruns_a_done_step_and_until_stops():
    state = {"preflight": True, "config": True, "create": True, "label": True}
    ctx = Ctx()
    pipeline.run(ctx, pipeline=pipe(state), force=("config",))
    assert state["ran"] == ["preflight", "config"]
    state2 = {}
    pipeline.run(Ctx(), pipeline=pipe(state2), until="config")
    assert state2["ran"] == ["preflight", "config"]


def test_unknown_step_names_are_spec_errors():
    with pytest.raises(SpecError, match="unknown step 'lable'"):
        pipeline.run(Ctx(), pipeline=pipe({}), force=("lable",))


def test_step_still_not_done_after_running_fails_with_what_is_wrong():
    state, ctx = {}, Ctx()
    with pytest.raises(pipeline.StepFailed, match="ran but is still not done: create not done"):
        pipeline.run(ctx, pipeline=pipe(state, create={"fixes": False}))
    assert state["ran"] == ["preflight", "config", "create"]
    assert "✗ create" in ctx.out.getvalue()


def test_failing_step_stops_the_pipeline_and_names_the_bundle():
    state, ctx = {}, Ctx()
    with pytest.raises(pipeline.StepFailed) as caught:
        pipeline.run(ctx, pipeline=pipe(state, create={"boom": RuntimeError("disk full")}))
    assert "disk full" in str(caught.value) and "<bundle for create>" in str(caught.value)
    assert "label" not in state["ran"]
    # The next run resumes where it stopped.
    pipeline.run(Ctx(), pipeline=pipe(state))
    assert state["ran"][-3:] == ["preflight", "create", "label"]


def test_a_second_command_on_the_same_cluster_is_refused(state_dir):
    with cluster.cluster_lock("busy"):
        with pytest.raises(KindgpuError, match="being changed by kindgpu"):
            with cluster.cluster_lock("busy"):
                pass
    with cluster.cluster_lock("busy"):  # released after the first
        pass


def test_spec_differences_name_the_fields():
    diff = cluster.spec_differences({"workers": 2, "gpusPerWorker": 4, "name": "a"},
                                    {"workers": 3, "gpusPerWorker": 4, "name": "a"})
    assert diff == ["workers: 2 -> 3"]


def test_concurrently_keeps_order_and_raises_first_error():
    assert parallel.concurrently(lambda x: x * 2, [3, 1, 2]) == [6, 2, 4]
    with pytest.raises(ValueError):
        parallel.concurrently(lambda x: (_ for _ in ()).throw(ValueError(x)), [1])


def test_gpu_device_nodes_of_the_host_are_character_devices_named_nvidia_and_a_number(tmp_path):
    import os
    import stat

    (tmp_path / "nvidia0").write_text("")  # a file, not a device
    os.mknod(tmp_path / "nvidiactl", stat.S_IFCHR | 0o600, os.makedev(195, 255))
    assert not pipeline.host_has_gpu_devices(tmp_path)
    os.mknod(tmp_path / "nvidia3", stat.S_IFCHR | 0o600, os.makedev(195, 3))
    assert pipeline.host_has_gpu_devices(tmp_path)
