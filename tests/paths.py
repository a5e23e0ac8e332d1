"""Where test inputs live, and how to read them. (Not in conftest.py: tests/e2e has a conftest of
its own.)"""

import re
from pathlib import Path

from kindgpu import inventory

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO / "tests" / "testdata"
# A real 2×H200 host's nvidia-smi and /proc output.
H200_FIXTURES = TESTDATA / "h200x2"


def parse_information_dump(text):
    """Parse the concatenation of /proc/driver/nvidia/gpus/*/information files, each after a
    `== path` line: how the fixtures keep them."""
    chunks = re.split(r"^== .*$", text, flags=re.M)
    return [inventory.parse_gpu_information(c) for c in chunks if "GPU UUID" in c]


def h200_inventory():
    """The 2×H200 host's inventory, read from its fixtures."""
    return inventory.merge(
        inventory.parse_query_csv((H200_FIXTURES / "query-gpu.csv").read_text()),
        parse_information_dump((H200_FIXTURES / "proc-driver-nvidia-gpus-information.txt").read_text()),
        *inventory.parse_driver_versions((H200_FIXTURES / "nvidia-smi.txt").read_text()),
    )
