"""Merging a cluster's context into kubectl's kubeconfig and taking it out again, on real files."""

import os
import stat

import pytest
import yaml

from fakes import Notes
from kindgpu import kubeconfig as kc
from kindgpu.commands import up as up_command
from kindgpu.errors import KindgpuError, SpecError


def kind_kubeconfig(cluster, server):
    """What `kind get kubeconfig` writes."""
    name = f"kind-{cluster}"
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": "Q0E="}}],
        "users": [{"name": name, "user": {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


# A user's kubeconfig: a production cluster, and another kind cluster's entries.
USERS = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "prod", "cluster": {"server": "https://10.0.0.1:6443", "insecure-skip-tls-verify": True}},
                 {"name": "kind-other", "cluster": {"server": "https://127.0.0.1:40000"}}],
    "users": [{"name": "prod-admin", "user": {"token": "s3cret"}},
              {"name": "kind-other", "user": {"token": "other"}}],
    "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod-admin", "namespace": "ops"}},
                 {"name": "kind-other", "context": {"cluster": "kind-other", "user": "kind-other"}}],
    "current-context": "prod",
    "preferences": {"colors": True},
}


@pytest.fixture
def files(tmp_path, state_dir):
    """The cluster `demo`'s own kubeconfig in its state directory, and a user's kubeconfig (0640)."""
    private = state_dir / "demo" / "kubeconfig"
    private.parent.mkdir(parents=True)
    private.write_text(yaml.safe_dump(kind_kubeconfig("demo", "https://127.0.0.1:41234")))
    private.chmod(0o600)
    user = tmp_path / "home" / ".kube" / "config"
    user.parent.mkdir(parents=True)
    user.write_text(yaml.safe_dump(USERS, sort_keys=False))
    user.chmod(0o640)
    return private, user


def load(path):
    return yaml.safe_load(path.read_text())


def others(doc):
    """Everything in a kubeconfig but kind-demo's entries and current-context."""
    return {k: ([e for e in v if e["name"] != "kind-demo"] if k in kc.SECTIONS else v)
            for k, v in doc.items() if k != "current-context"}


def test_merge_adds_the_three_entries_makes_them_current_and_changes_nothing_else(files):
    private, user = files
    change = kc.merge("demo", private, target=user)
    assert change.changed and change.current and change.path == user
    doc = load(user)
    assert others(doc) == others(USERS)  # prod and kind-other exactly as they were, in order
    assert doc["current-context"] == "kind-demo"
    own = kc.entries(load(private), "kind-demo")
    assert kc.entries(doc, "kind-demo") == own
    assert [c["name"] for c in doc["clusters"]] == ["prod", "kind-other", "kind-demo"]
    assert stat.S_IMODE(user.stat().st_mode) == 0o640  # the file's mode is kept
    assert not list(user.parent.glob("*.kindgpu-tmp")) and not (user.parent / "config.lock").exists()


def test_merge_into_a_new_file_makes_it_0600_like_kind(files, tmp_path):
    private, _ = files
    target = tmp_path / "new" / "config"
    kc.merge("demo", private, target=target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    doc = load(target)
    assert doc["apiVersion"] == "v1" and doc["kind"] == "Config" and doc["current-context"] == "kind-demo"
    assert kc.entries(doc, "kind-demo") == kc.entries(load(private), "kind-demo")


def test_merge_refreshes_stale_entries_in_place(files):
    private, user = files
    stale = dict(USERS, clusters=[*USERS["clusters"], {"name": "kind-demo", "cluster": {"server": "https://old"}}],
                 users=[{"name": "kind-demo", "user": {"token": "old"}}, *USERS["users"]])
    user.write_text(yaml.safe_dump(stale, sort_keys=False))
    kc.merge("demo", private, target=user)
    doc = load(user)
    assert [u["name"] for u in doc["users"]] == ["kind-demo", "prod-admin", "kind-other"]  # where it was
    assert kc.server_of(doc, "kind-demo") == "https://127.0.0.1:41234"
    assert sum(c["name"] == "kind-demo" for c in doc["clusters"]) == 1
    assert others(doc) == others(USERS)


def test_a_noop_up_neither_rewrites_the_file_nor_takes_the_current_context_back(files):
    private, user = files
    kc.merge("demo", private, target=user)
    doc = load(user)
    doc["current-context"] = "prod"  # the user switched back
    user.write_text(yaml.safe_dump(doc, sort_keys=False))
    before = user.stat()
    change = kc.merge("demo", private, target=user, only_if_changed=True)
    assert not change.changed and not change.current
    assert user.stat().st_ino == before.st_ino and user.stat().st_mtime_ns == before.st_mtime_ns
    assert load(user)["current-context"] == "prod"
    # A namespace set on the context since (kubectl config set-context --namespace) is kept too.
    doc = load(user)
    next(c for c in doc["contexts"] if c["name"] == "kind-demo")["context"]["namespace"] = "ml"
    user.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert not kc.merge("demo", private, target=user, only_if_changed=True).changed
    assert kc.entries(load(user), "kind-demo")["contexts"]["context"]["namespace"] == "ml"
    # Stale credentials (the cluster was made anew) are refreshed, and the context made current.
    doc = load(user)
    next(u for u in doc["users"] if u["name"] == "kind-demo")["user"]["client-key-data"] = "T0xE"
    user.write_text(yaml.safe_dump(doc, sort_keys=False))
    change = kc.merge("demo", private, target=user, only_if_changed=True)
    assert change.changed and change.current
    assert kc.entries(load(user), "kind-demo") == kc.entries(load(private), "kind-demo")
    doc = load(user)
    doc["current-context"] = "prod"
    user.write_text(yaml.safe_dump(doc, sort_keys=False))
    # Asked for explicitly (invoke kubeconfig --merge), it is made current again.
    assert kc.merge("demo", private, target=user).current
    assert load(user)["current-context"] == "kind-demo"


def test_unmerge_removes_exactly_its_entries_and_clears_only_its_current_context(files, monkeypatch):
    private, user = files
    monkeypatch.setenv("KUBECONFIG", str(user))
    kc.merge("demo", private)
    assert kc.unmerge("demo", private) == [user]
    doc = load(user)
    assert doc == {**USERS, "current-context": ""}  # it pointed at kind-demo: cleared
    kc.merge("demo", private)
    doc = load(user)
    doc["current-context"] = "kind-other"
    user.write_text(yaml.safe_dump(doc, sort_keys=False))
    kc.unmerge("demo", private)
    assert load(user) == {**USERS, "current-context": "kind-other"}  # another's current context stays
    assert kc.unmerge("demo", private) == []  # nothing left to remove: the file is not written


def test_unmerge_looks_in_every_file_kubectl_reads_but_never_in_the_clusters_own(files, tmp_path, monkeypatch):
    private, user = files
    second = tmp_path / "second"
    second.write_text(yaml.safe_dump(kind_kubeconfig("demo", "https://127.0.0.1:41234")))
    own_before = private.read_text()
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(private), str(user), str(second)]))
    kc.merge("demo", private, target=user)
    assert kc.unmerge("demo", private) == [user, second]
    assert private.read_text() == own_before
    assert kc.entries(load(second), "kind-demo") == {}


def test_merge_target_is_chosen_as_kind_chooses_it(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    env = {"HOME": str(tmp_path), "KUBECONFIG": os.pathsep.join([str(a), str(b), str(c)])}
    assert kc.merge_target(env) == c  # none exists: the last one
    b.write_text("")
    assert kc.merge_target(env) == b  # the first that exists
    assert kc.merge_target({"HOME": str(tmp_path)}) == tmp_path / ".kube" / "config"
    assert kc.merge_target({"HOME": str(tmp_path), "KUBECONFIG": str(a)}) == a  # the only one, existing or not


def test_a_symlinked_kubeconfig_stays_a_link(files, tmp_path):
    private, user = files
    link = tmp_path / "link"
    link.symlink_to(user)
    kc.merge("demo", private, target=link)
    assert link.is_symlink() and kc.entries(load(user), "kind-demo")


def test_a_file_that_is_not_a_kubeconfig_is_left_alone(files, tmp_path):
    private, _ = files
    broken = tmp_path / "broken"
    broken.write_text("clusters: [unclosed\n")
    with pytest.raises(KindgpuError) as caught:
        kc.merge("demo", private, target=broken)
    assert "not valid YAML" in str(caught.value) and caught.value.fix
    assert broken.read_text() == "clusters: [unclosed\n"
    broken.write_text("clusters: 3\n")
    with pytest.raises(KindgpuError, match="not a kubeconfig"):
        kc.unmerge("demo", private, paths=[broken])
    assert broken.read_text() == "clusters: 3\n"


def test_a_kubeconfig_locked_by_kind_is_waited_for_then_refused(files):
    private, user = files
    lock = user.with_name("config.lock")
    lock.write_text("")
    before = user.read_text()
    with pytest.raises(KindgpuError) as caught:
        with kc.locked(user, wait=0.3):
            pass
    assert str(lock) in str(caught.value) and str(lock) in caught.value.fix
    assert user.read_text() == before and lock.exists()  # kind's lock is not ours to remove


def test_down_removes_only_what_kindgpu_merged_where_it_still_points_at_the_cluster(files, tmp_path, monkeypatch):
    private, user = files
    merged_by_kind = tmp_path / "kinds"  # kind-demo put there by someone else: down leaves it
    merged_by_kind.write_text(yaml.safe_dump(kind_kubeconfig("demo", "https://127.0.0.1:41234")))
    kc.merge("demo", private, target=user)
    assert kc.recorded("demo") == [{"path": str(user), "server": "https://127.0.0.1:41234"}]
    assert kc.unmerge_recorded("demo") == [user]
    assert load(user) == {**USERS, "current-context": ""}
    assert kc.entries(load(merged_by_kind), "kind-demo")
    assert kc.recorded("demo") == []
    # Replaced since by another cluster of that name: not what kindgpu merged, so it stays.
    kc.merge("demo", private, target=user)
    doc = load(user)
    next(c for c in doc["clusters"] if c["name"] == "kind-demo")["cluster"]["server"] = "https://elsewhere"
    user.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert kc.unmerge_recorded("demo") == []
    assert kc.server_of(load(user), "kind-demo") == "https://elsewhere"


def test_reach_command_is_plain_kubectl_the_context_or_the_clusters_own_file(files, monkeypatch):
    private, user = files
    env = {"HOME": str(user.parents[2]), "KUBECONFIG": str(user)}
    assert kc.reach_command("demo", private, env) == f"kubectl --kubeconfig {private} get nodes"
    kc.merge("demo", private, target=user)
    assert kc.reach_command("demo", private, env) == "kubectl get nodes"
    doc = load(user)
    doc["current-context"] = "prod"
    user.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert kc.reach_command("demo", private, env) == "kubectl --context kind-demo get nodes"
    # A kind-demo of another server (a stale entry) does not reach this cluster.
    doc["clusters"][-1]["cluster"]["server"] = "https://127.0.0.1:1"
    user.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert kc.reach_command("demo", private, env) == f"kubectl --kubeconfig {private} get nodes"


def test_merging_on_up_is_the_default_and_either_flag_overrides_the_spec():
    assert up_command.wants_merge({}) is True
    assert up_command.wants_merge({"mergeKubeconfig": False}) is False
    assert up_command.wants_merge({"mergeKubeconfig": False}, merge=True) is True
    assert up_command.wants_merge({"mergeKubeconfig": True}, no_merge=True) is False
    with pytest.raises(SpecError) as caught:
        up_command.wants_merge({}, merge=True, no_merge=True)
    assert caught.value.exit_code == 2 and caught.value.problems[0].field == "--merge"


def test_merge_needs_the_clusters_own_kubeconfig(state_dir, tmp_path):
    with pytest.raises(KindgpuError) as caught:
        kc.merge("absent", state_dir / "absent" / "kubeconfig", target=tmp_path / "config")
    assert "invoke up --name absent" in caught.value.fix
    assert not (tmp_path / "config").exists()


def test_a_changed_merge_setting_does_not_ask_to_recreate_the_cluster():
    from kindgpu import drift, spec

    made = spec.resolve(env={}, flags={"name": "demo", "simulate": 4})
    assert drift.spec_differences(made, {**made, "mergeKubeconfig": False}) == []
    assert drift.spec_differences(made, {**made, "gpusPerWorker": 1}) == ["gpusPerWorker: 4 -> 1"]


def test_after_up_merges_and_names_the_next_command_and_a_broken_kubeconfig_only_warns(files, tmp_path, capsys):
    private, user = files
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(user)}
    notes = Notes()
    up_command.after_up("demo", private, notes, True, env=env)
    assert notes.lines == [f"merged context kind-demo into {user} (now the current context)",
                           f"kubeconfig: {private}", "next: kubectl get nodes"]
    notes = Notes()
    up_command.after_up("demo", private, notes, True, env=env)  # already there: nothing written, nothing said
    assert notes.lines == [f"kubeconfig: {private}", "next: kubectl get nodes"]
    user.write_text("clusters: [unclosed\n")
    notes = Notes()
    up_command.after_up("demo", private, notes, True, env=env)
    assert "WARNING: context kind-demo not merged" in capsys.readouterr().err
    assert notes.lines[-1] == f"next: kubectl --kubeconfig {private} get nodes"
    assert user.read_text() == "clusters: [unclosed\n"
    notes = Notes()
    up_command.after_up("absent", tmp_path / "absent" / "kubeconfig", notes, True, env=env)  # up --until config
    assert notes.lines == []
