"""Every step is a task of its own, made from the one list: asking for one runs what it needs first."""

from types import SimpleNamespace

import invoke

from kindgpu import nodes, steps, tasks


def test_each_step_without_a_task_of_its_own_becomes_one_in_pipeline_order():
    names = [s.name for s in steps.pipeline()]
    assert [t.name for t in tasks.STEP_TASKS] == ["create", "label", "isolate", "device-plugin"]
    assert set(names) <= set(tasks.ns.task_names)
    assert ", ".join(names) in tasks.ns["up"].__doc__


def test_a_step_task_runs_the_steps_before_it_first_and_stops_after_it(state_dir, monkeypatch, capsys):
    """No cluster yet: Docker (faked at its client) has no node containers."""
    no_containers = SimpleNamespace(containers=SimpleNamespace(list=lambda **filters: []))
    monkeypatch.setattr(nodes, "docker_client", lambda: no_containers)
    tasks.ns["label"](invoke.Context(), name="t", simulate="8", dry_run=True)
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines()] == ["preflight", "config", "create", "label"]
    assert "would run: cluster t does not exist" in out and "label  would run: the cluster is not up yet" in out
    assert not (state_dir / "t").exists()  # a dry run writes no state
