"""The one seam to the kind CLI: create, delete, get kubeconfig, export logs. **How kind is called
changes here**, and so does the one rule for where a cluster's own kubeconfig is.

kind is always given the cluster's own kubeconfig: it then edits that file alone (with none, kind
would add or remove kind-<name> in every file kubectl reads; merging is kindgpu.kubeconfig's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from . import cmd
from .state import StateDir

DELETE_TIMEOUT = 300  # seconds, for `kind delete cluster` and `kind export logs`


def own_kubeconfig(spec: dict) -> Path:
    """The cluster's own kubeconfig, from its resolved spec: the spec's `kubeconfig`, else
    <state dir>/kubeconfig. The one rule: Plan.kubeconfig, the kubeconfig and status tasks read it."""
    return Path(spec["kubeconfig"]).expanduser() if spec.get("kubeconfig") else StateDir.of(spec["name"]).kubeconfig


def recorded_kubeconfig(name: str) -> Path:
    """The cluster's own kubeconfig as its plan.json says (own_kubeconfig when it was planned), for
    what is given a name alone; the state directory's when there is no plan.json."""
    state = StateDir.of(name)
    try:
        return Path(json.loads(state.plan.read_text())["kubeconfig"])
    except (OSError, ValueError, KeyError):
        return state.kubeconfig


def create(name: str, config: Path, kubeconfig: Path, image: str, env: Mapping[str, str]) -> cmd.Result:
    """`kind create cluster` from the kind config, every node from `image`, keeping what a failure
    leaves (--retain) so that its logs can be exported; its result, whatever it is."""
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    return cmd.run(["kind", "create", "cluster", "--name", name, "--config", config, "--kubeconfig", kubeconfig,
                    "--retain", "--image", image], check=False, env=env)


def delete(name: str, *, check: bool = True) -> cmd.Result:
    """`kind delete cluster`, editing only the cluster's own kubeconfig (recorded_kubeconfig), even
    one that is gone; fine when nothing is there."""
    return cmd.run(["kind", "delete", "cluster", "--name", name, "--kubeconfig", recorded_kubeconfig(name)],
                   check=check, timeout=DELETE_TIMEOUT)


def get_kubeconfig(name: str, *, check: bool = True) -> cmd.Result:
    """`kind get kubeconfig`: the running cluster's kubeconfig, from its control plane (whatever
    file it was written to)."""
    return cmd.run(["kind", "get", "kubeconfig", "--name", name], check=check)


def export_logs(name: str, where: str | os.PathLike) -> cmd.Result:
    """`kind export logs` into `where`; never raises for kind's own failure (it runs after one)."""
    return cmd.run(["kind", "export", "logs", where, "--name", name], check=False, timeout=DELETE_TIMEOUT)
