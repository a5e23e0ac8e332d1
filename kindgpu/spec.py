"""The cluster spec: defaults < spec file < environment < task flags, then validation.

Validation reports every problem at once, each naming its field: first what the JSON
Schema finds, then the checks it cannot express (GPU sets, the host inventory, labels).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from .errors import SpecError
from .names import API_VERSION, LABEL_GPU_IDS, LABEL_GPU_PRESENT, LABEL_GPU_WORKER, SPEC_KIND

# yaml and jsonschema are imported where used: listing the tasks must not pay for them.

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "cluster.schema.json"

# Environment variables users of the original setup.sh already know, and kindgpu's own.
ENV_FIELDS = {"CLUSTER_NAME": "name", "KINDGPU_NODE_IMAGE": "nodeImage"}

LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
LABEL_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
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


def fill_object_defaults(doc: dict) -> dict:
    """Fill defaults inside the nested objects (apiServer, devicePlugin, simulate, smoke)."""
    props = schema()["properties"]
    for key in ("apiServer", "devicePlugin", "smoke", "simulate"):
        value = doc.get(key)
        if isinstance(value, dict):
            inner = props[key]["properties"]
            doc[key] = {k: copy.deepcopy(p["default"]) for k, p in inner.items() if "default" in p}
            doc[key].update(value)
    return doc


def load_file(path: str | Path) -> dict:
    """Read a spec file; a file that is not YAML mapping is reported like any spec problem."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError([f"--config: file {path} does not exist (see configs/ for examples)"])
    except yaml.YAMLError as err:
        raise SpecError([f"{path}: not valid YAML: {err}"])
    if not isinstance(doc, dict):
        raise SpecError([f"{path}: must be a YAML mapping with apiVersion: {API_VERSION}"])
    missing = [f"{key}: required in a spec file; add `{key}: {value}`"
               for key, value in (("apiVersion", API_VERSION), ("kind", SPEC_KIND)) if key not in doc]
    if missing:
        raise SpecError(missing)
    return doc


def resolve(config_file: str | Path | None = None, env: Mapping[str, str] | None = None,
            flags: dict | None = None) -> dict:
    """Merge the layers, lowest first. flags holds only what the user passed (None = unset)."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    doc = defaults()
    problems = []
    if config_file:
        file_doc = load_file(config_file)
        if isinstance(file_doc.get("workers"), list) and "gpusPerWorker" in flags and "workers" not in flags:
            problems.append(
                f"gpusPerWorker: --gpus needs a worker count, but {config_file} lists its workers; "
                "pass --workers too, or edit the list"
            )
        doc.update(file_doc)
    for var, field in ENV_FIELDS.items():
        if env.get(var):
            doc[field] = env[var]
    simulate = flags.pop("simulate", None)
    doc.update(flags)
    if simulate is not None:
        doc["simulate"] = {**(doc.get("simulate") or {}), "gpus": simulate}
    if problems:
        raise SpecError(problems)
    return fill_object_defaults(doc)


def spec_hash(doc: dict) -> str:
    """Hash of the normalized spec, recorded beside it. (Whether a cluster matches its spec is
    decided by comparing the whole recorded spec: cluster.check_same_spec.)"""
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def field_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(spec)"


def schema_problems(doc: dict) -> list[str]:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema())
    problems = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        problems.extend(describe(error))
    return problems


def describe(error) -> list[str]:
    """One line per real problem, descending into oneOf/anyOf to the branch the user meant."""
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
            return [line for sub in meant[0] for line in describe(sub)]
        return [f"{field_path(error.absolute_path)}: {error.instance!r} is not valid: "
                f"{error.schema.get('description', error.message)}"]
    path = field_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        lines = []
        for key in sorted(set(error.instance) - set(allowed)):
            hint = difflib.get_close_matches(key, allowed, n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else f"allowed: {', '.join(allowed)}"
            lines.append(f"{field_path([*error.absolute_path, key])}: unknown field; {fix}")
        return lines
    if error.validator == "pattern" and error.schema.get("description"):
        return [f"{path}: {error.instance!r} is not allowed: {error.schema['description']}"]
    return [f"{path}: {error.message}"]


def label_problems(labels, where: str) -> list[str]:
    problems = []
    if not isinstance(labels, dict):
        return problems
    for key, value in labels.items():
        path = f"{where}.{key}"
        prefix, _, name = key.rpartition("/")
        if key in RESERVED_LABELS or key.startswith(RESERVED_LABEL_PREFIX):
            problems.append(f"{path}: label is set by kindgpu; choose another key")
        elif not re.fullmatch(LABEL_NAME, name) or len(name) > 63 or (
            prefix and (len(prefix) > 253 or not re.fullmatch(LABEL_PREFIX, prefix))
        ):
            problems.append(
                f"{path}: not a legal label key: [prefix/]name, name at most 63 characters of "
                "letters, digits, '-', '_', '.', starting and ending with a letter or digit"
            )
        if not isinstance(value, str):
            continue
        if "," in value:
            problems.append(
                f"{path}: label value {value!r} holds a comma, which Kubernetes forbids; "
                f"use '_' or '.' instead (e.g. {value.replace(',', '_')!r})"
            )
        elif value and (len(value) > 63 or not re.fullmatch(LABEL_NAME, value)):
            problems.append(
                f"{path}: label value {value!r} is not legal: at most 63 characters of letters, "
                "digits, '-', '_', '.', starting and ending with a letter or digit"
            )
    return problems


def problems(doc: dict) -> list[str]:
    """What the schema finds, then the label rules it cannot express. GPU checks live in plan."""
    found = schema_problems(doc)
    found += label_problems(doc.get("labels"), "labels")
    workers = doc.get("workers")
    if isinstance(workers, list):
        for i, worker in enumerate(workers):
            if isinstance(worker, dict):
                found += label_problems(worker.get("labels"), f"workers[{i}].labels")
    return found
