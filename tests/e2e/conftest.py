"""Real kind clusters for the e2e suite: dockerd, kind and the node image come from hack/harness.

The suite never skips: without dockerd, kind or KINDGPU_NODE_IMAGE it fails and says how to set
them up (`hack/test.sh` does).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("KINDGPU_ARTIFACTS", REPO / "out" / "e2e"))


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


def invoke(*args, check=False, timeout=900, env=None):
    """Run a task exactly as a user would, from the repo."""
    result = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, **(env or {})})
    print(f"$ invoke {' '.join(args)}  -> exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    if check and result.returncode != 0:
        pytest.fail(f"invoke {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def export_logs(cluster, why):
    where = ARTIFACTS / f"{cluster}-{why}"
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["kind", "export", "logs", str(where), "--name", cluster], capture_output=True)
    print(f"kind logs of {cluster} kept in {where}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and "e2e" in item.keywords:
        item.session.e2e_failed = True
