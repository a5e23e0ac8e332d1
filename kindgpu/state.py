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


def foreign_dir(label: str) -> Path:
    """What kindgpu keeps about a cluster it did not make (smoke --kubeconfig's reports); `down --kubeconfig`
    removes it."""
    return state_root() / "foreign" / label


class Entry:
    """A file or folder of the state directory, by its name there: StateDir(root).kind_config is
    root/kind-config.yaml."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, state: StateDir | None, owner: type) -> Path:
        return self if state is None else state.root / self.name


@dataclass(frozen=True)
class StateDir:
    """One cluster's state directory. `config` writes it, `up` adds to it, `down` removes it."""

    root: Path

    kubeconfig = Entry("kubeconfig")  # the cluster's own, unless its spec names another
    merged = Entry("merged-kubeconfig.json")  # where kindgpu merged kind-<name>: what `down` removes
    kind_config = Entry("kind-config.yaml")
    spec = Entry("spec.yaml")
    spec_hash = Entry("spec.sha256")
    plan = Entry("plan.json")
    probes = Entry("node-facts.json")  # what the device-plugin step read in each GPU worker, per start
    loads = Entry("images-loaded.json")  # what each step loaded into the nodes when it last ran (images.record_loads)
    # Mounted read-only into every node at names.OWNER_MOUNT: the mark that kindgpu made the node,
    # and the way images are handed to the nodes.
    node = Entry("node")

    @classmethod
    def of(cls, cluster: str) -> StateDir:
        return cls(state_root() / cluster)

    def diagnostics(self, step: str) -> Path:
        """A new folder for what a failed step leaves behind."""
        return self.root / "diagnostics" / f"{time.strftime('%Y%m%d-%H%M%S')}-{step}"

    def junit(self, level: str) -> Path:
        return self.root / f"smoke-{level}-junit.xml"

    # kindgpu.lock's: held by `up`, the step tasks and `down` while they run. `down` removes the
    # directory with it; kindgpu.lock handles that.
    lock = Entry("lock")
