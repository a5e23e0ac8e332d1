"""`invoke preflight --fix` for the cluster tools: kind and kubectl of the versions kindgpu was proven with,
put where the user can write (cmd.tools_dir(), which every kindgpu command looks in first).

Built with `go install` from their Go modules where Go is on PATH, else their release binaries (checked
against the sha256 their release publishes). A kind or kubectl already there, of a version that does,
is left alone.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from .. import cmd, versions
from ..errors import KindgpuError
from . import tools

KIND_URL = "https://kind.sigs.k8s.io/dl/{version}/kind-linux-{arch}"
KUBECTL_URL = "https://dl.k8s.io/release/{version}/bin/linux/{arch}/kubectl"
# kubectl's main lives in k8s.io/kubernetes, which `go install` cannot take (replace directives): this is
# the same program, made from the published k8s.io/kubectl and component-base modules.
KUBECTL_MAIN = """package main

import (
\t"os"

\t"k8s.io/component-base/cli"
\t"k8s.io/kubectl/pkg/cmd"
)

func main() { os.Exit(cli.Run(cmd.NewDefaultKubectlCommand())) }
"""
GO_ENV = {"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false", "GONOSUMDB": "k8s.io/*,sigs.k8s.io/*"}
BUILD_TIMEOUT = 1800  # kubectl from source: minutes on a small machine with a cold Go cache


def wanted(image: str | None) -> list[str]:
    """The tools to install: missing, unreadable, older than kindgpu's minimum, or (kind) older than the
    node image's Kubernetes."""
    wanted = []
    kind = tools.probe_kind()
    kind_version = tools.parse_kind_version(kind.stdout) if kind.returncode == 0 else None
    newest = versions.parse(versions.kind_default_image() or "")
    running = versions.image_kubernetes(image) if image else None
    if kind_version is None or kind_version < tools.KIND_MIN or (running and newest and running[:2] > newest[:2]):
        wanted.append("kind")
    kubectl = tools.probe_kubectl()
    kubectl_version = tools.parse_kubectl_version(kubectl.stdout) if kubectl.returncode == 0 else None
    if kubectl_version is None or kubectl_version < tools.KUBECTL_MIN:
        wanted.append("kubectl")
    return wanted


def fix_tools(image: str | None) -> list[str]:
    """Install what `wanted` names; one line each saying what went where, and how."""
    done = []
    for tool in wanted(image):
        try:
            done.append(install(tool))
        except (KindgpuError, OSError) as err:
            done.append(f"could not install {tool}: {err}")
    return done


def install(tool: str) -> str:
    target = cmd.tools_dir() / tool
    target.parent.mkdir(parents=True, exist_ok=True)
    version = versions.KIND_PINNED if tool == "kind" else versions.KUBECTL_PINNED
    with tempfile.TemporaryDirectory(prefix=f"kindgpu-{tool}-") as work:
        built = Path(work) / tool
        if cmd.which("go"):
            how = go_build(tool, version, Path(work), built)
        else:
            how = download(tool, version, built)
        built.chmod(0o755)
        os.replace(built, target)
    return f"installed {tool} {version} as {target} ({how}); kindgpu commands use it"


def go_build(tool: str, version: str, work: Path, out: Path) -> str:
    env = {**os.environ, **GO_ENV}
    if tool == "kind":
        env["GOBIN"] = str(work)
        cmd.run(["go", "install", f"sigs.k8s.io/kind@{version}"], env=env, timeout=BUILD_TIMEOUT)
        return f"go install sigs.k8s.io/kind@{version}"
    module = work / "module"
    module.mkdir()
    (module / "main.go").write_text(KUBECTL_MAIN)
    (module / "go.mod").write_text("module kindgpu.local/kubectl\n\ngo 1.24\n")
    published = "v0." + version.removeprefix("v1.")  # k8s.io/kubectl v0.37.2 is Kubernetes v1.37.2
    minor = version.split(".")[1]
    flags = " ".join(f"-X {pkg}.gitVersion={version} -X {pkg}.gitMajor=1 -X {pkg}.gitMinor={minor}"
                     for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"))
    go = ["go", "-C", str(module)]
    cmd.run([*go, "get", f"k8s.io/kubectl@{published}", f"k8s.io/component-base@{published}"], env=env,
            timeout=BUILD_TIMEOUT)
    cmd.run([*go, "build", "-trimpath", "-ldflags", f"-s -w {flags}", "-o", str(out), "."], env=env,
            timeout=BUILD_TIMEOUT)
    return f"built with Go from k8s.io/kubectl@{published}"


def download(tool: str, version: str, out: Path) -> str:
    url = (KIND_URL if tool == "kind" else KUBECTL_URL).format(version=version, arch=tools.arch())
    checksum_url = url + (".sha256sum" if tool == "kind" else ".sha256")
    try:
        with urllib.request.urlopen(checksum_url, timeout=30) as answer:
            expected = answer.read().decode().split()[0]
        with urllib.request.urlopen(url, timeout=300) as answer, open(out, "wb") as file:
            digest = hashlib.sha256()
            while chunk := answer.read(1 << 20):
                digest.update(chunk)
                file.write(chunk)
    except OSError as err:
        raise KindgpuError(f"cannot download {url}: {err}",
                           "install Go (then --fix builds it from its module) or fetch it by hand") from err
    if digest.hexdigest() != expected:
        raise KindgpuError(f"{url} does not match its published sha256", "try again")
    return f"downloaded {url}, sha256 checked"
