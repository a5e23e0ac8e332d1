"""Helpers for the e2e suite: run tasks as a user would, keep kind's logs on failure."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("KINDGPU_ARTIFACTS", REPO / "out" / "e2e"))


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
