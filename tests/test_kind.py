"""The kind seam's one rule for a cluster's own kubeconfig (kind itself runs in tests/e2e)."""

import json

from kindgpu import cmd, kind
from kindgpu.state import StateDir


def test_the_own_kubeconfig_is_the_specs_else_the_state_directorys(state_dir, tmp_path):
    assert kind.own_kubeconfig({"name": "c", "kubeconfig": None}) == StateDir.of("c").kubeconfig
    assert kind.own_kubeconfig({"name": "c", "kubeconfig": str(tmp_path / "kc")}) == tmp_path / "kc"


def test_both_deletes_give_kind_the_kubeconfig_the_plan_recorded(state_dir, tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(cmd, "run", lambda argv, **kw: ran.append([str(a) for a in argv]))
    kind.delete("c")  # no plan.json: the state directory's
    StateDir.of("c").root.mkdir(parents=True)
    StateDir.of("c").plan.write_text(json.dumps({"kubeconfig": str(tmp_path / "kc")}))
    kind.delete("c", check=False)
    assert [argv[-1] for argv in ran] == [str(StateDir.of("c").kubeconfig), str(tmp_path / "kc")]
