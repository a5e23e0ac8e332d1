"""Where test inputs live. (Not in conftest.py: tests/e2e has a conftest of its own.)"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO / "tests" / "testdata"
# The real 2×H200 host's nvidia-smi and /proc output, beside the repo (shared/ is laid next to it).
H200_FIXTURES = REPO.parent / "shared" / "fixtures" / "gpu-host-h200x2"
