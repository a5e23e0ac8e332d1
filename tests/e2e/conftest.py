"""The e2e suite: tests on a real dockerd and real kind clusters; dockerd, kind and the node image
come from hack/harness. A test is e2e by living in this folder (marked here), never by a marker.

The suite never skips: without dockerd, kind or KINDGPU_NODE_IMAGE it fails and says how to set
them up (`hack/test.sh` does).
"""

import os
import shutil
import subprocess

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def harness():
    """Check the harness is there; fail (never skip) with the fix when it is not."""
    problems = []
    if not os.environ.get("KINDGPU_NODE_IMAGE"):
        problems.append("KINDGPU_NODE_IMAGE is not set")
    if not shutil.which("kind"):
        problems.append("kind is not on PATH")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        problems.append("dockerd is not running")
    if problems:
        pytest.fail("; ".join(problems) + ": run `bash hack/harness/setup.sh && source "
                    "/var/cache/kindgpu-harness/env` first (hack/test.sh does)")
    return os.environ["KINDGPU_NODE_IMAGE"]


@pytest.fixture(scope="session", autouse=True)
def users_kubeconfig(tmp_path_factory):
    """The kubeconfig kubectl reads, for the whole suite: `invoke up` merges its context there, so
    no test touches this host's ~/.kube/config."""
    path = tmp_path_factory.mktemp("kube") / "config"
    patch = pytest.MonkeyPatch()
    patch.setenv("KUBECONFIG", str(path))
    yield path
    patch.undo()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and "e2e" in item.keywords:
        item.session.e2e_failed = True
