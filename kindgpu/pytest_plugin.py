"""pytest plugin for suites that test GPU software on a kindgpu cluster (installed with kindgpu:
entry point `pytest11`, nothing to enable).

    def test_sees_its_gpu(gpu_cluster):
        worker = gpu_cluster.plan.workers[0]
        ...  # gpu_cluster.kubeconfig, gpu_cluster.core (CoreV1Api), gpu_cluster.kubectl("get", "pods")

    pytest --kindgpu-spec configs/4x2.yaml            # make (or reuse) the cluster, delete it at the end
    pytest --kindgpu-simulate 8 --kindgpu-keep        # simulated GPUs; keep it for the next run
    pytest --kindgpu-kubeconfig ~/.kube/gpu-prod      # a cluster that is already there; never deleted

`gpu_cluster` is session-scoped: one cluster for the whole run. A test marked `gpu` (or `gpu(2)`:
at least 2 GPUs on one worker) needs real GPUs: it is skipped, saying why, on simulated ones.

Imports of kindgpu happen in the hooks and fixtures, so that every pytest run on a host where
kindgpu is installed pays nothing for the plugin it does not use (the modules it needs take about
0.1 s to import). None of them would make a circle at the top.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pytest

OPTIONS = ("kindgpu_spec", "kindgpu_simulate", "kindgpu_keep", "kindgpu_kubeconfig")
# kindgpu's fixes name its task flags; under pytest they are these options.
FLAG_OPTIONS = {"--simulate": "--kindgpu-simulate", "--config": "--kindgpu-spec"}


def pytest_addoption(parser):
    group = parser.getgroup("kindgpu", "GPU clusters made with kindgpu")
    group.addoption("--kindgpu-spec", metavar="FILE",
                    help="kindgpu spec of the cluster gpu_cluster makes, or reuses when it runs already")
    group.addoption("--kindgpu-simulate", metavar="N",
                    help="simulated GPUs: the host has N of them (no NVIDIA GPU needed)")
    group.addoption("--kindgpu-keep", action="store_true",
                    help="keep the cluster after the run (the next run reuses it); default: delete it")
    group.addoption("--kindgpu-kubeconfig", metavar="FILE",
                    help="an existing GPU cluster (any, not only kindgpu's): its nodes make the plan; "
                         "never deleted")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gpu(count=1): needs real GPUs, at least `count` on one worker; skipped on simulated GPUs")
    opts = {name: config.getoption(name) for name in OPTIONS}
    if opts["kindgpu_kubeconfig"] and (opts["kindgpu_spec"] or opts["kindgpu_simulate"] or opts["kindgpu_keep"]):
        raise pytest.UsageError("--kindgpu-kubeconfig uses a cluster that is there already: "
                                "--kindgpu-spec, --kindgpu-simulate and --kindgpu-keep do not apply to it")
    if opts["kindgpu_kubeconfig"] and not Path(opts["kindgpu_kubeconfig"]).expanduser().is_file():
        raise pytest.UsageError(f"--kindgpu-kubeconfig: {opts['kindgpu_kubeconfig']} does not exist")
    if opts["kindgpu_spec"] or opts["kindgpu_simulate"]:
        config._kindgpu_spec = spec_from_options(opts["kindgpu_spec"], opts["kindgpu_simulate"])


def as_options(text):
    for flag, option in FLAG_OPTIONS.items():
        text = text.replace(f"{flag} ", f"{option} ").replace(f"{flag}:", f"{option}:")
    return text


def spec_from_options(spec_file, simulate):
    """The resolved spec; a bad one stops pytest before any test, as a usage error."""
    from kindgpu import flags, spec
    from kindgpu.errors import KindgpuError, user_text

    try:
        return spec.resolve(config_file=spec_file, flags=flags.to_flags(simulate=simulate))
    except KindgpuError as err:
        # pytest prints a usage error as `ERROR: <message>` itself.
        raise pytest.UsageError(as_options(user_text(err).removeprefix("ERROR: "))) from None


@dataclass
class GPUCluster:
    """What a test gets: the cluster's name, kubeconfig, plan and API."""

    name: str
    kubeconfig: Path  # the cluster's own kubeconfig (0600); pass it to any client
    plan: object  # kindgpu.plan.Plan: plan.workers[i].node, .gpus (each .uuid, .index; uuid "" if not known)
    simulated: bool
    made_by_kindgpu: bool  # False: reached through --kindgpu-kubeconfig, its UUIDs not known
    kube: object = field(repr=False)  # kindgpu.kube.Kube

    @property
    def workers(self):
        return self.plan.workers

    @cached_property
    def client(self):
        """The Kubernetes ApiClient (kubernetes.client), for this cluster."""
        return self.kube.api_client

    @cached_property
    def core(self):
        """kubernetes.client.CoreV1Api for this cluster."""
        return self.kube.core

    def kubectl(self, *args, check=True, timeout=120):
        """Run kubectl against this cluster; its stdout."""
        result = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *map(str, args)],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(map(str, args))} exited {result.returncode}:\n"
                                 f"{result.stdout}{result.stderr}")
        return result.stdout

    def fault(self, *, gpu=None, worker=None, index=None, xid=None, effect=None, via_api=False,
              remove_device=False, down=False):
        """As `invoke fault`: make a GPU fail (an Xid; under DRA a device taint with `effect`, by a
        DeviceTaintRule with `via_api`), take its device node away (`remove_device`, with worker and index)
        or a worker go down, recorded; kindgpu's clusters. Flags are checked as the task checks them."""
        from kindgpu import commands, flags

        self._kindgpus("inject faults into")
        checked = flags.parse(worker=worker, index=index, xid=xid, effect=effect)
        commands.fault.run(None, {"name": self.name}, gpu=gpu, worker=checked["worker"], index=checked["index"],
                           xid=checked["xid"], effect=checked["effect"], via_api=via_api,
                           remove_device=remove_device, down=down)

    def heal(self):
        """As `invoke heal`: undo every fault injected; then `invoke up` for workers that were down."""
        from kindgpu import commands

        self._kindgpus("heal")
        commands.heal.run(None, {"name": self.name})

    def _kindgpus(self, what):
        if not self.made_by_kindgpu:
            raise AssertionError(f"{self.name} is not a cluster kindgpu made on this host: kindgpu cannot {what} it")

    def load(self, *images, workers=None):
        """Put images from the host's Docker into the nodes (as `invoke load`); kindgpu's clusters only."""
        from kindgpu import load as loading
        from kindgpu.report import Reporter

        if not self.made_by_kindgpu:
            raise AssertionError(f"{self.name} is not a cluster kindgpu made on this host: push the images to "
                                 "its registry instead")
        return loading.load(self.name, list(images), Reporter(), workers=workers)


def live_output(request):
    """Lines kindgpu prints while it makes or deletes the cluster reach the terminal at once."""
    from contextlib import nullcontext

    capture = request.config.pluginmanager.getplugin("capturemanager")
    return capture.global_and_fixture_disabled() if capture else nullcontext()


def existing_cluster(path):
    """--kindgpu-kubeconfig: a cluster kindgpu made on this host is known by its record (its plan, UUIDs
    and nodes, so load() works); any other gets its plan from the nodes, simulated only when a kindgpu
    record says so."""
    from kindgpu import foreign, nodes

    kube = foreign.kube_for(path)
    name = foreign.cluster_label(path)
    plan, recorded = foreign.reach(path, lambda: (foreign.observed_plan(kube, name), foreign.readable_record(kube)))
    if recorded is not None and nodes.kindgpu_cluster_here(recorded.name):
        return GPUCluster(recorded.name, Path(path).expanduser(), recorded, recorded.simulated, True, kube)
    simulated = bool(recorded and recorded.simulated)
    return GPUCluster(name, Path(path).expanduser(), plan, simulated, False, kube)


def provide(request):
    """(the handle, whether to delete its cluster at the end)."""
    from kindgpu import cluster, plan as plans
    from kindgpu.kube import Kube
    from kindgpu.report import Reporter

    config = request.config
    if config.getoption("kindgpu_kubeconfig"):
        return existing_cluster(config.getoption("kindgpu_kubeconfig")), False
    doc = getattr(config, "_kindgpu_spec", None) or spec_from_options(None, None)
    plan = plans.allocate_plan(doc)  # the spec was resolved, so validated, already
    with live_output(request):
        cluster.up(plan, Reporter())  # nothing to do when it runs from this spec already
    handle = GPUCluster(plan.name, plan.kubeconfig, plan, plan.simulated, True, Kube(plan.kubeconfig))
    return handle, not config.getoption("kindgpu_keep")


@pytest.fixture(scope="session")
def gpu_cluster(request):
    """A GPU cluster for the session: made (or reused) from --kindgpu-spec / --kindgpu-simulate and
    deleted at the end unless --kindgpu-keep, or the one --kindgpu-kubeconfig reaches."""
    from kindgpu import cluster
    from kindgpu.errors import KindgpuError, user_text
    from kindgpu.report import Reporter

    try:
        handle, delete = provide(request)
    except KindgpuError as err:
        pytest.fail(f"kindgpu could not provide the cluster:\n{as_options(user_text(err))}", pytrace=False)
    yield handle
    if delete:
        with live_output(request):
            cluster.down(handle.name, Reporter())


@pytest.fixture(autouse=True)
def _kindgpu_gpu_marker(request):
    """A test marked `gpu` gets the cluster, and is skipped where its GPUs cannot serve it."""
    marker = request.node.get_closest_marker("gpu")
    if marker is None:
        return
    need = int(marker.args[0] if marker.args else marker.kwargs.get("count", 1))
    handle = request.getfixturevalue("gpu_cluster")
    if handle.simulated:
        pytest.skip(f"needs real GPUs; the GPUs of {handle.name} are simulated")
    most = max((len(w.gpus) for w in handle.plan.workers), default=0)
    if most < need:
        pytest.skip(f"needs {need} GPUs on one worker; the largest worker of {handle.name} has {most}")
