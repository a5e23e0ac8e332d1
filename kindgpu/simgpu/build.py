"""Build the simulated-GPU device plugin image, online or without any registry.

Online: images/sim-device-plugin/Dockerfile (python slim image and PyPI).
Offline: a Debian bookworm rootfs from debootstrap with Debian's python3-grpcio,
python3-protobuf, python3-grpc-tools and busybox-static, `docker import`ed as a base image, then
images/sim-device-plugin/Dockerfile.offline adds the plugin and generates its gRPC code.
The debootstrap tarball is cached, so only the first offline build needs a Debian mirror.

    python -m kindgpu.simgpu.build [--online]    # prints the image tag
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import docker
import docker.errors

from .. import cmd
from ..errors import KindgpuError
from ..nodes import image_id

IMAGE_REPO = "kindgpu/sim-device-plugin"
BASE_REPO = "kindgpu/sim-device-plugin-base"
CONTEXT_DIR = Path(__file__).resolve().parent  # what the Dockerfiles COPY from
IMAGE_FILES = ("api.proto", "plugin.py", "nvidia-smi.sh")
DOCKERFILES_DIR = CONTEXT_DIR.parents[1] / "images" / "sim-device-plugin"

SUITE = "bookworm"
# python3-grpc-tools imports pkg_resources without depending on it. busybox-static: the static
# /bin/busybox the plugin hands GPU containers, to run the fake nvidia-smi in any image.
BASE_PACKAGES = (
    "python3", "python3-grpcio", "python3-protobuf", "python3-grpc-tools", "python3-pkg-resources",
    "busybox-static",
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Left out of the image: nothing in it (plugin, fake nvidia-smi, smoke payloads) reads them, and
# every node pays for each MB when the image is loaded into it (about 30 ms per MB per node, 2 cores).
UNUSED_DIRS = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/zoneinfo",
               "var/cache", "var/lib/apt/lists")
UNUSED_PACKAGES = ("grpc_tools", "pkg_resources", "gconv", "pydoc_data")  # build-time only, or unused

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("KINDGPU_HARNESS_CACHE") or "/var/cache/kindgpu-harness")


def _short_hash(*chunks: bytes) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(hashlib.sha256(chunk).digest())
    return digest.hexdigest()[:10]


def _package_version() -> str:
    try:
        return importlib.metadata.version("kindgpu")
    except importlib.metadata.PackageNotFoundError:
        return "dev"  # a checkout that was never pip-installed


def _dockerfile(offline: bool) -> Path:
    path = DOCKERFILES_DIR / ("Dockerfile.offline" if offline else "Dockerfile")
    if not path.is_file():
        raise KindgpuError(f"{path} is missing", "build the plugin image from a kindgpu checkout")
    return path


def base_image_tag() -> str:
    return f"{BASE_REPO}:{SUITE}-{_short_hash(SUITE.encode(), ' '.join(BASE_PACKAGES).encode())}"


def image_tag() -> str:
    """kindgpu's version plus a hash of everything that goes into the image: edits rebuild it."""
    inputs = [(CONTEXT_DIR / name).read_bytes() for name in IMAGE_FILES]
    inputs += [_dockerfile(offline).read_bytes() for offline in (False, True)]
    inputs.append(base_image_tag().encode())
    inputs.append(Path(__file__).read_bytes())  # how it is built, pruning included
    return f"{IMAGE_REPO}:{_package_version()}-{_short_hash(*inputs)}"


def _has_image(client, tag) -> bool:
    return image_id(client, tag) is not None


def ensure_image(client: docker.DockerClient, offline: bool = True) -> str:
    """Build the plugin image unless this exact version is already there; return its tag."""
    tag = image_tag()
    if _has_image(client, tag):
        return tag
    buildargs = {"BASE_IMAGE": ensure_base_image(client)} if offline else None
    log.info("building %s", tag)
    try:
        built, _ = client.images.build(
            path=str(CONTEXT_DIR),
            dockerfile=str(_dockerfile(offline)),
            buildargs=buildargs,
            rm=True,
        )
    except docker.errors.BuildError as error:
        output = "".join(line.get("stream") or line.get("error") or "" for line in error.build_log)
        raise KindgpuError(f"building {tag} failed: {error.msg}\n{output[-3000:]}") from error
    try:
        flatten(client, built, tag)
    finally:
        client.images.remove(built.id)
    return tag


def unused(member_name: str) -> bool:
    name = member_name.lstrip("./")
    if name.startswith("usr/share/doc/") and name.endswith("/copyright"):
        return False  # licences stay
    return (any(name == d or name.startswith(d + "/") for d in UNUSED_DIRS)
            or any(part in UNUSED_PACKAGES for part in name.split("/")))


def flatten(client, built, tag):
    """Tag `built` as one layer without the unused files, keeping its command and settings."""
    config = built.attrs["Config"]
    changes = [f"ENV {key}={json.dumps(value)}" for key, _, value in
               (e.partition("=") for e in config.get("Env") or [])]
    changes += [f"LABEL {k}={json.dumps(v)}" for k, v in (config.get("Labels") or {}).items()]
    if config.get("WorkingDir"):
        changes.append(f"WORKDIR {config['WorkingDir']}")
    if config.get("Cmd"):
        changes.append(f"CMD {json.dumps(config['Cmd'])}")
    container = client.containers.create(built.id)
    try:
        with tempfile.TemporaryDirectory(prefix="kindgpu-sim-image-") as tmp:
            exported, kept = Path(tmp) / "exported.tar", Path(tmp) / "rootfs.tar"
            with exported.open("wb") as out:
                for chunk in container.export():
                    out.write(chunk)
            with tarfile.open(exported) as src, tarfile.open(kept, "w") as dst:
                for member in src:
                    if not unused(member.name):
                        dst.addfile(member, src.extractfile(member) if member.isfile() else None)
            repository, _, version = tag.partition(":")
            client.api.import_image_from_file(str(kept), repository=repository, tag=version, changes=changes)
    finally:
        container.remove()
    if not _has_image(client, tag):
        raise KindgpuError(f"docker import did not produce {tag}")


def ensure_base_image(client: docker.DockerClient) -> str:
    """The imported debootstrap rootfs; made from the cached tarball when missing."""
    tag = base_image_tag()
    if not _has_image(client, tag):
        tarball = ensure_rootfs_tarball()
        log.info("importing %s as %s", tarball, tag)
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(str(tarball), repository=repository, tag=version)
        if not _has_image(client, tag):
            raise KindgpuError(f"docker import of {tarball} did not produce {tag}")
    return tag


def ensure_rootfs_tarball() -> Path:
    """Debootstrap the base rootfs into a cached tarball, unless it is cached already."""
    tarball = cache_dir() / "sim-device-plugin" / f"{base_image_tag().split(':')[1]}.tar.gz"
    if tarball.is_file():
        return tarball
    if shutil.which("debootstrap") is None:
        raise KindgpuError("debootstrap is not installed", "apt-get install debootstrap")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    mirror = os.environ.get("KINDGPU_DEBIAN_MIRROR") or DEFAULT_MIRROR
    work = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=tarball.parent))
    rootfs = work / "rootfs"
    try:
        log.info("debootstrap %s from %s (a few minutes)", SUITE, mirror)
        cmd.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             SUITE, rootfs, mirror],
            timeout=1800,
        )
        # Downloaded packages and indexes only make the image bigger.
        for leftover in ["var/cache/apt/archives", "var/lib/apt/lists"]:
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        partial = work / "rootfs.tar.gz"
        cmd.run(["tar", "--numeric-owner", "-C", rootfs, "-czf", partial, "."], timeout=600)
        os.replace(partial, tarball)  # complete or absent: an interrupted run never leaves half
    finally:
        _remove_tree(work)
    return tarball


def _remove_tree(path: Path):
    """rmtree, except beneath a mount (debootstrap mounts /proc in the rootfs while it runs)."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        mounted = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    if mounted:
        log.warning("not removing %s: %s still mounted", path, ", ".join(mounted))
        return
    shutil.rmtree(path, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m kindgpu.simgpu.build", description="Build the simulated-GPU plugin image."
    )
    parser.add_argument("--online", action="store_true", help="use the python slim image and PyPI")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        print(ensure_image(docker.from_env(), offline=not args.online))
    except KindgpuError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
