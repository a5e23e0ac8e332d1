"""kind and kubectl checks: real kubectl where the host has one, stand-ins for other versions."""

import json
import os
import shutil

import pytest

from kindgpu import cmd
from kindgpu.preflight import Status, tools


def on_path(tmp_path, monkeypatch, name, script):
    exe = tmp_path / name
    exe.write_text(script)
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")


@pytest.mark.parametrize(
    "output, version, status",
    [
        ("kind v0.20.0 go1.20.4 linux/amd64", (0, 20, 0), Status.PASS),
        ("kind v0.29.0 go1.24.2 linux/amd64", (0, 29, 0), Status.PASS),
        ("kind v0.31.0-alpha+abc go1.25 linux/arm64", (0, 31, 0), Status.PASS),
        ("kind v0.17.0 go1.19.2 linux/amd64", (0, 17, 0), Status.FAIL),
        ("kind v0.11.1 go1.16.4 linux/amd64", (0, 11, 1), Status.FAIL),
    ],
)
def test_kind_versions(tmp_path, monkeypatch, output, version, status):
    on_path(tmp_path, monkeypatch, "kind", f"#!/bin/sh\necho '{output}'\n")
    assert tools.parse_kind_version(output) == version
    kind, kubectl = tools.checks(tools.probe_kind(), tools.probe_kubectl())
    assert kind.status is status
    if status is Status.FAIL:
        assert "older than the supported v0.20.0" in kind.found
        assert kind.fix == "invoke preflight --fix"
        assert "curl -Lo ./kind https://kind.sigs.k8s.io/dl/v0.33.0/" in kind.hint


def test_kind_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    kind, kubectl = tools.checks(tools.probe_kind(), tools.probe_kubectl())
    for c in (kind, kubectl):
        assert c.status is Status.FAIL and "not found on PATH" in c.found
    assert kind.fix == kubectl.fix == "invoke preflight --fix"
    assert "/usr/local/bin/kind" in kind.hint and "/usr/local/bin/kubectl" in kubectl.hint


def test_kind_that_prints_nothing_useful(tmp_path, monkeypatch):
    on_path(tmp_path, monkeypatch, "kind", "#!/bin/sh\necho 'segfault' >&2\nexit 2\n")
    kind, _ = tools.checks(tools.probe_kind(), tools.probe_kubectl())
    assert kind.status is Status.FAIL and "exit 2" in kind.found and "segfault" in kind.found


@pytest.mark.parametrize(
    "client, version",
    [
        ({"major": "1", "minor": "32+", "gitVersion": "v1.32.4-dispatcher"}, (1, 32, 4)),
        ({"major": "1", "minor": "26", "gitVersion": "v1.26.15"}, (1, 26, 15)),
        ({"major": "1", "minor": "30"}, (1, 30, 0)),
    ],
)
def test_kubectl_json(client, version):
    assert tools.parse_kubectl_version(json.dumps({"clientVersion": client})) == version


def test_old_kubectl_fails(tmp_path, monkeypatch):
    doc = json.dumps({"clientVersion": {"major": "1", "minor": "26", "gitVersion": "v1.26.15"}})
    on_path(tmp_path, monkeypatch, "kubectl", f"#!/bin/sh\necho '{doc}'\n")
    _, kubectl = tools.checks(tools.probe_kind(), tools.probe_kubectl())
    assert kubectl.status is Status.FAIL and "v1.26.15 is older than the supported v1.27.0" in kubectl.found


def test_this_hosts_kind_and_kubectl():
    """Whatever is installed here: the check agrees with the binary's own answer."""
    kind, kubectl = tools.checks(tools.probe_kind(), tools.probe_kubectl())
    if shutil.which("kubectl") is None:
        assert kubectl.status is Status.FAIL
    else:
        raw = cmd.run(["kubectl", "version", "--client", "-o", "json"]).stdout
        git = json.loads(raw)["clientVersion"]["gitVersion"]
        assert kubectl.details["version"] in git
    if shutil.which("kind") is None:
        assert kind.status is Status.FAIL
    else:
        assert kind.details["version"] in cmd.run(["kind", "version"]).stdout
