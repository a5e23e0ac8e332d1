"""Images from the host's Docker into kind nodes, so that nothing has to be pulled."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from . import cmd, names
from .nodes import image_id as host_image_id
from .parallel import concurrently


def normalized(reference):
    """An image name as containerd records it: docker.io/library/app:latest for `app`."""
    name, _, tag = reference.rpartition(":") if ":" in reference.rsplit("/", 1)[-1] else (reference, "", "latest")
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif not ("." in first or ":" in first or first == "localhost"):
        name = f"docker.io/{name}"
    return f"{name}:{tag}"


def node_image_ids(node):
    """{image name: image ID} of what a node's containerd holds for Kubernetes."""
    out = node.run(["crictl", "images", "-o", "json"], check=False).stdout
    try:
        listed = json.loads(out).get("images", [])
    except ValueError:
        return {}
    return {tag: img.get("id") for img in listed for tag in img.get("repoTags") or []}


def preload(client, nodes, image, progress) -> list[str]:
    """Put `image` into each node container that lacks it, when the host's Docker has it
    (otherwise the nodes pull it themselves). A node has it when its containerd holds the name
    with the host's image ID: an image rebuilt under the same tag is loaded again. Each node is
    asked: the image list in a node's status can be 30 s old, and a node that lost the image
    would then fail to pull it. Returns the names of the nodes it loaded the image into."""
    image_id = host_image_id(client, image)
    if image_id is None:
        return []
    nodes, ref = list(nodes), normalized(image)
    held = concurrently(node_image_ids, nodes)
    lacking = [node for node, ids in zip(nodes, held) if ids.get(ref) != image_id]
    if lacking:
        progress(f"loading {image} into {len(lacking)} node(s)")
        import_into(lacking, image)
    return [node.name for node in lacking]


def record_loads(path: Path, step: str, loaded: dict[str, list[str]], **about) -> None:
    """Write down what a step loaded into nodes ({image: [node, ...]}, only images it loaded), beside
    what the other steps did, in the state directory (StateDir.loads): a later look at it needs no
    guess from timings. `about`: more of what the step knows (the node image it made the nodes from)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = {}
    doc[step] = {"loaded": {image: sorted(names) for image, names in loaded.items() if names}, **about}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


IMPORT = ["ctr", "--namespace=k8s.io", "images", "import", "--all-platforms", "--digests"]


def import_into(nodes, image):
    """Save the image once where every node sees it (kindgpu's own mount), then import it in all
    nodes at once: `kind load` streams the whole image to each node through `docker exec`.

    A node that does not see the archive there gets it streamed, as `kind load` does: its mount
    is of a state directory deleted since (one made anew at the same path is another directory,
    which the running node does not see)."""
    archive = Path(nodes[0].owner_mount) / f"image-{os.getpid()}-{threading.get_ident()}.tar"
    try:
        cmd.run(["docker", "save", "--output", archive, image])
        in_node_path = f"{names.OWNER_MOUNT}/{archive.name}"
        sees = concurrently(lambda node: sees_file(node, in_node_path, archive.stat().st_size), nodes)

        def one(item):
            node, seen = item
            if seen:
                node.run([*IMPORT, in_node_path])
            else:
                stream_into(node.name, archive)

        concurrently(one, list(zip(nodes, sees)))
    finally:
        archive.unlink(missing_ok=True)


def sees_file(node, in_node_path, size):
    """Whether the node sees, through its mount, the file just written on the host (same size)."""
    result = node.run(["stat", "-c", "%s", in_node_path], check=False)
    return result.returncode == 0 and result.stdout.strip() == str(size)


def stream_into(container, archive, importer=IMPORT):
    """Import the archive into a node's (or a node image build's) containerd through `docker exec
    -i`, as `kind load` does; importer: the `ctr images import` command line, without its file."""
    with open(archive, "rb") as data:
        cmd.run(["docker", "exec", "-i", container, *importer, "-"], stdin=data)
