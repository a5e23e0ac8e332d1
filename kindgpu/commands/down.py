"""`invoke down`: the cluster, its network, its state and what kindgpu merged go (cluster.down);
with --images, the node images kindgpu built that no container uses too."""

from __future__ import annotations

from .. import cluster, flags, nodeimage, nodes
from ..report import Reporter
from .node_images import show_removal


def run(config_file, checked: dict, *, force: bool = False, images: bool = False) -> None:
    reporter = Reporter()
    cluster.down(flags.resolve(config_file, checked)["name"], reporter, force=force)
    if images:
        show_removal(*nodeimage.remove_unused(nodes.docker_client(), reporter.note), reporter.note)
