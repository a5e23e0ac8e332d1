"""Kubernetes and kind versions: which kindgpu supports, what a node image runs, what kind defaults to,
and what the kubelet needs on this host.

Where a version-dependent rule is added (a feature gate, a kubelet setting, a kind requirement), it
goes here, next to the version it depends on.
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from . import cmd
from .errors import Problem

Version = tuple[int, int, int]

# Kubernetes lines kindgpu is tested on (CI's e2e suite runs 1.37, a smaller set 1.34; the GPU rig
# 1.37): kind v0.33.0 ships node images for exactly these; older lines are out of upstream support.
SUPPORTED_MINORS = (34, 35, 36, 37)
# The kind kindgpu is proven with; `invoke preflight --fix` installs this one when kind is missing
# or too old, and its default node image is kindgpu's default when kind is not found.
KIND_PINNED = "v0.33.0"
KIND_PINNED_DEFAULT_IMAGE = (
    "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5")
KUBECTL_PINNED = "v1.37.2"
# From 1.35 the kubelet refuses a cgroup v1 host unless its configuration says failCgroupV1: false
# (KEP-5573); kind only warns, so kindgpu renders the override itself.
CGROUP_V1_REFUSED_FROM = (1, 35)
CGROUP_V2_BOOT = ("sudo sed -i 's/^GRUB_CMDLINE_LINUX=\"/&systemd.unified_cgroup_hierarchy=1 /' "
                  "/etc/default/grub && sudo update-grub && sudo reboot")
CGROUP_V2_FIX = f"the lasting fix is cgroup v2: {CGROUP_V2_BOOT}"

_VERSION_RE = re.compile(r"v(\d+)\.(\d+)\.(\d+)")
_KIND_DEFAULT_RE = re.compile(rb"kindest/node:v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}")


def parse(text: str) -> Version | None:
    """The first vX.Y.Z in text: 'kindest/node:v1.37.0@sha256:...' -> (1, 37, 0)."""
    m = _VERSION_RE.search(text or "")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def show(version: Version | None) -> str:
    return "v" + ".".join(map(str, version)) if version else "unknown"


def supported(version: Version) -> bool:
    return version[0] == 1 and version[1] in SUPPORTED_MINORS


def kind_default_image(kind_binary: str | Path | None = None) -> str | None:
    """The default node image compiled into a kind binary (its defaults.Image), or None.

    kind has no command that prints it; the reference is a string constant in the binary."""
    path = kind_binary or cmd.which("kind")
    if not path:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    found = _KIND_DEFAULT_RE.search(data)
    return found.group().decode() if found else None


def default_node_image() -> str:
    """What `kind create cluster` would run: the default of the kind on PATH, else kind v0.33.0's."""
    return kind_default_image() or KIND_PINNED_DEFAULT_IMAGE


def image_kubernetes(image: str, client=None) -> Version | None:
    """The Kubernetes version a node image runs: from its tag when the tag says (kind's and kindgpu's
    images do), else from /kind/version inside the local image; None when neither tells."""
    tag = image.split("@", 1)[0].rsplit("/", 1)[-1]
    found = parse(tag)
    if found or client is None:
        return found
    return parse(read_image_file(client, image, "/kind/version"))


def read_image_file(client, image: str, path: str) -> str:
    """A file of a local image, read without running it; "" when the image or the file is not there."""
    import docker.errors

    try:
        container = client.containers.create(image, command=["true"])
    except docker.errors.DockerException:
        return ""
    try:
        stream, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            handle = tar.extractfile(member) if member else None
            return handle.read().decode() if handle else ""
    except docker.errors.DockerException:
        return ""
    finally:
        container.remove(force=True)


@dataclass(frozen=True)
class Runtime:
    """What the kind config depends on besides the spec: the node image's Kubernetes version and the
    host's cgroup version (as Docker reports it). None: not known, and nothing is rendered for it."""

    kubernetes: Version | None = None
    cgroup: int | None = None

    @property
    def needs_cgroup_v1_override(self) -> bool:
        return self.cgroup == 1 and self.kubernetes is not None and self.kubernetes[:2] >= CGROUP_V1_REFUSED_FROM

    def warnings(self) -> list[Problem]:
        if not self.needs_cgroup_v1_override:
            return []
        return [Problem("nodeImage", f"this host runs cgroup v1, which the kubelet of Kubernetes "
                                     f"{show(self.kubernetes)} refuses unless told: kindgpu sets "
                                     "failCgroupV1: false in the kind config (invoke config shows it)",
                        CGROUP_V2_FIX)]


def host_cgroup_version(client=None) -> int | None:
    """Docker's cgroup version; without Docker, the local kernel's (the cgroup v2 root has cgroup.controllers)."""
    if client is not None:
        import docker.errors

        try:
            return int(client.info().get("CgroupVersion") or 0) or None
        except (docker.errors.DockerException, OSError, ValueError):
            pass  # fall back to the local kernel
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return 2
    return 1 if Path("/sys/fs/cgroup").is_dir() else None


def observe(image: str, client=None) -> Runtime:
    """The Runtime for a cluster of `image` on this host; client: Docker's, or None where it does not answer."""
    return Runtime(image_kubernetes(image, client), host_cgroup_version(client))


# Dynamic Resource Allocation (spec `gpuAllocation: dra`): resource.k8s.io/v1 and DynamicResourceAllocation
# are GA and on by default from 1.34 (pkg/features/kube_features.go), so nothing is needed for core DRA there.
DRA_FROM = (1, 34)
# The extended-resource mapping (DeviceClass spec.extendedResourceName, KEP-5004), so a pod asking
# `nvidia.com/gpu: 1` is served by DRA: gate DRAExtendedResource, alpha and off in 1.34 and 1.35, beta and
# on in 1.36, GA and locked on in 1.37 (k8s.io/kubernetes v1.34.4, v1.35.4, v1.36.3 and v1.37.2,
# pkg/features/kube_features.go). It guards the API field (kube-apiserver drops it when off), the scheduler's
# mapping and kubelet's handling of such pods, so it goes to every component: kind's top-level featureGates.
DRA_EXTENDED_RESOURCE_GATE = "DRAExtendedResource"
DRA_EXTENDED_RESOURCE_ON_FROM = (1, 36)


def dra_supported(kubernetes: Version | None) -> bool:
    return kubernetes is not None and kubernetes[:2] >= DRA_FROM


def dra_feature_gates(kubernetes: Version) -> dict[str, bool]:
    """The feature gates a kind cluster of this Kubernetes version needs for kindgpu's DRA, as kind's
    `featureGates` takes them: only those not on by default (none from 1.36). ValueError below 1.34.
    render.feature_gates puts them into the kind config when the spec says `gpuAllocation: dra`."""
    if not dra_supported(kubernetes):
        raise ValueError(f"DRA needs Kubernetes 1.{DRA_FROM[1]} or newer, not {show(kubernetes)}")
    if kubernetes[:2] < DRA_EXTENDED_RESOURCE_ON_FROM:
        return {DRA_EXTENDED_RESOURCE_GATE: True}
    return {}

# Device taints (KEP-5055), what a failed GPU becomes under DRA. Read from k8s.io/kubernetes v1.34.4,
# v1.35.4, v1.36.3 and v1.37.2 (pkg/features/kube_features.go; the API versions served by default from
# pkg/controlplane/instance.go and pkg/registry/resource/rest/storage_resource.go):
# - taints a driver puts on its devices in a ResourceSlice (gate DRADeviceTaints): alpha and off in 1.34
#   and 1.35 (kube-apiserver drops the field), beta and on in 1.36, GA in 1.37. Where they are off, the
#   simulated DRA plugin leaves a failed GPU out of its slice, as NVIDIA's driver v25.12.0 does.
# - DeviceTaintRule, a taint an admin puts on devices through the API: resource.k8s.io/v1alpha3 in 1.34
#   (gate DRADeviceTaints) and 1.35 (gate DRADeviceTaintRules), alpha APIs off by default;
#   resource.k8s.io/v1beta2 in 1.36 (beta, gate and API off by default); resource.k8s.io/v1, GA and on,
#   from 1.37.
DRA_DEVICE_TAINTS_GATE = "DRADeviceTaints"
DRA_DEVICE_TAINTS_ON_FROM = (1, 36)
DRA_DEVICE_TAINT_RULES_GATE = "DRADeviceTaintRules"
DEVICE_TAINT_RULE_APIS = {34: "resource.k8s.io/v1alpha3", 35: "resource.k8s.io/v1alpha3",
                          36: "resource.k8s.io/v1beta2", 37: "resource.k8s.io/v1"}
DEVICE_TAINT_RULES_ON_FROM = (1, 37)


def dra_device_taints(kubernetes: Version | None) -> bool:
    """Whether a driver's device taints in a ResourceSlice count on this version, with its default gates."""
    return kubernetes is not None and kubernetes[:2] >= DRA_DEVICE_TAINTS_ON_FROM


def device_taint_rule_api(kubernetes: Version | None) -> str | None:
    """The apiVersion that serves DeviceTaintRule on this version, on or off by default; None before 1.34."""
    if kubernetes is None or kubernetes[0] != 1:
        return None
    newest = max(DEVICE_TAINT_RULE_APIS)
    return DEVICE_TAINT_RULE_APIS.get(min(kubernetes[1], newest))


def device_taint_rules_off(kubernetes: Version | None) -> str:
    """Why this version does not serve DeviceTaintRule by default ("" when it does), with what turns it on."""
    if kubernetes is not None and kubernetes[:2] >= DEVICE_TAINT_RULES_ON_FROM:
        return ""
    api = device_taint_rule_api(kubernetes)
    if api is None:
        return f"Kubernetes {show(kubernetes)} has no DeviceTaintRule (DRA device taints came in 1.33, alpha)"
    gate = DRA_DEVICE_TAINTS_GATE if kubernetes[:2] < (1, 35) else DRA_DEVICE_TAINT_RULES_GATE
    stage = "beta" if api.endswith("beta2") else "alpha"
    return (f"Kubernetes {show(kubernetes)} serves DeviceTaintRule only as {api} ({stage}), behind feature gate "
            f"{gate} and --runtime-config={api}=true, both off by default; it is GA and on from "
            f"1.{DEVICE_TAINT_RULES_ON_FROM[1]} (resource.k8s.io/v1)")
