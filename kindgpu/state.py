"""Where a cluster's state lives on the host: one directory per cluster, laid out here alone."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


def state_root() -> Path:
    """Where per-cluster state directories live ($KINDGPU_STATE_DIR overrides)."""
    base = os.environ.get("KINDGPU_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "kindgpu"
    )
    return Path(base)


@dataclass(frozen=True)
class StateDir:
    """One cluster's state directory. `config` writes it, `up` adds to it, `down` removes it."""

    root: Path

    @classmethod
    def of(cls, cluster: str) -> StateDir:
        return cls(state_root() / cluster)

    @property
    def kubeconfig(self) -> Path:
        """The cluster's own kubeconfig, unless its spec names another. ~/.kube/config is never touched."""
        return self.root / "kubeconfig"

    @property
    def kind_config(self) -> Path:
        return self.root / "kind-config.yaml"

    @property
    def spec(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def spec_hash(self) -> Path:
        return self.root / "spec.sha256"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def node(self) -> Path:
        """Mounted read-only into every node at names.OWNER_MOUNT.

        It is the mark that kindgpu made the node. Images are also handed to the nodes through it.
        """
        return self.root / "node"

    def diagnostics(self, step: str) -> Path:
        """A new folder for what a failed step leaves behind."""
        return self.root / "diagnostics" / f"{time.strftime('%Y%m%d-%H%M%S')}-{step}"

    def junit(self, level: str) -> Path:
        return self.root / f"smoke-{level}-junit.xml"

    @property
    def lock(self) -> Path:
        """Beside the directory, not in it: `down` removes the directory while it holds the lock."""
        return self.root.parent / f".{self.root.name}.lock"
