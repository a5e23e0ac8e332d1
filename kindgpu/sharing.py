"""GPU sharing by time-slicing: the spec's devicePlugin.sharing.timeSlicing, and what follows from it.

    devicePlugin: {sharing: {timeSlicing: {replicas: 4, renameByDefault: false}}}

Each GPU is then advertised `replicas` times, so a worker offers GPUs × replicas, as NVIDIA's
device plugin does with a time-slicing config (names from NVIDIA's k8s-device-plugin v0.20.0,
api/config/v1/: sharing.go Sharing.TimeSlicing, replicas.go ReplicatedResources.RenameByDefault
and ReplicatedResource.Replicas). Real GPUs: NVIDIA's plugin reads plugin_config() from a
ConfigMap, through its --config-file flag. Simulated GPUs: kindgpu's plugin advertises the replicas
itself, with NVIDIA's device IDs for them (replica_ids).

`invoke up` changes sharing in place (drift.LIVE_FIELDS): the plugin rolls and the labels follow.
Stdlib only, but for the config's YAML.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from . import names

CONFIG_MAP = "nvidia-device-plugin-config"
CONFIG_KEY = "config.yaml"
CONFIG_DIR = "/config"  # where NVIDIA's Helm chart mounts it too (CONFIG_FILE=/config/config.yaml)
CONFIG_FILE = f"{CONFIG_DIR}/{CONFIG_KEY}"
# On the plugin's pod template: a new config rolls the plugin, which reads it only when it starts.
CONFIG_ANNOTATION = "kindgpu.dev/plugin-config-sha256"
# api/config/v1/consts.go DefaultSharedResourceNameSuffix; resources.go DefaultSharedRename.
SHARED_SUFFIX = ".shared"
# api/config/v1/config.go: the only version NVIDIA's parser takes.
CONFIG_VERSION = "v1"


@dataclass(frozen=True)
class TimeSlicing:
    replicas: int = 1  # per GPU; 1: not shared
    rename_by_default: bool = False

    @property
    def shared(self) -> bool:
        """NVIDIA's plugin replicates only with 2 or more replicas (replicas.go: "must be >= 2")."""
        return self.replicas > 1

    @property
    def renamed(self) -> bool:
        return self.shared and self.rename_by_default

    @property
    def resource(self) -> str:
        """The resource the plugin advertises: nvidia.com/gpu.shared when shared and renamed."""
        return names.GPU_RESOURCE + SHARED_SUFFIX if self.renamed else names.GPU_RESOURCE

    def allocatable(self, gpus: int) -> int:
        """What a worker with `gpus` GPUs offers of `resource`."""
        return gpus * self.replicas


def configured(spec: dict) -> bool:
    """Whether the spec says anything of sharing: then kindgpu manages the plugin's config."""
    return isinstance((spec.get("devicePlugin") or {}).get("sharing"), dict)


def of(spec: dict) -> TimeSlicing:
    """The spec's time-slicing; TimeSlicing() (1 replica) when it has none (older records too)."""
    ts = ((spec.get("devicePlugin") or {}).get("sharing") or {}).get("timeSlicing") or {}
    return TimeSlicing(int(ts.get("replicas", 1)), bool(ts.get("renameByDefault", False)))


def plugin_config(spec: dict) -> dict:
    """NVIDIA's device plugin config file (api/config/v1 Config) for the spec's sharing.

    Only `version` and `sharing`: the plugin's flags stay in its environment (nvidia_daemonset),
    which the plugin lets override the file (config.go NewConfig, UpdateFromCLIFlags). Keys and
    omissions as the Go struct tags have them: renameByDefault is omitempty; devices defaults to
    "all" when left out (replicas.go ReplicatedResource.UnmarshalJSON). One replica is no sharing,
    and NVIDIA's parser refuses a resource of fewer than 2, so the config then has no sharing.
    """
    ts = of(spec)
    config: dict = {"version": CONFIG_VERSION}
    if ts.shared:
        slicing: dict = {"resources": [{"name": names.GPU_RESOURCE, "replicas": ts.replicas}]}
        if ts.rename_by_default:
            slicing = {"renameByDefault": True, **slicing}
        config["sharing"] = {"timeSlicing": slicing}
    return config


def config_text(spec: dict) -> str:
    import yaml

    return yaml.safe_dump(plugin_config(spec), sort_keys=False)


def config_digest(spec: dict) -> str:
    return hashlib.sha256(json.dumps(plugin_config(spec), sort_keys=True).encode()).hexdigest()


def config_map(spec: dict, namespace: str = names.SYSTEM_NAMESPACE) -> dict:
    """The ConfigMap NVIDIA's plugin reads its config file from."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": namespace,
                     "labels": {**names.MANAGED_BY}},
        "data": {CONFIG_KEY: config_text(spec)},
    }


def replica_ids(uuid: str, replicas: int) -> list[str]:
    """NVIDIA's device IDs of a replicated GPU: "<uuid>::<n>", n from 0 (internal/rm/devices.go
    NewAnnotatedID); a GPU that is not replicated keeps its UUID."""
    return [uuid] if replicas <= 1 else [f"{uuid}::{n}" for n in range(replicas)]


def describe(ts: TimeSlicing) -> str:
    if not ts.shared:
        return "not shared"
    return f"time-slicing, {ts.replicas} replicas per GPU, as {ts.resource}"
