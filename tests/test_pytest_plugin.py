"""kindgpu's pytest plugin without a cluster: its options, its usage errors, its entry point.
It runs against a real cluster in tests/e2e/test_dailyuse.py."""

import shutil
import subprocess
import sys
import zipfile

from paths import REPO
from plugin_args import PLUGIN_ARGS

pytest_plugins = ["pytester"]


def test_installing_kindgpu_installs_the_plugin_through_the_pytest11_entry_point(tmp_path):
    """Built as pip builds it, from a copy of the tree (the build leaves files behind)."""
    tree = tmp_path / "tree"
    shutil.copytree(REPO / "kindgpu", tree / "kindgpu", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tree)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            str(tree), "-w", str(tmp_path / "wheel")], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next((tmp_path / "wheel").glob("kindgpu-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        entry_points = archive.read(next(n for n in archive.namelist() if n.endswith("entry_points.txt"))).decode()
        assert "kindgpu/pytest_plugin.py" in archive.namelist()
    assert "[pytest11]\nkindgpu = kindgpu.pytest_plugin" in entry_points


def test_the_options_and_the_marker_are_listed(pytester):
    result = pytester.runpytest(*PLUGIN_ARGS, "--help")
    out = result.stdout.str()
    assert all(f"--kindgpu-{o}" in out for o in ("spec", "simulate", "keep", "kubeconfig"))
    result = pytester.runpytest(*PLUGIN_ARGS, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.gpu(count=1): needs real GPUs*"])


def test_a_bad_option_stops_the_run_before_any_test_naming_the_option(pytester):
    pytester.makepyfile("def test_never(gpu_cluster):\n    raise AssertionError('ran')\n")
    result = pytester.runpytest(*PLUGIN_ARGS, "--kindgpu-simulate", "lots")
    assert result.ret == 4  # pytest's usage error
    result.stderr.fnmatch_lines(["*--kindgpu-simulate: must be a whole number greater than 0, got 'lots'*"])
    result = pytester.runpytest(*PLUGIN_ARGS, "--kindgpu-spec", "absent.yaml")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--kindgpu-spec: file absent.yaml does not exist*"])
    result = pytester.runpytest(*PLUGIN_ARGS, "--kindgpu-kubeconfig", "absent")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--kindgpu-kubeconfig: absent does not exist*"])
    (pytester.path / "kc").write_text("{}")
    result = pytester.runpytest(*PLUGIN_ARGS, "--kindgpu-kubeconfig", "kc", "--kindgpu-keep")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--kindgpu-kubeconfig uses a cluster that is there already*"])


def test_a_bad_spec_stops_the_run_with_one_error_line_and_its_fix(pytester):
    """pytest prints a usage error as `ERROR: <message>`: the message must not say ERROR: again."""
    (pytester.path / "bad.yaml").write_text("apiVersion: kindgpu.dev/v1alpha1\nkind: GPUCluster\nsimulate: 0\n")
    result = pytester.runpytest(*PLUGIN_ARGS, "--kindgpu-spec", "bad.yaml")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["ERROR: invalid cluster spec (1 problem(s)):", "  - simulate: *",
                                 "    fix: simulate 1 to 512 GPUs: `simulate: 8` (short for `simulate: {gpus: 8}`)"])
    assert "ERROR: ERROR:" not in result.stderr.str()
    result = pytester.runpytest(*PLUGIN_ARGS, "--kindgpu-simulate", "0")
    assert result.ret == 4 and "ERROR: ERROR:" not in result.stderr.str()
    result.stderr.fnmatch_lines(["ERROR: invalid task flags (1 problem(s)):"])


def test_tests_that_do_not_ask_for_the_cluster_never_make_one(pytester, monkeypatch, tmp_path):
    """The plugin is loaded wherever kindgpu is installed: it must cost nothing unused."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no kind, kubectl or docker to reach
    pytester.makepyfile("def test_plain():\n    assert True\n")
    pytester.runpytest(*PLUGIN_ARGS).assert_outcomes(passed=1)
