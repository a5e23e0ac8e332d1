"""Images from the host's Docker into kind nodes, so that nothing has to be pulled."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from . import cmd, names
from .parallel import concurrently

# Docker's client is imported where used: listing the tasks must not pay for it.


def node_image_tags(node):
    """The image tags a node's containerd has (for Kubernetes)."""
    out = node.run(["crictl", "images", "-o", "json"], check=False).stdout
    try:
        return {tag for img in json.loads(out).get("images", []) for tag in img.get("repoTags") or []}
    except ValueError:
        return set()


def preload(client, nodes, image, progress):
    """Put `image` into each node container that lacks it, when the host's Docker has it
    (otherwise the nodes pull it themselves). Each node is asked: the image list in a node's
    status can be 30 s old, and a node that lost the image would then fail to pull it."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(image)
    except ImageNotFound:
        return
    nodes = list(nodes)
    present = concurrently(lambda node: any(t.endswith(image) for t in node_image_tags(node)), nodes)
    lacking = [node for node, has in zip(nodes, present) if not has]
    if lacking:
        progress(f"loading {image} into {len(lacking)} node(s)")
        import_into(lacking, image)


def import_into(nodes, image):
    """Save the image once where every node sees it (kindgpu's own mount), then import it in all
    nodes at once: `kind load` streams the whole image to each node through `docker exec`."""
    archive = Path(nodes[0].owner_mount) / f"image-{os.getpid()}-{threading.get_ident()}.tar"
    try:
        cmd.run(["docker", "save", "--output", archive, image])
        in_node_path = f"{names.OWNER_MOUNT}/{archive.name}"
        concurrently(lambda node: node.run(["ctr", "--namespace=k8s.io", "images", "import",
                                            "--all-platforms", "--digests", in_node_path]), nodes)
    finally:
        archive.unlink(missing_ok=True)
