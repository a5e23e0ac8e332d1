"""Spec drift: how the spec a running cluster was made from may differ from the one asked for.
**A new drift rule goes here**: what `up` changes in place, what is about this host alone, and so
what needs `up --recreate`. cluster.check_same_spec applies it; record.out_of_date says what the
cluster's record lacks. Stdlib only.
"""

from __future__ import annotations

import copy
import json

# Fields `invoke up` changes on a running cluster (the steps apply them); a change of any other
# field of the cluster needs `up --recreate`.
LIVE_FIELDS = (("devicePlugin", "sharing"),)
# Spec fields about this host, not the cluster: a change in them never asks to recreate it.
HOST_FIELDS = ("mergeKubeconfig",)


def changed_fields(recorded: dict, wanted: dict) -> list[str]:
    """The top-level fields whose values differ between two specs, sorted."""
    return sorted(k for k in {*recorded, *wanted} if recorded.get(k) != wanted.get(k))


def spec_differences(recorded: dict, wanted: dict) -> list[str]:
    """Field-by-field differences between the spec a cluster was made with and the one asked for
    (`field: old -> new`), but for HOST_FIELDS."""
    return [f"{k}: {json.dumps(recorded.get(k))} -> {json.dumps(wanted.get(k))}"
            for k in changed_fields(recorded, wanted) if k not in HOST_FIELDS]


def without_live_fields(doc: dict) -> dict:
    """The spec less LIVE_FIELDS: what must match the one a running cluster was made with."""
    doc = copy.deepcopy(doc)
    for *parents, key in LIVE_FIELDS:
        node = doc
        for parent in parents:
            node = node.get(parent) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(key, None)
    return doc


def live_differences(recorded: dict, wanted: dict) -> list[str]:
    """`field: old -> new` for each of LIVE_FIELDS that differs between two specs."""
    def get(doc, path):
        for key in path:
            doc = doc.get(key) if isinstance(doc, dict) else None
        return doc

    return [f"{'.'.join(path)}: {json.dumps(get(recorded, path))} -> {json.dumps(get(wanted, path))}"
            for path in LIVE_FIELDS if get(recorded, path) != get(wanted, path)]


def needs_recreate(recorded: dict, wanted: dict) -> bool:
    """Whether the specs differ in more than what `up` changes in place and what is about this host."""
    return bool(spec_differences(without_live_fields(recorded), without_live_fields(wanted)))
