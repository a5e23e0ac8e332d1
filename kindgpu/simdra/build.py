"""Build the simulated-GPU DRA kubelet plugin's image, locally and without a registry.

The plugin (main.go and its neighbours) is a static Go binary (CGO_ENABLED=0) built from its
Go modules (the Go module proxy, or Go's module cache once it holds them). The image is one layer
`docker import`ed from a small rootfs: the binary, the fake nvidia-smi (../simgpu/nvidia-smi.sh)
and the static busybox that runs it, taken from the Debian rootfs the simulated device plugin's
image is made from (simgpu.build.ensure_rootfs_tarball, cached). Its tag holds a hash of all of
that, so an edit makes a new image and anything else reuses it.

    python -m kindgpu.simdra.build    # prints the image tag
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import sys
import tarfile
import tempfile
from pathlib import Path

from .. import cmd
from ..errors import KindgpuError
from ..simgpu import build as simgpu_build

IMAGE_REPO = "kindgpu/sim-dra-plugin"
SOURCE_DIR = Path(__file__).resolve().parent
NVIDIA_SMI = SOURCE_DIR.parent / "simgpu" / "nvidia-smi.sh"
# In the image; the DaemonSet (manifest.py) names them.
BINARY = "/usr/local/bin/kindgpu-sim-dra"
SOURCES_DIR = "/opt/kindgpu"  # nvidia-smi.sh and busybox, which the plugin copies to the node for CDI
BUSYBOX_IN_ROOTFS = "./usr/bin/busybox"  # Debian's busybox-static (bookworm merges /bin into /usr/bin)
# How the harness builds Go for the nodes (hack/harness/build-k8s.sh): the sum database does not
# know every Kubernetes staging module version the proxy serves.
GO_ENV = {"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false", "GONOSUMDB": "k8s.io/*,sigs.k8s.io/*"}
GO_FALLBACK = "/usr/local/go/bin/go"
BUILD_TIMEOUT = 1800  # a cold Go build cache on 2 cores takes minutes

log = logging.getLogger(__name__)


def go_sources() -> list[Path]:
    """What the binary is built from: go.mod, go.sum and the Go files but tests."""
    files = [SOURCE_DIR / "go.mod", SOURCE_DIR / "go.sum"]
    files += sorted(p for p in SOURCE_DIR.glob("*.go") if not p.name.endswith("_test.go"))
    return files


def image_tag() -> str:
    """kindgpu's version plus a hash of everything that goes into the image: edits rebuild it."""
    digest = hashlib.sha256()
    for path in [*go_sources(), NVIDIA_SMI, Path(__file__)]:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    digest.update(simgpu_build.base_image_tag().encode())  # where busybox comes from
    return f"{IMAGE_REPO}:{package_version()}-{digest.hexdigest()[:10]}"


def package_version() -> str:
    try:
        return importlib.metadata.version("kindgpu")
    except importlib.metadata.PackageNotFoundError:
        return "dev"  # a checkout that was never pip-installed


def has_image(client, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def go_binary() -> str:
    found = cmd.which("go") or (GO_FALLBACK if Path(GO_FALLBACK).is_file() else None)
    if not found:
        raise KindgpuError("Go is not installed: the simulated DRA plugin is built from its Go source",
                           "install Go 1.26 or newer (https://go.dev/dl/), or put it on PATH")
    return found


def build_binary(out: Path) -> None:
    """A static binary of the plugin at `out`."""
    env = {**os.environ, **GO_ENV}
    cmd.run([go_binary(), "-C", str(SOURCE_DIR), "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "."],
            env=env, timeout=BUILD_TIMEOUT)


def busybox_bytes() -> bytes:
    """The static busybox of the Debian rootfs the simulated device plugin's image is made from."""
    tarball = simgpu_build.ensure_rootfs_tarball()
    with tarfile.open(tarball) as rootfs:
        member = rootfs.getmember(BUSYBOX_IN_ROOTFS)
        handle = rootfs.extractfile(member)
        if handle is None:
            raise KindgpuError(f"{BUSYBOX_IN_ROOTFS} in {tarball} is not a file",
                               f"remove {tarball} so that it is made again")
        return handle.read()


def rootfs_tar(binary: bytes, busybox: bytes, nvidia_smi: bytes) -> bytes:
    """The image's only layer: the plugin, and what it hands pods."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        def add(path: str, data: bytes | None, mode: int):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.mode, info.mtime = mode, 0
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        for directory in ("usr", "usr/local", "usr/local/bin", "opt", SOURCES_DIR, "tmp"):
            add(directory, None, 0o1777 if directory == "tmp" else 0o755)
        add(BINARY, binary, 0o755)
        add(f"{SOURCES_DIR}/busybox", busybox, 0o755)
        add(f"{SOURCES_DIR}/nvidia-smi.sh", nvidia_smi, 0o755)
    return out.getvalue()


def ensure_image(client) -> str:
    """Build the plugin image unless this exact version is already there; return its tag."""
    tag = image_tag()
    if has_image(client, tag):
        return tag
    log.info("building %s", tag)
    with tempfile.TemporaryDirectory(prefix="kindgpu-sim-dra-") as work:
        binary = Path(work) / "kindgpu-sim-dra"
        build_binary(binary)
        layer = Path(work) / "rootfs.tar"
        layer.write_bytes(rootfs_tar(binary.read_bytes(), busybox_bytes(), NVIDIA_SMI.read_bytes()))
        repository, _, version = tag.partition(":")
        changes = [f"CMD {json.dumps([BINARY])}", f"ENV KINDGPU_SIM_SOURCES={SOURCES_DIR}",
                   "ENV PATH=/usr/local/bin:/usr/bin:/bin",
                   'LABEL app.kubernetes.io/managed-by="kindgpu"']
        client.api.import_image_from_file(str(layer), repository=repository, tag=version, changes=changes)
    if not has_image(client, tag):
        raise KindgpuError(f"docker import did not produce {tag}")
    return tag


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kindgpu.simdra.build",
                                     description="Build the simulated-GPU DRA plugin image.")
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    import docker

    try:
        print(ensure_image(docker.from_env()))
    except KindgpuError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
