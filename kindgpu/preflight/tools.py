"""kind and kubectl: on PATH, and new enough."""

from __future__ import annotations

import json
import platform
import re

from .. import cmd, versions
from .model import Check, Status, fmt_version, version_tuple

KIND_MIN = (0, 20, 0)
KUBECTL_MIN = (1, 27, 0)
FIX = "invoke preflight --fix"


def arch():
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def kind_install():
    url = f"https://kind.sigs.k8s.io/dl/{versions.KIND_PINNED}/kind-linux-{arch()}"
    return (f"`{FIX}` installs kind {versions.KIND_PINNED} into {cmd.tools_dir()} (with Go, or its release); "
            f"by hand: curl -Lo ./kind {url} && sudo install -m 0755 ./kind /usr/local/bin/kind && rm ./kind")


def kubectl_install():
    url = f"https://dl.k8s.io/release/{versions.KUBECTL_PINNED}/bin/linux/{arch()}/kubectl"
    return (f"`{FIX}` installs kubectl {versions.KUBECTL_PINNED} into {cmd.tools_dir()} (with Go, or its release); "
            f'by hand: curl -LO "{url}" && sudo install -m 0755 kubectl /usr/local/bin/kubectl && rm kubectl')


def parse_kind_version(text):
    """'kind v0.20.0 go1.20.4 linux/amd64' -> (0, 20, 0); None when unrecognised."""
    m = re.search(r"\bv?(\d+\.\d+\.\d+)", text)
    return version_tuple(m.group(1)) if m else None


def parse_kubectl_version(text):
    """`kubectl version --client -o json` -> (major, minor, patch) from gitVersion (or major/minor)."""
    try:
        client = json.loads(text)["clientVersion"]
    except (ValueError, KeyError, TypeError):
        return None
    if client.get("gitVersion"):
        return version_tuple(client["gitVersion"])
    major, minor = version_tuple(client.get("major", "")), version_tuple(client.get("minor", ""))
    return (major[0], minor[0], 0) if major and minor else None


def probe_kind():
    return cmd.run(["kind", "version"], check=False, timeout=10)


def probe_kubectl():
    return cmd.run(["kubectl", "version", "--client", "-o", "json"], check=False, timeout=10)


def tool_check(tool_id, result, parse, minimum, install) -> Check:
    title = f"{tool_id} on PATH"
    if result.returncode == 127:
        return Check(tool_id, title, Status.FAIL, f"{tool_id} not found on PATH", FIX, install())
    version = parse(result.stdout) if result.returncode == 0 else None
    if version is None:
        out = (result.stdout + result.stderr).strip().splitlines()
        return Check(tool_id, title, Status.FAIL,
                     f"`{' '.join(result.argv)}` gave no version (exit {result.returncode}): "
                     f"{out[0] if out else 'no output'}", FIX, install())
    found = f"{tool_id} v{fmt_version(version)}"
    details = {"version": fmt_version(version), "minimum": fmt_version(minimum)}
    if version < minimum:
        return Check(tool_id, title, Status.FAIL,
                     f"{found} is older than the supported v{fmt_version(minimum)}",
                     FIX, install(), details=details)
    return Check(tool_id, title, Status.PASS, found, details=details)


def checks(kind_result, kubectl_result) -> list[Check]:
    return [
        tool_check("kind", kind_result, parse_kind_version, KIND_MIN, kind_install),
        tool_check("kubectl", kubectl_result, parse_kubectl_version, KUBECTL_MIN, kubectl_install),
    ]


def kubernetes_check(request, image_facts: dict, kind_default: str | None) -> Check:
    """Which Kubernetes the node image runs, whether kindgpu supports it, and whether the kind found
    is new enough for it (kind knows the Kubernetes lines up to its own default image's)."""
    title = "Node image: Kubernetes"
    image = request.node_image
    if not image:
        return Check("node-kubernetes", title, Status.SKIP, "no node image")
    chosen = " (kind's default)" if image == kind_default else ""
    running = image_facts.get("kubernetes") or versions.image_kubernetes(image)
    details = {"image": image, "kubernetes": versions.show(running), "kind_default": kind_default,
               "supported_minors": [f"1.{m}" for m in versions.SUPPORTED_MINORS]}
    found = f"{image}{chosen}: Kubernetes {versions.show(running)}"
    newest = versions.parse(kind_default or "")
    if running and newest and running[:2] > newest[:2]:
        return Check("node-kubernetes", title, Status.FAIL,
                     f"{found}, newer than the kind found knows (its default is {versions.show(newest)})",
                     FIX, f"installs kind {versions.KIND_PINNED}; "
                     "kind renders kubeadm's config per Kubernetes version: an older kind fails half-way", details)
    supported = ", ".join(f"1.{m}" for m in versions.SUPPORTED_MINORS)
    if running is None:
        return Check("node-kubernetes", title, Status.WARN, f"{found} (not told by its tag or /kind/version)",
                     hint=f"kindgpu is tested on Kubernetes {supported}", details=details)
    if not versions.supported(running):
        return Check("node-kubernetes", title, Status.WARN, f"{found}, not a line kindgpu is tested on",
                     f"--node-image {versions.KIND_PINNED_DEFAULT_IMAGE}",
                     f"kindgpu is tested on Kubernetes {supported}", details)
    return Check("node-kubernetes", title, Status.PASS, found, details=details)
