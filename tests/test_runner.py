"""The runner's logic, with steps whose "live state" is a dict: the outermost seam of a step.

Every real step runs against real kind clusters in tests/e2e.
"""

import io

import pytest

from kindgpu import runner, steps
from kindgpu.errors import SpecError
from kindgpu.report import Reporter


class FakeStep(steps.Step):
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


class FakePreflight(steps.Preflight):
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
    assert runner.run(ctx, pipe(state)) == 4
    assert state["ran"] == ["preflight", "config", "create", "label"]
    ctx2 = Ctx()
    assert runner.run(ctx2, pipe(state)) == 0
    assert "Nothing to be done." in ctx2.out.getvalue()
    assert state["ran"] == ["preflight", "config", "create", "label"]


def test_skips_done_steps_and_runs_preflight_only_when_work_remains():
    state, ctx = {"config": True, "create": True}, Ctx()
    runner.run(ctx, pipe(state))
    assert state["ran"] == ["preflight", "label"]
    out = ctx.out.getvalue()
    assert "– config  up to date" in out and "✓ label  label not done" in out


def test_dry_run_prints_reasons_and_changes_nothing():
    state, ctx = {"config": True}, Ctx()
    assert runner.run(ctx, pipe(state), dry_run=True) == 0
    assert "ran" not in state
    assert "would run: create not done" in ctx.out.getvalue()


def test_force_reruns_a_done_step_and_until_stops():
    state = {"preflight": True, "config": True, "create": True, "label": True}
    ctx = Ctx()
    runner.run(ctx, pipe(state), force=("config",))
    assert state["ran"] == ["preflight", "config"]
    state2 = {}
    runner.run(Ctx(), pipe(state2), until="config")
    assert state2["ran"] == ["preflight", "config"]


def test_unknown_step_names_are_spec_errors():
    with pytest.raises(SpecError, match="unknown step 'lable'"):
        runner.run(Ctx(), pipe({}), force=("lable",))


def test_step_still_not_done_after_running_fails_with_what_is_wrong():
    state, ctx = {}, Ctx()
    with pytest.raises(steps.StepFailed, match="ran but is still not done: create not done"):
        runner.run(ctx, pipe(state, create={"fixes": False}))
    assert state["ran"] == ["preflight", "config", "create"]
    assert "✗ create" in ctx.out.getvalue()


def test_failing_step_stops_the_pipeline_and_names_the_bundle():
    state, ctx = {}, Ctx()
    with pytest.raises(steps.StepFailed) as caught:
        runner.run(ctx, pipe(state, create={"boom": RuntimeError("disk full")}))
    assert "disk full" in str(caught.value) and "<bundle for create>" in str(caught.value)
    assert "label" not in state["ran"]
    # The next run resumes where it stopped.
    runner.run(Ctx(), pipe(state))
    assert state["ran"][-3:] == ["preflight", "create", "label"]


def test_a_guard_is_known_by_its_attribute_not_its_name_or_place():
    class Check(FakeStep):
        guard = True

    state = {"config": True}
    pipeline = [FakeStep("config", state), Check("check", state), FakeStep("create", state)]
    runner.run(Ctx(), pipeline)
    assert state["ran"] == ["check", "create"]  # due because create was
    ctx = Ctx()
    assert runner.run(ctx, pipeline) == 0
    assert "Nothing to be done." in ctx.out.getvalue() and state["ran"] == ["check", "create"]


def test_the_real_pipeline_has_one_guard_first_and_unique_names():
    pipeline = steps.pipeline()
    assert [s.name for s in pipeline if s.guard] == ["preflight"] and pipeline[0].guard
    assert len({s.name for s in pipeline}) == len(pipeline)
