"""`invoke load IMAGE...`: images from the host's Docker into a cluster's nodes, with no registry.

The same path kindgpu takes for its own images (kindgpu.images.import_into): each image is saved
once into the state directory every node mounts, then imported by all the nodes that lack it at
once. `kind load docker-image` streams the whole image into each node in turn.

A node has an image when its containerd holds the image's name with the image ID the host's
Docker has for it: a rebuilt image under the same tag is loaded again, an unchanged one is not.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from . import images as node_images, nodes
from .errors import KindgpuError, Problem, SpecError
from .parallel import concurrently

IMAGES_FIELD = "IMAGE"  # the positional argument, as the problems name it


@dataclass
class Loaded:
    image: str
    loaded: list = field(default_factory=list)  # node names it went into
    present: list = field(default_factory=list)  # node names that had it already
    seconds: float = 0.0
    streamed: object = None  # images.Streamed: bytes, and where the time went

    def to_dict(self):
        out = {"image": self.image, "loaded": self.loaded, "present": self.present,
               "seconds": round(self.seconds, 2)}
        if self.streamed is not None:
            out.update(self.streamed.to_dict(), bytesPlaced=self.streamed.bytes * len(self.loaded))
        return out


def parse_images(value):
    """IMAGE[,IMAGE...] (commas or spaces): the names, in order, each once."""
    listed = [part for part in re.split(r"[,\s]+", value or "") if part]
    problems = [Problem(IMAGES_FIELD, f"{image!r} is a digest reference", "name the image by its tag (app:dev)")
                for image in listed if "@" in image]
    # invoke hands a positional argument whatever comes first, `--help` included.
    problems += [Problem(IMAGES_FIELD, f"{image!r} is not an image name",
                         "invoke load IMAGE[,IMAGE...] [--name NAME] [--workers 1,3]; the options: invoke --help load")
                 for image in listed if image.startswith("-")]
    if not listed:
        problems.append(Problem(IMAGES_FIELD, "no image given", "e.g. invoke load myapp:dev,sidecar:1"))
    if problems:
        raise SpecError(problems, title="invalid task flags")
    return list(dict.fromkeys(listed))


def parse_worker_numbers(value):
    """--workers 1,3: worker numbers as kind names the nodes (1 is <name>-worker, 3 <name>-worker3)."""
    if value in (None, ""):
        return None
    parts = [p for p in re.split(r"[,\s]+", str(value)) if p]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise SpecError([Problem("--workers", f"must be worker numbers separated by commas, got {value!r}",
                                 "e.g. --workers 1,3 (1 is <name>-worker, 3 is <name>-worker3)")],
                        title="invalid task flags")
    return sorted({int(p) for p in parts})


def worker_number(node, cluster):
    """kind's ordinal of a worker node: <cluster>-worker is 1, <cluster>-worker3 is 3."""
    suffix = node.name.removeprefix(f"{cluster}-worker")
    return int(suffix) if suffix.isdigit() else 1


def cluster_nodes(client, cluster, workers=None):
    """The nodes to load into: every node, or the workers numbered in `workers`."""
    found = sorted(nodes.cluster_nodes(client, cluster), key=lambda n: n.name)
    if not found:
        raise KindgpuError(f"cluster {cluster} does not exist", f"create it first: invoke up --name {cluster}")
    if not nodes.made_by_kindgpu(found):
        raise KindgpuError(f"kind cluster {cluster} was not made by kindgpu, so its nodes cannot see the "
                           "directory kindgpu loads images through",
                           f"use kind's own: kind load docker-image IMAGE --name {cluster}")
    stopped = [n.name for n in found if not n.running]
    if stopped:
        raise KindgpuError(f"node container(s) of {cluster} not running: {', '.join(stopped)}",
                           f"start them with `invoke up --name {cluster}`")
    if workers is None:
        return found
    by_number = {worker_number(n, cluster): n for n in found if n.role == "worker"}
    unknown = [n for n in workers if n not in by_number]
    if unknown:
        raise SpecError([Problem("--workers", f"cluster {cluster} has no worker {', '.join(map(str, unknown))}",
                                 f"its workers are {', '.join(map(str, sorted(by_number)))}")],
                        title="invalid task flags")
    return [by_number[n] for n in workers]


def local_images(client, listed):
    """{image: its ID in the host's Docker}; every image missing there is named, with the fix."""
    ids = {image: nodes.image_id(client, image) for image in listed}
    found = {image: image_id for image, image_id in ids.items() if image_id is not None}
    missing = [image for image, image_id in ids.items() if image_id is None]
    if missing:
        raise KindgpuError(f"not in this host's Docker: {', '.join(missing)}",
                           "build or pull it first (docker build -t NAME . / docker pull NAME), then load it")
    return found


def told(progress, reporter, nodes, every=10.0):
    """progress(Streamed, nodes done) as the step's spinner text, and as a line every `every`
    seconds (a long load says how far it is where there is no terminal, and under --json on stderr)."""
    start = time.monotonic()
    last = [start]

    def tell(streamed, done):
        text = (f"{streamed.bytes / 1e9:.2f} GB read from Docker, {done}/{nodes} node(s) done "
                f"({time.monotonic() - start:.0f}s)")
        progress(text)
        if time.monotonic() - last[0] >= every:
            last[0] = time.monotonic()
            reporter.note(f"   {text}")
    return tell


def load(cluster, listed, reporter, workers=None):
    """Load each image into the chosen nodes that lack it; a list of Loaded, one per image."""
    client = nodes.docker_client()
    targets = cluster_nodes(client, cluster, workers)
    ids = local_images(client, listed)
    held = dict(zip((n.name for n in targets), concurrently(node_images.node_image_ids, targets)))
    results = []
    for image, image_id in ids.items():
        ref = node_images.normalized(image)
        lacking = [n for n in targets if held[n.name].get(ref) != image_id]
        result = Loaded(image, [n.name for n in lacking], [n.name for n in targets if n not in lacking])
        if lacking:
            start = time.monotonic()
            with reporter.step("load", f"{image} into {len(lacking)} node(s)") as progress:
                result.streamed = node_images.import_into(lacking, image, told(progress, reporter, len(lacking)))
                after = concurrently(node_images.node_image_ids, lacking)
            result.seconds = time.monotonic() - start
            still = [n.name for n, have in zip(lacking, after) if have.get(ref) != image_id]
            if still:
                raise KindgpuError(f"{image} ({image_id[:19]}) is still not in {', '.join(still)} after the import",
                                   f"see `docker exec {still[0]} crictl images`")
        results.append(result)
    return results
