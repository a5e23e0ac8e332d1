"""Render a plan into the kind config and the cluster's state directory.

Same plan, same bytes: mappings are written in a fixed order and labels sorted.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

from . import names, nodeimage, versions
from .errors import KindgpuError
from .spec import SCHEMA_PATH

# jsonschema and yaml are imported where used: listing the tasks must not pay for them.

KIND_SCHEMA_PATH = SCHEMA_PATH.with_name("kind-config.schema.json")
# The host's toolkit CLI, mounted read-only into GPU workers (not CPU-only ones): CDI specs name it as their hook.
HOST_NVIDIA_CTK = "/usr/bin/nvidia-ctk"
# kubelet looks for status changes (Ready, allocatable GPUs) every 10 s by default, so a new
# node or a freshly registered device plugin showed up to 10 s late. Unchanged status is still
# reported only every 5 minutes, so the API server sees no more writes.
KUBELET_PATCH = """kind: KubeletConfiguration
nodeStatusUpdateFrequency: 1s
nodeStatusReportFrequency: 5m
"""
# Kubernetes 1.35+ on a cgroup v1 host (versions.Runtime): the kubelet starts only when told to.
KUBELET_CGROUP_V1 = "failCgroupV1: false\n"


def kubelet_patch(plan):
    return KUBELET_PATCH + (KUBELET_CGROUP_V1 if plan.runtime.needs_cgroup_v1_override else "")


# CDI is how the device plugin's GPUs reach pods (cdi-cri). containerd 2 has it on; containerd 1.7
# (kindest/node up to v1.32, kind v0.26) has it off. kind's node config is the v2 format, which
# containerd 2 migrates, so this one patch enables CDI on both.
CONTAINERD_CDI_PATCH = """[plugins."io.containerd.grpc.v1.cri"]
  enable_cdi = true
  cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]
"""
# A GPU as a CDI device the host's NVIDIA runtime makes on the fly (runtime.nvidia.com/gpu=UUID):
# honoured in its default "auto" mode from toolkit v1.17 (the plain UUID form needs v1.18).
NVIDIA_CDI_MOUNT_PREFIX = "cdi/runtime.nvidia.com/gpu"


def owner_mount(plan):
    return {"hostPath": str(plan.state.node), "containerPath": names.OWNER_MOUNT, "readOnly": True}


def gpu_mounts(plan, worker):
    """One /dev/null mount per GPU: the NVIDIA runtime (or the simulated plugin) reads the names."""
    if worker.cpu_only:
        return []  # nothing for the runtime to inject, and no CDI hook to run
    directory = (names.SIM_DEVICE_MOUNT_DIR if plan.simulated
                 else f"{names.NVIDIA_DEVICE_MOUNT_DIR}/{NVIDIA_CDI_MOUNT_PREFIX}")
    mounts = [{"hostPath": "/dev/null", "containerPath": f"{directory}/{g.uuid}"} for g in worker.gpus]
    if not plan.simulated and plan.spec["devicePlugin"]["deviceListStrategy"].startswith("cdi"):
        mounts.append({"hostPath": HOST_NVIDIA_CTK, "containerPath": HOST_NVIDIA_CTK, "readOnly": True})
    return mounts


def kind_config(plan):
    spec = plan.spec
    image = spec["nodeImage"]
    networking = {"apiServerAddress": spec["apiServer"]["address"]}
    if spec["apiServer"]["port"]:
        networking["apiServerPort"] = spec["apiServer"]["port"]
    nodes = [
        {
            "role": "control-plane",
            "image": image,
            "labels": {names.LABEL_OWNER: plan.name},
            "extraMounts": [owner_mount(plan)],
        }
    ]
    for worker in plan.workers:
        nodes.append(
            {
                "role": "worker",
                "image": image,
                "labels": dict(sorted(worker.labels.items())),
                "extraMounts": [*gpu_mounts(plan, worker), owner_mount(plan)],
            }
        )
    config = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": plan.name,
        "networking": networking,
        "kubeadmConfigPatches": [kubelet_patch(plan)],
        "nodes": nodes,
    }
    gates = feature_gates(plan)
    if gates:
        config["featureGates"] = gates
    if not nodeimage.enabled(spec):
        # kindgpu's node image has CDI on already; a patch would make kind restart every node's
        # containerd on the way (the create step passes that image as `kind create cluster --image`).
        config["containerdConfigPatches"] = [CONTAINERD_CDI_PATCH]
    check_kind_config(config)
    return config


def feature_gates(plan) -> dict[str, bool]:
    """kind's top-level featureGates (every component gets them): those DRA needs on this Kubernetes
    version (versions.dra_feature_gates), only under `gpuAllocation: dra`."""
    if not plan.dra or plan.runtime.kubernetes is None:
        return {}
    return dict(sorted(versions.dra_feature_gates(plan.runtime.kubernetes).items()))


@lru_cache(maxsize=1)
def kind_schema():
    return json.loads(KIND_SCHEMA_PATH.read_text())


def check_kind_config(config):
    """Refuse to write a kind config outside the fields kindgpu knows it emits correctly."""
    from jsonschema import Draft202012Validator

    errors = list(Draft202012Validator(kind_schema()).iter_errors(config))
    if errors:
        detail = "; ".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
        raise KindgpuError(f"internal error: rendered kind config is invalid: {detail}")


def to_yaml(doc):
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value):  # multi-line strings (kubeadm patches) as readable `|` blocks
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(doc, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=1000)


def state_files(plan):
    """Every file `config` writes, relative to the state directory, with its content."""
    state = plan.state
    plan_json = plan.to_json()
    files = {
        state.kind_config: to_yaml(kind_config(plan)),
        state.spec: to_yaml(plan.spec),
        state.spec_hash: plan.spec_hash + "\n",
        state.plan: plan_json,
        state.node / "plan.json": plan_json,  # mounted into every node at names.OWNER_MOUNT
    }
    return {str(path.relative_to(state.root)): content for path, content in files.items()}


def write_state(plan):
    """Write the state files; unchanged files are left alone so their mtimes stay meaningful."""
    root = plan.state.root
    written = []
    for rel, content in state_files(plan).items():
        path = root / rel
        if path.exists() and path.read_text() == content:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content)
        os.replace(tmp, path)
        written.append(path)
    return written
