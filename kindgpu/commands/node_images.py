"""`invoke node-images`: the node images kindgpu built (nodeimage.built), their size and the
containers made from them; --remove those no container uses."""

from __future__ import annotations

from .. import console, nodeimage, nodes
from ..report import Reporter


def run(*, remove: bool = False, as_json: bool = False) -> None:
    client = nodes.docker_client()
    if remove:
        show_removal(*nodeimage.remove_unused(client, Reporter(quiet=as_json).note), Reporter(quiet=as_json).note)
    show(nodeimage.built(client), as_json)


def show_removal(removed: list[nodeimage.Built], kept: list[nodeimage.Built], note) -> None:
    for image in removed:
        note(f"removed node image {image.tag}")
    for image in kept:
        note(f"kept node image {image.tag}: used by {', '.join(image.used_by) or 'another image name'}")


def show(found: list[nodeimage.Built], as_json: bool) -> None:
    """`invoke node-images`: each image kindgpu built, its size and the containers made from it."""
    if as_json:
        console.print_json([{"tag": b.tag, "id": b.image_id, "sizeBytes": b.size, "usedBy": list(b.used_by)}
                            for b in found])
        return
    if not found:
        print("no node image kindgpu built is there")
        return
    console.table("Node images kindgpu built", ["image", "size", "used by"],
                  [(b.tag, f"{b.size / 2**20:.0f} MiB", ", ".join(b.used_by) or "unused") for b in found])
