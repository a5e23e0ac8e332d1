"""`invoke preflight` and `python -m kindgpu.preflight`: run the checks, print, return an exit code."""

from __future__ import annotations

import argparse
import sys

from ..errors import KindgpuError, user_text
from . import host, install
from .model import Request
from .report import write_json, write_table
from .run import preflight


def main(*, workers=2, gpus=1, cluster_name="kindgpu", simulate=None, api_address="127.0.0.1",
         as_json=False, fix=False, out=None, gpus_total=None, **paths) -> int:
    """Check the host for the requested cluster and print the answer.

    Exit code: 0 when nothing FAILs, 1 when something does, 2 for invalid arguments.
    fix=True first applies the safe host fixes (inotify sysctls), then checks.
    `paths` (proc_root, toolkit_config, sysctl_conf, docker_url) are Request fields for tests.
    """
    out = out or sys.stdout
    try:
        request = Request(cluster_name=cluster_name, workers=workers, gpus=gpus, gpus_total=gpus_total,
                          simulate=simulate, api_address=api_address, **paths)
    except KindgpuError as e:
        print(user_text(e), file=out if as_json else sys.stderr)
        return e.exit_code
    fixed = []
    if fix:
        try:
            fixed = host.apply_sysctl_fixes(request)
        except OSError as e:
            fixed = [f"could not apply the sysctl fixes ({e}); run the printed command as root"]
        fixed += install.fix_tools(request.node_image)
        if not fixed:
            fixed = ["nothing to fix on this host automatically"]
    report = preflight(request)
    report.fixed = fixed
    (write_json if as_json else write_table)(report, out)
    return report.exit_code


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m kindgpu.preflight",
                                description="Can this host run the kind GPU cluster asked for?")
    p.add_argument("--workers", type=int, default=2, help="worker nodes")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per worker")
    p.add_argument("--name", default="kindgpu", help="cluster name")
    p.add_argument("--simulate", type=int, default=None, metavar="N",
                   help="check for N simulated GPUs instead of real ones")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--fix", action="store_true", help="apply the safe host fixes (sysctls)")
    return p.parse_args(argv)


def cli(argv=None) -> int:
    a = parse_args(argv)
    return main(workers=a.workers, gpus=a.gpus, cluster_name=a.name, simulate=a.simulate,
                as_json=a.json, fix=a.fix)
