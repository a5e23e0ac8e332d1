"""Run every check: probes that wait on the host run concurrently, then the answers are built."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from .. import inventory, versions
from . import dockerhost, host, nvidia, tools
from .model import Check, Report, Request


def preflight(request: Request) -> Report:
    """Every check for `request`, the inventory they saw, and how long it took."""
    start = time.perf_counter()
    probes = {
        "docker": lambda: dockerhost.probe(request),
        "kind": tools.probe_kind,
        "kubectl": tools.probe_kubectl,
        "kind_default": versions.kind_default_image,
    }
    if request.simulate is None:
        probes["driver"] = lambda: nvidia.probe_driver(request)
        probes["toolkit"] = lambda: nvidia.probe_toolkit(request)
    with ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="preflight") as pool:
        futures = {name: pool.submit(fn) for name, fn in probes.items()}
        # The /proc reads are cheap: do them here while the probes wait.
        kernel = host.sysctl_checks(request)
        memory = host.memory_check(request)
        got = {name: f.result() for name, f in futures.items()}

    if request.simulate is None:
        inv, driver_error = got["driver"]
        toolkit, config = got["toolkit"]
    else:
        inv, driver_error = inventory.simulated_inventory(request.simulate, cluster=request.cluster_name), None
        toolkit, config = {}, {}
    gpu_count = len(inv.gpus) if inv is not None else None
    docker = got["docker"]

    checks: list[Check] = [
        nvidia.driver_check(request, inv, driver_error),
        *nvidia.toolkit_checks(request, toolkit, config),
        *dockerhost.checks(request, docker),
        *tools.checks(got["kind"], got["kubectl"]),
        tools.kubernetes_check(request, docker.node_image, got["kind_default"]),
        *kernel,
        host.gpu_capacity_check(request, gpu_count),
        memory,
        dockerhost.cluster_name_check(request, docker),
        host.api_server_check(request),
    ]
    return Report(request, checks, inv, seconds=time.perf_counter() - start)


def run_checks(request: Request) -> list[Check]:
    """The checks alone, for `invoke up` (which stops when one of them is FAIL)."""
    return preflight(request).checks
