"""kindgpu's node image: the spec's nodeImage with what every node needs already inside.

Every `up` used to import the device plugin's image into each worker and restart each node's
containerd for CDI (kind's containerdConfigPatches). The derived image holds both, built once as
kind builds its own node images (`kind build node-image`): a container from the base image runs
containerd, the images are imported without unpacking, and the container is committed. Its tag is
a hash of its inputs, so it is built again only when one changes.

/var/lib/containerd is no VOLUME of the image: kind gives each node an anonymous volume at /var,
which Docker fills from the image's /var when it makes the container, so the nodes start with
the images in their containerd.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

from . import cmd, deviceplugin, images, names
from .errors import KindgpuError
from .nodes import image_id
from .parallel import concurrently
from .payloads import levels
from .toml_text import load_toml
from .wait import Seen, wait_for

# Docker's client (with simgpu.build, which imports it) is imported where used: listing the tasks
# must not pay for it.

REPOSITORY = "kindgpu/node"
# Only images carrying both are kindgpu's to list and remove.
LABEL_MANAGED = names.MANAGED_BY_LABEL
LABEL_NODE_IMAGE = "kindgpu.dev/node-image"  # its value: the inputs, as JSON
SPEC_SWITCH = "prepareNodeImage"
# Bump when the way the image is made changes: the tags change with it.
RECIPE = "1"
# As kind imports its own images into its node images (pkg/build/nodeimage/imageimporter.go):
# pinned, so kubelet's image GC never removes them; unpacked when a pod first runs them.
IMPORT = ["ctr", "--namespace=k8s.io", "images", "import", "--label=io.cri-containerd.pinned=pinned",
          "--all-platforms", "--no-unpack", "--digests"]
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CRI_V2 = "io.containerd.grpc.v1.cri"
CRI_V3 = "io.containerd.cri.v1.runtime"
# kind's node entrypoint and command, which the build container replaces with `sleep infinity`.
ENTRYPOINT = '["/usr/local/bin/entrypoint", "/sbin/init"]'
READY_TIMEOUT = 60


# Stopped, not killed mid-write: the commit takes its database as it is on disk. Once it has
# exited it stays a zombie (`sleep`, PID 1 here, reaps nothing).
STOP_CONTAINERD = ("pkill -x containerd; for i in $(seq 100); do ps -o stat= -C containerd | grep -qv '^Z' "
                   "|| exit 0; sleep 0.1; done; exit 1")

# Unpack an image into the node's snapshotter, as a pod's first start would: mounting it unpacks it.
UNPACK = ('set -e; d=$(mktemp -d); ctr --namespace=k8s.io images mount "$1" "$d" >/dev/null; '
          'ctr --namespace=k8s.io images unmount --rm "$d" >/dev/null; rmdir "$d"')


def enabled(spec: dict) -> bool:
    """Whether `up` makes the nodes from the derived image. No default in the schema (existing
    specs keep their hash): leaving it out means true."""
    return spec.get(SPEC_SWITCH) is not False


@dataclass(frozen=True)
class Inputs:
    """Everything the derived image is made of; its tag is their hash."""

    base: str  # the spec's nodeImage, as named
    base_id: str
    held: dict[str, str] = field(default_factory=dict)  # {image: image ID} put into its containerd
    cdi: bool = True  # containerd's CDI setting, which the GPU path needs
    recipe: str = RECIPE

    def to_json(self) -> str:
        return json.dumps({"baseId": self.base_id, "held": dict(sorted(self.held.items())), "cdi": self.cdi,
                           "recipe": self.recipe}, sort_keys=True, separators=(",", ":"))

    @property
    def tag(self) -> str:
        """kindgpu/node:<base's tag>-<hash of the inputs>. The base's name is there to be read,
        not hashed: the same image under another name is the same derived image."""
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()[:12]
        base_tag = self.base.rsplit("/", 1)[-1].partition(":")[2] or "latest"
        readable = "".join(c if c.isalnum() or c in "._-" else "-" for c in base_tag)[:60].strip(".-")
        return f"{REPOSITORY}:{readable + '-' if readable else ''}{digest}"


def held_images(plan) -> list[str]:
    """What every node needs: the device plugin's image and the visibility level's smoke image
    (for simulated GPUs the same one; under DRA, the DRA plugin's and that one)."""
    plugin = deviceplugin.image(plan)
    smoke = deviceplugin.smoke_image(plan) if plan.simulated else None
    wanted = [plugin, levels.image(plan.spec, levels.VISIBILITY.name, smoke)]
    return list(dict.fromkeys(wanted))


def inputs(plan, client) -> Inputs:
    """The derived image's inputs on this host. An image the host's Docker lacks is left out (the
    nodes pull it, as without the derived image); once the host has it, the tag changes."""
    base = plan.spec["nodeImage"]
    base_id = image_id(client, base)
    if base_id is None:
        raise KindgpuError(
            f"the node image {base} is not in the host's Docker, so kindgpu cannot build its node image from it",
            f"get it: `docker pull {base}` where a registry is reachable, or `docker load -i <archive>`; or name "
            "an image you have (`docker images`) with --node-image or KINDGPU_NODE_IMAGE")
    held = {name: found for name in held_images(plan) if (found := image_id(client, name))}
    return Inputs(base=base, base_id=base_id, held=held)


def ensure(plan, client, note) -> Inputs:
    """The derived image for this plan, built when missing (simulated GPUs: their plugin image
    first); note(text) is told when it is built, and how long that took."""
    if plan.simulated:
        deviceplugin.ensure_images(plan, client)
    wanted = inputs(plan, client)
    if image_id(client, wanted.tag) is None:
        note(f"building node image {wanted.tag} from {wanted.base} (once)")
        start = time.monotonic()
        build(wanted)
        note(f"built node image {wanted.tag} in {time.monotonic() - start:.1f}s")
    return wanted


def build(wanted: Inputs) -> None:
    """Run the base image with containerd alone, import the images, turn CDI on, commit."""
    argv = ["docker", "run", "--detach", "--entrypoint=sleep", "--security-opt", "seccomp=unconfined",
            "--label", f"{LABEL_MANAGED}=kindgpu", wanted.base_id, "infinity"]
    container = cmd.run(argv).stdout.strip()
    try:
        cmd.run(["docker", "exec", container, "bash", "-c", "nohup containerd >/dev/null 2>&1 &"])
        wait_for(lambda: Seen(done=cmd.run(["docker", "exec", container, "ctr", "version"], check=False)
                              .returncode == 0, last="ctr version fails"),
                 what="containerd in the node image's build container", timeout=READY_TIMEOUT, interval=0.2)
        for name in wanted.held:  # streamed from Docker, as into nodes: no archive on the host
            images.stream_into(container, name, IMPORT)
        config = cmd.run(["docker", "exec", container, "cat", CONTAINERD_CONFIG]).stdout
        cmd.run(["docker", "exec", "-i", container, "sh", "-c", f"cat > {CONTAINERD_CONFIG}"],
                input=with_cdi(config, wanted.base))
        cmd.run(["docker", "exec", container, "sh", "-c", STOP_CONTAINERD])
        repository, _, tag = wanted.tag.partition(":")
        cmd.run(["docker", "commit", "--change", f"ENTRYPOINT {ENTRYPOINT}",
                 "--change", f"LABEL {LABEL_MANAGED}=kindgpu",
                 "--change", f"LABEL {LABEL_NODE_IMAGE}={json.dumps(wanted.to_json())}",
                 container, f"{repository}:{tag}"])
    finally:
        cmd.run(["docker", "rm", "--force", "--volumes", container], check=False)


def unpack(nodes, held) -> None:
    """Unpack the held images in every node at once. The image holds them packed (as kind's own):
    unpacked in the image, they would cost as much again in every node's copy of /var. Left to
    the first pod, 8 nodes unpacking at once delayed the device plugin by seconds; the create step
    runs this while kind sets up the control plane, when the workers are idle."""
    refs = [images.normalized(name) for name in held]
    concurrently(lambda node: [node.run(["sh", "-c", UNPACK, "unpack", ref]) for ref in refs], list(nodes))


def with_cdi(config: str, base: str) -> str:
    """containerd's config with CDI on, as kindgpu's containerdConfigPatches make it (render.py).

    kind's node images write the v2 format, whose CRI table gets the two settings; containerd 2's
    own format (version 3) has CDI on unless turned off. Anything else is refused: a wrong config
    would keep containerd from starting in every node."""
    try:
        doc = load_toml(config)
    except ValueError as err:  # tomllib.TOMLDecodeError
        raise unknown_config(base, f"it is not valid TOML ({err})") from err
    plugins = doc.get("plugins", {})
    if doc.get("version") == 3:
        if plugins.get(CRI_V3, {}).get("enable_cdi", True) is not True:
            raise unknown_config(base, "it turns CDI off")
        return config
    if doc.get("version") != 2:
        raise unknown_config(base, f"its version is {doc.get('version')!r}, not 2 or 3")
    header = f'[plugins."{CRI_V2}"]'
    settings = 'enable_cdi = true\ncdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]\n'
    lines = config.splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if line.strip() == header), None)
    if "enable_cdi" in plugins.get(CRI_V2, {}) or "cdi_spec_dirs" in plugins.get(CRI_V2, {}):
        raise unknown_config(base, "it sets CDI itself")
    patched = (config.rstrip("\n") + f"\n\n{header}\n{settings}" if at is None
               else "".join([*lines[:at + 1], settings, *lines[at + 1:]]))
    cri = load_toml(patched).get("plugins", {}).get(CRI_V2, {})
    if cri.get("enable_cdi") is not True:
        raise unknown_config(base, "CDI could not be turned on in it")
    return patched


def unknown_config(base: str, why: str) -> KindgpuError:
    return KindgpuError(f"the containerd config of node image {base} is not one kindgpu can turn CDI on in: {why}",
                        f"set `{SPEC_SWITCH}: false` in the spec (kind's containerdConfigPatches then turn it on)")


@dataclass(frozen=True)
class Built:
    """A node image kindgpu built, as `invoke node-images` lists it."""

    tag: str
    image_id: str
    size: int
    used_by: tuple[str, ...]  # containers made from it


def built(client) -> list[Built]:
    """The node images kindgpu built on this host (its two labels), newest first."""
    found = client.images.list(filters={"label": [f"{LABEL_MANAGED}=kindgpu", LABEL_NODE_IMAGE]})
    users: dict[str, list[str]] = {}
    for container in client.containers.list(all=True):
        users.setdefault(container.attrs.get("Image", ""), []).append(container.name)
    out = [Built(tag=next((t for t in image.tags if t.startswith(REPOSITORY + ":")), image.short_id),
                 image_id=image.id, size=image.attrs.get("Size", 0), used_by=tuple(sorted(users.get(image.id, []))))
           for image in found]
    return sorted(out, key=lambda b: b.tag)


def remove_unused(client, progress) -> tuple[list[Built], list[Built]]:
    """Remove the node images kindgpu built that no container uses: (removed, kept)."""
    from docker.errors import APIError

    removed, kept = [], []
    for image in built(client):
        if image.used_by:
            kept.append(image)
            continue
        progress(f"removing {image.tag}")
        try:
            client.images.remove(image.tag)  # by its tag: another name on it stays
        except APIError:  # a container made from it since, or another tag on it: left as it is
            kept.append(image)
            continue
        removed.append(image)
    return removed, kept
