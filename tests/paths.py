"""Where test inputs live. (Not in conftest.py: tests/e2e has a conftest of its own.)"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO / "tests" / "testdata"
# A real 2×H200 host's nvidia-smi and /proc output.
H200_FIXTURES = TESTDATA / "h200x2"
