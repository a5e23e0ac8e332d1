"""Docker daemon checks, through the docker SDK, and who owns the cluster name."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field

from .. import names, versions
from ..nodes import has_owner_mount, image_id, short_error
from ..toml_text import load_toml
from .model import Check, Status
from .nvidia import SIMULATED

RUNTIME_FIX = (
    "sudo nvidia-ctk runtime configure --runtime=docker --set-as-default && "
    "sudo systemctl restart docker"
)
GIB = 1024**3
NODE_IMAGE_GIB = 2.0  # kindest/node, unpacked
PER_NODE_GIB = 1.0  # a node's writable layer and the images pulled inside it
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
GOOD_STORAGE = {"overlay2", "overlayfs", "fuse-overlayfs"}
KIND_NAME_RE = re.compile(r"^[a-z0-9.-]+$")  # what kind itself accepts


@dataclass
class DockerFacts:
    info: dict = field(default_factory=dict)
    containers: list = field(default_factory=list)  # node containers labelled with the name
    error: Exception | None = None
    free_bytes: int | None = None
    node_image: dict = field(default_factory=dict)  # {"present": bool, "containerd": "1.7.24"|None}


def probe(request) -> DockerFacts:
    """One client, two API calls: /info and the containers labelled with the cluster name."""
    try:
        import docker  # here, not at the top: a host without Docker's client is a finding, not a crash
    except ModuleNotFoundError as e:
        return DockerFacts(error=e)
    try:
        if request.docker_url:
            client = docker.DockerClient(base_url=request.docker_url, version="auto", timeout=10)
        else:
            client = docker.from_env(version="auto", timeout=10)
        try:
            info = client.api.info()
            containers = client.api.containers(
                all=True, filters={"label": f"{names.KIND_CLUSTER_LABEL}={request.cluster_name}"}
            )
            node_image = probe_node_image(client, request.node_image) if request.node_image else {}
        finally:
            client.close()
    except docker.errors.DockerException as e:
        return DockerFacts(error=e)
    return DockerFacts(info=info, containers=containers, free_bytes=free_space(info), node_image=node_image)


def probe_node_image(client, image):
    """Is the node image local, and which containerd does it carry (it decides CDI's default)?"""
    import docker

    if image_id(client, image) is None:
        return {"present": False, "containerd": None, "kubernetes": versions.image_kubernetes(image)}
    kubernetes = versions.image_kubernetes(image, client)
    config_version = containerd_config_version(versions.read_image_file(client, image, CONTAINERD_CONFIG))
    try:
        out = client.containers.run(image, ["--version"], entrypoint="containerd", remove=True,
                                    network_mode="none", stderr=True).decode(errors="replace")
    except docker.errors.DockerException:
        return {"present": True, "containerd": None, "kubernetes": kubernetes, "config_version": config_version}
    return {"present": True, "containerd": parse_containerd_version(out), "kubernetes": kubernetes,
            "config_version": config_version}


def containerd_config_version(text: str):
    """The `version` of a containerd config (kind's images write 2; containerd 2's own format is 3); None
    when there is no config or it is not TOML."""
    try:
        return load_toml(text).get("version") if text else None
    except ValueError:
        return None


def parse_containerd_version(text):
    """'containerd github.com/containerd/containerd/v2 v2.3.7 <commit>' -> '2.3.7'."""
    m = re.search(r"\sv?(\d+\.\d+\.\d+\S*)", text)
    return m.group(1) if m else None


def free_space(info):
    root = info.get("DockerRootDir")
    try:
        st = os.statvfs(root)
    except (TypeError, OSError):  # no root dir reported, or the daemon is on another machine
        return None
    return st.f_bavail * st.f_frsize


def unreachable(error) -> Check:
    text = str(error)
    if isinstance(error, ModuleNotFoundError):
        return Check("docker", "Docker daemon", Status.FAIL,
                     "the docker Python package is not installed",
                     "pip install 'docker>=7.0'")
    if "Permission denied" in text:
        return Check(
            "docker", "Docker daemon", Status.FAIL,
            "permission denied on the Docker socket",
            'sudo usermod -aG docker "$USER" && newgrp docker',
            "Your user may not talk to dockerd; join the docker group (or run as root)",
        )
    hint = "Start dockerd"
    if os.environ.get("DOCKER_HOST"):
        hint += f" (DOCKER_HOST={os.environ['DOCKER_HOST']})"
    return Check(
        "docker", "Docker daemon", Status.FAIL,
        f"daemon not reachable: {short_error(text)}",
        "sudo systemctl start docker",
        hint + "; install Docker Engine first if it is missing: https://docs.docker.com/engine/install/",
    )


def checks(request, facts: DockerFacts) -> list[Check]:
    if facts.error is not None:
        skipped = "Docker daemon not reachable"
        return [
            unreachable(facts.error),
            Check("docker-nvidia-runtime", "Docker: nvidia default runtime", Status.SKIP, skipped),
            Check("node-image", "Node image: containerd CDI", Status.SKIP, skipped),
            Check("docker-cgroup", "Docker: cgroups", Status.SKIP, skipped),
            Check("docker-storage", "Docker: storage", Status.SKIP, skipped),
        ]
    info = facts.info
    return [
        Check(
            "docker", "Docker daemon", Status.PASS,
            f"Docker {info.get('ServerVersion', '?')} on {info.get('OperatingSystem', '?')}",
            details={"server_version": info.get("ServerVersion")},
        ),
        runtime_check(request, info),
        node_image_check(request, facts.node_image),
        cgroup_check(info, facts.node_image.get("kubernetes")),
        storage_check(request, info, facts.free_bytes),
    ]


def runtime_check(request, info) -> Check:
    title = "Docker: nvidia default runtime"
    runtimes = sorted((info.get("Runtimes") or {}).keys())
    default = info.get("DefaultRuntime", "")
    details = {"runtimes": runtimes, "default_runtime": default}
    found = f"runtimes: {', '.join(runtimes) or 'none'}; default: {default or '?'}"
    if request.simulate:
        return Check("docker-nvidia-runtime", title, Status.SKIP, f"{found}; {SIMULATED}",
                     details=details)
    hint = "kind cannot pass --gpus to its nodes, so the nvidia runtime must be Docker's default"
    if "nvidia" not in runtimes:
        return Check("docker-nvidia-runtime", title, Status.FAIL,
                     f"no nvidia runtime ({found})", RUNTIME_FIX, hint, details)
    if default != "nvidia":
        return Check("docker-nvidia-runtime", title, Status.FAIL,
                     f"nvidia runtime present but the default is {default or '?'}",
                     RUNTIME_FIX, hint, details)
    return Check("docker-nvidia-runtime", title, Status.PASS, found, details=details)


def node_image_check(request, found) -> Check:
    """Pods get their GPUs through CDI in the nodes' containerd: say which containerd, and that
    kindgpu turns CDI on (containerd 1.7, in kindest/node images of kind v0.26 and older, has it off)."""
    title = "Node image: containerd CDI"
    image = request.node_image
    if request.simulate or not image:
        return Check("node-image", title, Status.SKIP, f"{image or 'no node image'}; {SIMULATED}")
    if not found.get("present"):
        return Check("node-image", title, Status.WARN, f"{image} is not in the local Docker",
                     f"docker pull {shlex.quote(image)}",
                     "kind pulls it when it creates the cluster; without a registry, load it first "
                     "(docker load)")
    version = found.get("containerd")
    if version is None:
        return Check("node-image", title, Status.WARN, f"{image}: its containerd did not say its version",
                     hint="kindgpu turns CDI on (enable_cdi) in every node's containerd; it needs 1.7 or later")
    major_minor = tuple(int(x) for x in version.split(".")[:2])
    details = {"containerd": version, "config_version": found.get("config_version")}
    if found.get("config_version") not in (None, 2, 3):
        return Check("node-image", title, Status.FAIL,
                     f"{image}: its containerd config is version {found['config_version']!r}, which kindgpu cannot "
                     "turn CDI on in (it knows versions 2 and 3)",
                     hint="Use a kindest/node image (kind's own write version 2)", details=details)
    if major_minor < (1, 7):
        return Check("node-image", title, Status.FAIL, f"{image}: containerd {version} has no CDI",
                     hint="Use a kindest/node image of kind v0.20 or later (containerd 1.7+)", details=details)
    default = "on by default" if major_minor >= (2, 0) else "off by default"
    return Check("node-image", title, Status.PASS,
                 f"{image}: containerd {version}, CDI {default}; kindgpu enables it in every node",
                 details=details)


def cgroup_check(info, kubernetes=None) -> Check:
    """cgroup v1 works, with a warning; from Kubernetes 1.35 only because kindgpu tells the kubelet to."""
    version = str(info.get("CgroupVersion", "?"))
    driver = info.get("CgroupDriver", "?")
    found = f"cgroup v{version}, driver {driver}"
    details = {"cgroup_version": version, "cgroup_driver": driver}
    if version == "1":
        runtime = versions.Runtime(kubernetes, 1)
        details["kubelet_override"] = runtime.needs_cgroup_v1_override
        why = ("Kubernetes deprecated cgroup v1 (v1.31) and from v1.35 its kubelet refuses it unless told; "
               "boot with cgroup v2")
        if runtime.needs_cgroup_v1_override:
            found += (f"; the kubelet of Kubernetes {versions.show(kubernetes)} refuses it unless told: "
                      "kindgpu sets failCgroupV1: false in the kind config")
        return Check("docker-cgroup", "Docker: cgroups", Status.WARN, found, versions.CGROUP_V2_BOOT, why, details)
    return Check("docker-cgroup", "Docker: cgroups", Status.PASS, found, details=details)


def storage_check(request, info, free_bytes) -> Check:
    title = "Docker: storage"
    driver = info.get("Driver", "?")
    root = info.get("DockerRootDir", "?")
    need = (NODE_IMAGE_GIB + PER_NODE_GIB * request.nodes) * GIB
    details = {"storage_driver": driver, "root_dir": root, "free_bytes": free_bytes,
               "estimated_need_bytes": int(need)}
    prune = "docker system prune"
    if free_bytes is None:
        return Check("docker-storage", title, Status.WARN,
                     f"{driver}; cannot measure free space under {root} from this host",
                     hint=f"About {need / GIB:.0f} GiB is needed for {request.nodes} nodes",
                     details=details)
    found = (f"{driver}; {free_bytes / GIB:.1f} GiB free under {root} "
             f"(about {need / GIB:.0f} GiB needed for {request.nodes} nodes)")
    if free_bytes < need:
        return Check("docker-storage", title, Status.FAIL, found, prune,
                     f"Free space on the filesystem holding {root}", details)
    if free_bytes < 2 * need:
        return Check("docker-storage", title, Status.WARN, found, prune,
                     "Little room left for the images your workloads pull", details)
    if driver not in GOOD_STORAGE:
        return Check("docker-storage", title, Status.WARN, found,
                     hint=f"kind is tested on overlay2; {driver} may be slow or fail", details=details)
    return Check("docker-storage", title, Status.PASS, found, details=details)


def cluster_name_check(request, facts: DockerFacts) -> Check:
    title = "Cluster name"
    name = request.cluster_name
    if not KIND_NAME_RE.match(name):
        return Check("cluster-name", title, Status.FAIL,
                     f"{name!r} is not a valid kind cluster name (must match {KIND_NAME_RE.pattern})",
                     hint="Choose another --name")
    if facts.error is not None:
        return Check("cluster-name", title, Status.SKIP, "Docker daemon not reachable")
    nodes = [(c.get("Names") or ["?"])[0].lstrip("/") for c in facts.containers]
    details = {"nodes": nodes}
    if not facts.containers:
        return Check("cluster-name", title, Status.PASS, f"{name!r} is free", details=details)
    foreign = [n for n, c in zip(nodes, facts.containers) if not has_owner_mount(c.get("Mounts"))]
    details["foreign"] = foreign
    if not foreign:
        return Check("cluster-name", title, Status.PASS,
                     f"{name!r} exists, made by kindgpu ({len(nodes)} node(s)): up will resume it",
                     details=details)
    return Check(
        "cluster-name", title, Status.FAIL,
        f"{name!r} is a kind cluster kindgpu did not make "
        f"({', '.join(foreign)} lack{'s' if len(foreign) == 1 else ''} the {names.OWNER_MOUNT} mount)",
        f"invoke preflight --name {shlex.quote(name + '-gpu')}",
        "kindgpu leaves it alone: choose another --name (`invoke smoke --kubeconfig FILE` tests a cluster "
        "kindgpu did not make)",
        details,
    )
