"""`invoke down`: the cluster, its network, its state and what kindgpu merged go (cluster.down);
with --images, the node images kindgpu built that no container uses too."""

from __future__ import annotations

from .. import cluster, flags, foreign, nodeimage, nodes
from ..errors import Problem, SpecError
from ..report import Reporter
from .node_images import show_removal


def run(config_file, checked: dict, *, force: bool = False, images: bool = False, kubeconfig=None) -> None:
    reporter = Reporter()
    if kubeconfig:
        if checked.get("name") or force:
            raise SpecError([Problem("--kubeconfig", "names a cluster kindgpu did not make: it is never deleted",
                                     "drop --name and --force; `invoke down --kubeconfig FILE` removes only "
                                     "what smoke --kubeconfig kept")], title="invalid task flags")
        foreign.forget(kubeconfig, reporter.note)
        return
    cluster.down(flags.resolve(config_file, checked)["name"], reporter, force=force)
    if images:
        show_removal(*nodeimage.remove_unused(nodes.docker_client(), reporter.note), reporter.note)
