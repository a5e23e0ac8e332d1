"""kind and kubectl: on PATH, and new enough."""

from __future__ import annotations

import json
import platform
import re

from .. import cmd
from .model import Check, Status, fmt_version, version_tuple

KIND_MIN = (0, 20, 0)
KUBECTL_MIN = (1, 27, 0)
KIND_RECOMMENDED = "v0.29.0"


def arch():
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def kind_install():
    url = f"https://kind.sigs.k8s.io/dl/{KIND_RECOMMENDED}/kind-linux-{arch()}"
    return f"curl -Lo ./kind {url} && sudo install -m 0755 ./kind /usr/local/bin/kind && rm ./kind"


def kubectl_install():
    url = f'https://dl.k8s.io/release/$(curl -Ls https://dl.k8s.io/release/stable.txt)/bin/linux/{arch()}/kubectl'
    return f'curl -LO "{url}" && sudo install -m 0755 kubectl /usr/local/bin/kubectl && rm kubectl'


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
        return Check(tool_id, title, Status.FAIL, f"{tool_id} not found on PATH", install())
    version = parse(result.stdout) if result.returncode == 0 else None
    if version is None:
        out = (result.stdout + result.stderr).strip().splitlines()
        return Check(tool_id, title, Status.FAIL,
                     f"`{' '.join(result.argv)}` gave no version (exit {result.returncode}): "
                     f"{out[0] if out else 'no output'}", install())
    found = f"{tool_id} v{fmt_version(version)}"
    details = {"version": fmt_version(version), "minimum": fmt_version(minimum)}
    if version < minimum:
        return Check(tool_id, title, Status.FAIL,
                     f"{found} is older than the supported v{fmt_version(minimum)}",
                     install(), details=details)
    return Check(tool_id, title, Status.PASS, found, details=details)


def checks(kind_result, kubectl_result) -> list[Check]:
    return [
        tool_check("kind", kind_result, parse_kind_version, KIND_MIN, kind_install),
        tool_check("kubectl", kubectl_result, parse_kubectl_version, KUBECTL_MIN, kubectl_install),
    ]
