"""Images from the host's Docker into kind nodes, so that nothing has to be pulled."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import cmd, names
from .errors import CommandError
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
# ctr's own import (containerd 2's default goes through its transfer service, which took 2.2 times
# as long for a 2 GiB image: docs/benchmarks.md), where the node's ctr has it.
LOCAL = "--local"
# Once unpacked, a layer's packed copy is left to containerd's GC, as kind's node config does for
# pulls (discard_unpacked_layers): otherwise every node keeps each image twice.
DISCARD = "--discard-unpacked-layers"
CHUNK = 1 << 20
AHEAD = 64  # chunks the fastest node may be ahead of the slowest: at most 64 MiB held per node
# In a node: whether it sees the pipe through kindgpu's mount, and what its ctr can do.
PROBE = ('test -p "$1" && echo pipe; h=$(ctr images import --help 2>/dev/null); '
         'for f in --local --discard-unpacked-layers; do case "$h" in *"$f "*) echo "$f";; esac; done; true')


@dataclass
class Streamed:
    """One image streamed into nodes: how many bytes, and where the time went."""

    image: str
    nodes: list[str]
    bytes: int = 0  # the archive's size, read once from Docker
    save_s: float = 0.0  # until Docker's first byte: `docker save` copies the layers before it streams
    stream_s: float = 0.0  # from the first byte to the last
    finish_s: float = 0.0  # after the last byte, until every node's import (and unpack) ended
    piped: list[str] = field(default_factory=list)  # nodes that read through the shared mount

    @property
    def seconds(self) -> float:
        return self.save_s + self.stream_s + self.finish_s

    def to_dict(self) -> dict:
        return {"bytes": self.bytes, "nodes": len(self.nodes), "seconds": round(self.seconds, 2),
                "phases": {"save": round(self.save_s, 2), "stream": round(self.stream_s, 2),
                           "finish": round(self.finish_s, 2)}}


def import_into(nodes, image, progress=None) -> Streamed:
    """Stream `docker save` once into every node's containerd at once: no archive is written.

    Each node reads its own named pipe in the directory kindgpu mounts into every node; the
    host's one reader copies Docker's stream into all of them. A node that does not see the pipe
    (its mount is of a state directory deleted since) gets the stream through `docker exec -i`,
    as `kind load` does. progress(Streamed, nodes_done) is called as bytes and nodes are done."""
    mount = nodes[0].owner_mount if nodes else None
    pipes = {}
    try:
        if mount and Path(mount).is_dir():
            base = f"image-{os.getpid()}-{threading.get_ident()}"
            for i, node in enumerate(nodes):
                try:
                    os.mkfifo(Path(mount) / f"{base}-{i}.pipe", 0o600)
                except OSError:  # a filesystem without named pipes: every node gets the stream
                    break
                pipes[node.name] = Path(mount) / f"{base}-{i}.pipe"

        def probe(node):
            path = pipes.get(node.name)
            in_node = f"{names.OWNER_MOUNT}/{path.name}" if path else ""
            return in_node, node.run(["sh", "-c", PROBE, "probe", in_node], check=False).stdout.split()

        targets = []
        for node, (in_node, said) in zip(nodes, concurrently(probe, nodes)):
            flags = [f for f in (LOCAL, DISCARD) if f in said]
            targets.append(Target(node.name, [*IMPORT, *flags], pipes.get(node.name) if "pipe" in said else None,
                                  in_node))
        return stream(image, targets, progress)
    finally:
        for path in pipes.values():
            path.unlink(missing_ok=True)


@dataclass
class Target:
    """Where one stream goes: a container, its `ctr images import` command line (without its
    input), and the named pipe it reads (host path, and the same in the container), if any."""

    container: str
    importer: list[str]
    pipe: Path | None = None
    in_container: str = ""


def stream(image, targets, progress=None) -> Streamed:
    """Read `docker save image` once and write it into every target's importer at once."""
    result = Streamed(image, [t.container for t in targets], piped=[t.container for t in targets if t.pipe])
    procs, queues, failed = [], [], {}
    start = time.monotonic()
    docker = cmd.which("docker") or "docker"  # as cmd.run finds it
    for t in targets:
        argv = ["docker", "exec", *([] if t.pipe else ["-i"]), t.container, *t.importer,
                t.in_container if t.pipe else "-"]
        out = tempfile.TemporaryFile()
        procs.append((subprocess.Popen([docker, *argv[1:]], stdin=subprocess.DEVNULL if t.pipe else subprocess.PIPE,
                                       stdout=out, stderr=subprocess.STDOUT), out, argv))
        queues.append(queue.Queue(AHEAD))
    writers = [threading.Thread(target=write_all, args=(i, t, proc, q, failed), daemon=True)
               for i, (t, (proc, _, _), q) in enumerate(zip(targets, procs, queues))]
    for w in writers:
        w.start()
    save_err = tempfile.TemporaryFile()
    save = subprocess.Popen([docker, "save", image], stdout=subprocess.PIPE, stderr=save_err, bufsize=0)
    first = last_told = None
    finished = False
    try:
        while chunk := save.stdout.read(CHUNK):
            now = time.monotonic()
            if first is None:
                first = now
                result.save_s = now - start
            result.bytes += len(chunk)
            for i, q in enumerate(queues):
                if i not in failed:
                    put(q, chunk, i, failed)
            if progress and (last_told is None or now - last_told >= 0.5):
                last_told = now
                progress(result, 0)
        finished = True
    finally:
        if not finished:  # interrupted: nobody reads Docker's stream or fills the pipes any more
            for proc in [save, *(p for p, _, _ in procs)]:
                proc.kill()
            for q in queues:
                drain(q)
        for q in queues:
            q.put(None)
        save.wait()
    ended = time.monotonic()
    result.stream_s = ended - (first or ended)
    if first is None:
        result.save_s = ended - start
    for w in writers:
        w.join()
    done = 0
    for proc, _, _ in procs:
        proc.wait()
        done += 1
        if progress:
            progress(result, done)
    result.finish_s = time.monotonic() - ended
    if save.returncode != 0:
        save_err.seek(0)
        raise CommandError(["docker", "save", image], save.returncode, save_err.read().decode(errors="replace"))
    for proc, out, argv in procs:
        if proc.returncode != 0:
            out.seek(0)
            raise CommandError(argv, proc.returncode, out.read().decode(errors="replace")[-3000:])
    return result


def drain(q):
    """Empty a writer's queue, so that the None that ends it fits."""
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def put(q, chunk, i, failed):
    """Queue a chunk for writer i, unless it failed meanwhile (then it reads no more)."""
    while i not in failed:
        try:
            q.put(chunk, timeout=0.2)
            return
        except queue.Full:
            continue


def write_all(index, target, proc, q, failed):
    """Write the queued chunks into the target's pipe (or the importer's stdin) until None."""
    fd = None
    try:
        fd = open_pipe(target.pipe, proc) if target.pipe else proc.stdin.fileno()
        while (chunk := q.get()) is not None:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
    except OSError as err:  # the importer ended early: its exit status says why
        failed[index] = err
        while q.get() is not None:
            pass
    finally:
        if target.pipe is None:
            proc.stdin.close()
        elif fd is not None:
            os.close(fd)


def open_pipe(path, proc):
    """Open the named pipe for writing once the importer has opened it for reading (or ended)."""
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO or proc.poll() is not None:
                raise
            time.sleep(0.02)
            continue
        os.set_blocking(fd, True)
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)
        except OSError:  # above /proc/sys/fs/pipe-max-size: the default size only slows it
            pass
        return fd


def stream_into(container, image, importer=IMPORT) -> Streamed:
    """Import `image` into one container's containerd through `docker exec -i` (a node image's
    build container); importer: the `ctr images import` command line, without its input, to
    which --local is added where that container's ctr has it."""
    said = cmd.run(["docker", "exec", container, "sh", "-c", PROBE, "probe", ""], check=False).stdout.split()
    return stream(image, [Target(container, [*importer, *([LOCAL] if LOCAL in said else [])])])
