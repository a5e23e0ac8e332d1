"""`invoke status`: the cluster's nodes, labels, GPUs and plugin (cluster.status), and the command
that reaches it."""

from __future__ import annotations

import sys

from .. import cluster, flags, kind, kubeconfig


def run(config_file, checked: dict, *, as_json: bool = False) -> bool:
    """Show the status; whether the cluster is healthy."""
    spec = flags.resolve(config_file, checked)
    doc = cluster.status(spec["name"], note=lambda text: print(text, file=sys.stderr))
    private = kind.own_kubeconfig(spec)
    doc["kubeconfig"] = str(private)
    doc["next"] = kubeconfig.reach_command(spec["name"], private)
    cluster.show_status(doc, as_json)
    if not as_json:
        print(f"next: {doc['next']}")
    return doc["healthy"]
