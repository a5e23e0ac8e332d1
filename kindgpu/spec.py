"""The cluster spec: defaults < spec file < environment < task flags, then validation.

Validation comes in two rounds. resolve() reports, all at once, every problem that needs no
host: the JSON Schema, then what it cannot express (node labels as kubelet checks them, the API
server's address). Only a spec that passes is checked against the host's GPUs (plan.make_plan).
Each problem names its field as data (errors.Problem).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from . import gfd, imageref, payloads, sharing, versions
from .errors import Problem, SpecError
from .names import API_VERSION, LABEL_GPU_IDS, LABEL_GPU_PRESENT, LABEL_GPU_WORKER, SPEC_KIND

# yaml and jsonschema are imported where used: listing the tasks must not pay for them.

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "cluster.schema.json"

# Environment variables users of the original setup.sh already know, and kindgpu's own.
ENV_FIELDS = {"CLUSTER_NAME": "name", "KINDGPU_NODE_IMAGE": "nodeImage"}
FLAG_NAMES = {"name": "--name", "nodeImage": "--node-image", "workers": "--workers", "gpusPerWorker": "--gpus"}

RESERVED_LABELS = (LABEL_GPU_WORKER, LABEL_GPU_IDS, LABEL_GPU_PRESENT)
RESERVED_LABEL_PREFIX = "kindgpu.dev/"


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def defaults() -> dict:
    """The built-in spec: every top-level default of the schema, objects filled in."""
    doc = {"apiVersion": API_VERSION, "kind": SPEC_KIND}
    for key, prop in schema()["properties"].items():
        if "default" in prop:
            doc[key] = copy.deepcopy(prop["default"])
    return fill_object_defaults(doc)


def short_simulate(value):
    """`simulate: N` is short for `simulate: {gpus: N}`. A number the schema refuses stays as it is,
    for the schema to name it (simulate_fix says what to write instead)."""
    sim = schema()["properties"]["simulate"]
    whole = isinstance(value, int) and not isinstance(value, bool)
    return {"gpus": value} if whole and sim["minimum"] <= value <= sim["maximum"] else value


def simulate_fix() -> str:
    sim = schema()["properties"]["simulate"]
    return f"simulate {sim['minimum']} to {sim['maximum']} GPUs: `simulate: 8` (short for `simulate: {{gpus: 8}}`)"


def fill_object_defaults(doc: dict) -> dict:
    """Expand short forms, then fill defaults inside the nested objects (apiServer, devicePlugin,
    draDriver, simulate, smoke)."""
    props = schema()["properties"]
    if "simulate" in doc:
        doc["simulate"] = short_simulate(doc["simulate"])
    for key in ("apiServer", "devicePlugin", "draDriver", "smoke", "simulate"):
        value = doc.get(key)
        if isinstance(value, dict):
            inner = props[key]["properties"]
            doc[key] = {k: copy.deepcopy(p["default"]) for k, p in inner.items() if "default" in p}
            doc[key].update(value)
    return doc


class DuplicateKey(Exception):
    """A mapping names one key twice (kind decodes its config strictly and refuses that too)."""

    def __init__(self, key: str, first: int, second: int):
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


@lru_cache(maxsize=1)
def strict_loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise DuplicateKey(str(key), seen[key], line)
                    seen[key] = line
                except TypeError:  # an unhashable key: the schema refuses it
                    continue
            return super().construct_mapping(node, deep)

    return StrictLoader


def load_file(path: str | Path) -> tuple[dict, list[Problem]]:
    """Read a spec file: (doc, problems). A file that cannot be read at all stops here."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.load(path.read_text(), Loader=strict_loader())
    except DuplicateKey as dup:
        raise SpecError([Problem(dup.key, f"appears twice in {path} (lines {dup.first} and {dup.second}); "
                                          "YAML would keep the second silently", "keep one of them")])
    except FileNotFoundError:
        raise SpecError([Problem("--config", f"file {path} does not exist", "see configs/ for examples")])
    except (IsADirectoryError, PermissionError) as err:
        raise SpecError([Problem("--config", f"{path} cannot be read as a spec file ({err.strerror})",
                                 "give the path of a spec file (see configs/)")])
    except yaml.YAMLError as err:
        raise SpecError([Problem("--config", f"{path} is not valid YAML: {err}")])
    if not isinstance(doc, dict):
        raise SpecError([Problem("--config", f"{path} is not a YAML mapping",
                                 f"start it with `apiVersion: {API_VERSION}` and `kind: {SPEC_KIND}`")])
    # The defaults would fill these in: a file must say what it is.
    missing = [Problem(key, "required in a spec file", f"add `{key}: {value}`")
               for key, value in (("apiVersion", API_VERSION), ("kind", SPEC_KIND)) if key not in doc]
    return doc, missing


def resolve(config_file: str | Path | None = None, env: Mapping[str, str] | None = None,
            flags: dict | None = None) -> dict:
    """Merge the layers, lowest first, and check everything that needs no host.

    flags holds only what the user passed (None = unset). Raises SpecError with every
    problem found; the GPUs are checked against the host later, by plan.make_plan.
    """
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    doc = defaults()
    found = [Problem(FLAG_NAMES.get(field, field), "is empty", "give it a value, or leave the flag out for the default")
             for field, value in flags.items() if value == ""]
    if config_file:
        file_doc, found = load_file(config_file)
        if isinstance(file_doc.get("workers"), list) and "gpusPerWorker" in flags and "workers" not in flags:
            found.append(Problem("--gpus", f"needs a worker count, but {config_file} lists its workers",
                                 "pass --workers too, or edit the list"))
        doc.update(file_doc)
    for var, field in ENV_FIELDS.items():
        if env.get(var):
            doc[field] = env[var]
    simulate = flags.pop("simulate", None)
    doc.update(flags)
    if simulate is not None:
        # The flag sets the count; product and memory stay the file's. It replaces a value that is no object.
        given = short_simulate(doc.get("simulate"))
        doc["simulate"] = {**(given if isinstance(given, dict) else {}), "gpus": simulate}
    if not doc.get("nodeImage"):
        doc["nodeImage"] = versions.default_node_image()
    doc = fill_object_defaults(doc)
    found += problems(doc)
    if found:
        raise SpecError(found)
    return doc


def spec_hash(doc: dict) -> str:
    """Hash of the normalized spec, recorded beside it. (Whether a cluster matches its spec is
    decided by comparing the whole recorded spec, as kindgpu.drift says: cluster.check_same_spec.)"""
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def field_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(spec)"


def schema_problems(doc: dict) -> list[Problem]:
    from jsonschema import Draft202012Validator, validators

    # JSON Schema counts 8.0 as an integer; kindgpu counts with the value (`simulate: 8.0` made
    # range(8.0) fail): an integer field takes whole numbers as YAML writes them, 8.
    strict = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    validator = validators.extend(Draft202012Validator, type_checker=strict)(schema())
    found = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        found.extend(describe(error))
    return found


def describe(error) -> list[Problem]:
    """Problems for one schema error, descending into oneOf/anyOf to the branch the user meant."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        branches = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        meant = [
            errs
            for errs in branches.values()
            if not any(e.validator in ("type", "const") and not e.relative_path for e in errs)
        ]
        if len(meant) == 1:
            return [p for sub in meant[0] for p in describe(sub)]
        return [Problem(field_path(error.absolute_path),
                        f"{error.instance!r} is not valid: {error.schema.get('description', error.message)}")]
    path = field_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        found = []
        for key in sorted(set(error.instance) - set(allowed)):
            hint = difflib.get_close_matches(key, allowed, n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else f"allowed: {', '.join(allowed)}"
            found.append(Problem(field_path([*error.absolute_path, key]), "unknown field", fix))
        return found
    if error.validator == "const":
        return [Problem(path, f"{error.instance!r} is not supported", f"use `{path}: {error.validator_value}`")]
    if error.validator == "pattern" and error.schema.get("description"):
        return [Problem(path, f"{error.instance!r} is not allowed: {error.schema['description']}")]
    if path in ("simulate", "simulate.gpus"):
        return [Problem(path, error.message, simulate_fix())]
    return [Problem(path, error.message)]


# Node labels reach kubelet as --node-labels; it refuses the whole set (and `kind create cluster`
# fails half-way) unless each passes its checks, so kindgpu checks the same rules up front.
# Syntax: apimachinery's IsQualifiedName / IsValidLabelValue
# (staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go).
QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE = rf"({QUALIFIED_NAME})?"
DNS1123_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
NAME_MAX, VALUE_MAX, PREFIX_MAX = 63, 63, 253
# Namespaces: kubelet's ValidateKubeletFlags (cmd/kubelet/app/options/options.go) refuses keys in
# [*.]kubernetes.io/ and [*.]k8s.io/ unless IsKubeletLabel allows them
# (staging/src/k8s.io/kubelet/pkg/apis/well_known_labels.go): these keys, or these namespaces.
KUBELET_LABELS = (
    "kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
    "kubernetes.io/os", "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
)
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")


def in_namespace(namespace: str, domains: Iterable[str]) -> bool:
    return any(namespace == d or namespace.endswith("." + d) for d in domains)


def kubelet_refuses(key: str) -> bool:
    """Kubelet's rule: a kubernetes.io or k8s.io key that is not one kubelet may set itself."""
    namespace = key.split("/", 1)[0] if "/" in key else ""
    return (in_namespace(namespace, ("kubernetes.io", "k8s.io")) and key not in KUBELET_LABELS
            and not in_namespace(namespace, KUBELET_LABEL_NAMESPACES))


def label_key_problem(key: str) -> str | None:
    """What is wrong with a label key, as kubelet would say it; None when it is legal."""
    parts = key.split("/")
    if len(parts) > 2:
        return "not a legal label key: at most one '/', between a prefix and a name"
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            return "not a legal label key: the prefix before '/' is empty"
        if len(prefix) > PREFIX_MAX or not re.fullmatch(DNS1123_SUBDOMAIN, prefix):
            return (f"prefix {prefix!r} is not a DNS subdomain: lowercase letters, digits, '-' and '.', "
                    f"starting and ending with a letter or digit, at most {PREFIX_MAX} characters")
    if not name:
        return "not a legal label key: the name is empty"
    if len(name) > NAME_MAX:
        return f"name {name!r} is {len(name)} characters long; at most {NAME_MAX}"
    if not re.fullmatch(QUALIFIED_NAME, name):
        return (f"name {name!r} is not legal: letters, digits, '-', '_', '.', starting and ending "
                "with a letter or digit")
    return None


def label_problems(labels, where: str, feature_labels: bool = False) -> list[Problem]:
    """What kubelet would refuse in `labels`, and the keys kindgpu sets itself (feature_labels: the
    GPU feature labels are on)."""
    found = []
    if not isinstance(labels, dict):
        return found
    for key, value in labels.items():
        path = f"{where}.{key}"
        bad_key = label_key_problem(key)
        if key in RESERVED_LABELS or key.startswith(RESERVED_LABEL_PREFIX):
            found.append(Problem(path, "label is set by kindgpu", "choose another key"))
        elif feature_labels and gfd.is_feature_key(key):
            found.append(Problem(path, "label is one of GPU Feature Discovery's, which kindgpu sets",
                                 f"choose another key, or set `{gfd.SPEC_SWITCH}: false` to set GFD's "
                                 "labels yourself (or run GFD)"))
        elif bad_key:
            found.append(Problem(path, bad_key))
        elif kubelet_refuses(key):
            found.append(Problem(
                path, "kubelet refuses keys in the kubernetes.io and k8s.io namespaces other than "
                      "its own well-known labels",
                f"use a prefix of your own (e.g. example.com/{key.rpartition('/')[2]}), or a key kubelet "
                f"allows: under {' or '.join(f'[*.]{n}/' for n in KUBELET_LABEL_NAMESPACES)}, or one of "
                f"{', '.join(KUBELET_LABELS)}"))
        if not isinstance(value, str):
            continue
        if "," in value:
            found.append(Problem(path, f"label value {value!r} holds a comma, which Kubernetes forbids",
                                 f"use '_' or '.' instead (e.g. {value.replace(',', '_')!r})"))
        elif len(value) > VALUE_MAX:
            found.append(Problem(path, f"label value is {len(value)} characters long; at most {VALUE_MAX}"))
        elif not re.fullmatch(LABEL_VALUE, value):
            found.append(Problem(path, f"label value {value!r} is not legal: letters, digits, '-', '_', "
                                       "'.', starting and ending with a letter or digit"))
    return found


def is_loopback(address: str) -> bool:
    """True for a loopback IP address (127.0.0.0/8, ::1): reachable from this host only."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except (TypeError, ValueError):
        return False


def remote_api_address(doc: dict) -> str | None:
    """The API server's address when it is not loopback; None when it is (or is not set)."""
    api = doc.get("apiServer")
    address = api.get("address") if isinstance(api, dict) else None
    return address if isinstance(address, str) and not is_loopback(address) else None


def api_server_problems(doc: dict) -> list[Problem]:
    """A non-loopback address opens the cluster's admin API to the network: only when asked."""
    api = doc.get("apiServer")
    if not isinstance(api, dict) or not isinstance(api.get("address"), str):
        return []  # the schema says what is wrong
    try:
        ipaddress.ip_address(api["address"])
    except ValueError:
        # Docker publishes ports on IP addresses only; kind would fail at `docker run`.
        return [Problem("apiServer.address", f"{api['address']!r} is not an IP address", "use 127.0.0.1")]
    if remote_api_address(doc) and api.get("allowRemoteAPI") is not True:
        return [Problem(
            "apiServer.address",
            f"{api['address']} is not a loopback address: the cluster's admin API would be open to "
            "the network, and anyone who can reach this host could try a credential against it",
            "use 127.0.0.1; if other machines must reach the API, also set apiServer.allowRemoteAPI: true")]
    return []


def warnings(doc: dict) -> list[Problem]:
    """What a valid spec still asks for at the user's risk; printed by config and up."""
    address = remote_api_address(doc)
    if not address:
        return []
    port = doc["apiServer"].get("port") or "a random port"
    return [Problem("apiServer.address",
                    f"the cluster's admin API listens on {address} (port {port}), open to the network "
                    "(apiServer.allowRemoteAPI: true)",
                    "use apiServer.address: 127.0.0.1 unless other machines must reach the API")]


def problems(doc: dict) -> list[Problem]:
    """Everything wrong with the spec that needs no host: the schema, labels, apiServer."""
    found = schema_problems(doc)
    features = gfd.enabled(doc)
    found += label_problems(doc.get("labels"), "labels", features)
    workers = doc.get("workers")
    if isinstance(workers, list):
        for i, worker in enumerate(workers):
            if isinstance(worker, dict):
                found += label_problems(worker.get("labels"), f"workers[{i}].labels", features)
        listed = [w.get("gpus") for w in workers if isinstance(w, dict)]
        # A cluster of CPU-only workers has nothing for the device plugin or smoke to do.
        if listed and len(listed) == len(workers) and all(g == [] for g in listed):
            found.append(Problem("workers", "every worker has `gpus: []`",
                                 "give at least one worker a GPU"))
    found += api_server_problems(doc)
    found += simulated_product_problems(doc)
    found += image_problems(doc)
    found += smoke_env_problems(doc)
    if isinstance(doc.get("nodeImage"), str):
        found += gpu_allocation_problems(doc, versions.image_kubernetes(doc["nodeImage"]), known_only=True)
    found += dra_sharing_problems(doc)
    return found


def dra_sharing_problems(doc: dict) -> list[Problem]:
    """`gpuAllocation: dra` with `devicePlugin.sharing`: refused. Time-slicing there is the device
    plugin's (each GPU advertised `replicas` times), and under DRA no device plugin runs; NVIDIA's DRA
    driver shares a GPU otherwise: pods that reference one ResourceClaim share its GPU, and a claim's
    opaque device config (GpuConfig, sharing strategy TimeSlicing) sets how. Not silently ignored."""
    if doc.get("gpuAllocation") != "dra" or not sharing.configured(doc):
        return []
    return [Problem("devicePlugin.sharing",
                    "time-slicing is the device plugin's (replicas per GPU), but gpuAllocation: dra runs no device "
                    "plugin; under DRA a GPU is shared through its ResourceClaim (pods referencing one claim, or "
                    "NVIDIA's DRA driver's TimeSlicing in the claim's opaque device config), not by replicas",
                    "leave devicePlugin.sharing out with gpuAllocation: dra (pods that name one ResourceClaim "
                    "share its GPU), or leave gpuAllocation out (devicePlugin) to time-slice")]


def gpu_allocation_problems(doc: dict, kubernetes: versions.Version | None, known_only: bool = False) -> list[Problem]:
    """`gpuAllocation: dra` needs a node image of Kubernetes 1.34 or newer (resource.k8s.io/v1).

    kubernetes: the node image's version; None when not known, which is a problem unless known_only
    (spec.problems, where only the image's tag tells; plan.make_plan asks the image itself)."""
    if doc.get("gpuAllocation") != "dra" or versions.dra_supported(kubernetes):
        return []
    if kubernetes is None and known_only:
        return []
    minimum = f"1.{versions.DRA_FROM[1]}"
    told = f"runs Kubernetes {versions.show(kubernetes)}" if kubernetes else "does not say which Kubernetes it runs"
    return [Problem("gpuAllocation", f"dra needs Kubernetes {minimum} or newer (resource.k8s.io/v1), but nodeImage "
                                     f"{doc.get('nodeImage')} {told}",
                    f"use a node image of Kubernetes {minimum} or newer (kindest/node:v1.37.0), or leave "
                    "gpuAllocation out for the device plugin")]


# What the GPU runtime reads to pick a pod's GPUs: smoke judges what the pod sees, so these stay its own.
RUNTIME_ENV = ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")


@lru_cache(maxsize=1)
def judged_env() -> frozenset[str]:
    """The variables smoke's payloads are given to judge by (expected GPUs, ranks, NCCL's host separation),
    and the runtime's: none of them may come from smoke.env. NCCL's safety settings may, with their value."""
    given = {**payloads.visibility_env("w", ["GPU-x"]), **payloads.visibility_env("w", expect_none=True),
             **payloads.compute_env("w", 1, ["GPU-x"]), **payloads.collective_env(0, 1, "w0", worker_name="w")}
    return frozenset(given).union(RUNTIME_ENV) - set(payloads.NCCL_SAFETY_ENV)


def smoke_env_problems(doc: dict) -> list[Problem]:
    smoke = doc.get("smoke")
    env = smoke.get("env") if isinstance(smoke, dict) else None
    if not isinstance(env, dict):
        return []
    found = []
    for name, value in env.items():
        if name in judged_env():
            found.append(Problem(f"smoke.env.{name}", "is set by kindgpu in every smoke pod: smoke judges the pod "
                                                      "by it (which GPUs it must see, its rank, NCCL's host)",
                                 f"leave {name} out of smoke.env"))
        elif name in payloads.NCCL_SAFETY_ENV and value != payloads.NCCL_SAFETY_ENV[name]:
            found.append(Problem(f"smoke.env.{name}", f"{value!r} turns back on what kindgpu keeps off in smoke "
                                                      "pods (NVLink multicast can put shared GPUs out of service)",
                                 f"{name}: \"{payloads.NCCL_SAFETY_ENV[name]}\", or leave it out"))
    return found


# The spec groups that name an image by repository and tag apart: an example of each.
REPOSITORIES = {"devicePlugin": ("nvcr.io/nvidia/k8s-device-plugin", "v0.20.0"),
                "draDriver": ("nvcr.io/nvidia/k8s-dra-driver-gpu", "v25.12.0")}
IMAGE_FIX = "an image reference: [registry[:port]/]name[:tag][@digest], the name lowercase (kindest/node:v1.37.0)"


def image_problems(doc: dict) -> list[Problem]:
    """Every image the spec names, checked with Docker's reference grammar: a name no registry or Docker
    could accept fails here, not when a node tries to pull it."""
    found = []
    fields = {"nodeImage": doc.get("nodeImage")}
    for group, names in (("devicePlugin", ("image", "version")), ("draDriver", ("image", "version")),
                         ("smoke", ("cudaImage", "pytorchImage"))):
        section = doc.get(group)
        fields.update({f"{group}.{n}": section.get(n) for n in names if isinstance(section, dict)})
    for field, value in fields.items():
        if not isinstance(value, str) or not value:
            continue  # the schema names what is missing or not a string
        group = field.partition(".")[0]
        if field in ("devicePlugin.version", "draDriver.version"):
            why = imageref.tag_problem(value)
            if why:
                found.append(Problem(field, f"{value!r} {why}", f"a tag such as {REPOSITORIES[group][1]}"))
            continue
        why = imageref.problem(value)
        if why is None and group in REPOSITORIES and ("@" in value or imageref.parse(value).tag):
            why = f"names a tag or digest; {group}.version is the tag"
        if why:
            found.append(Problem(field, f"{value!r}: {why}",
                                 f"the repository alone ({REPOSITORIES[group][0]})" if group in REPOSITORIES
                                 else IMAGE_FIX))
    return found


def simulated_product_problems(doc: dict) -> list[Problem]:
    """A simulated product must make a legal nvidia.com/gpu.product label (GFD's form of its name)."""
    sim = doc.get("simulate")
    name = sim.get("product") if isinstance(sim, dict) else None
    if not isinstance(name, str) or not gfd.enabled(doc):
        return []
    # The longest form it takes: shared GPUs get "-SHARED".
    value = gfd.product(name, replicas=2)
    if len(value) > VALUE_MAX or not re.fullmatch(LABEL_VALUE, value):
        return [Problem("simulate.product", f"{name!r} makes the label value nvidia.com/gpu.product={value!r}, "
                                            f"which Kubernetes refuses (at most {VALUE_MAX} characters: letters, "
                                            "digits, '-', '_', '.', starting and ending with a letter or digit)",
                        "use a shorter product name, as nvidia-smi prints it (e.g. 'NVIDIA H200')")]
    return []


def check(doc: dict) -> None:
    """Raise SpecError listing every problem that needs no host (see problems)."""
    found = problems(doc)
    if found:
        raise SpecError(found)
