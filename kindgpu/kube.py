"""Kubernetes through the official client, with the cluster's own kubeconfig."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property

from .errors import KindgpuError

HASH_ANNOTATION = "kindgpu.dev/manifest-hash"


def manifest_hash(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


class Kube:
    """Lazily built API clients for one cluster."""

    def __init__(self, kubeconfig):
        self.kubeconfig = kubeconfig  # a path, or the parsed kubeconfig itself

    @classmethod
    def for_kind_cluster(cls, name):
        """The API of a running kind cluster, whatever kubeconfig it was written to."""
        import yaml

        from . import cmd

        result = cmd.run(["kind", "get", "kubeconfig", "--name", name], check=False)
        if result.returncode != 0:
            raise KindgpuError(f"cluster {name} is not running (kind get kubeconfig: "
                               f"{result.stderr.strip() or result.stdout.strip()}); create it with `invoke up`")
        return cls(yaml.safe_load(result.stdout))

    @cached_property
    def api_client(self):
        from kubernetes import config

        try:
            if isinstance(self.kubeconfig, dict):
                return config.new_client_from_config_dict(self.kubeconfig)
            return config.new_client_from_config(config_file=str(self.kubeconfig))
        except Exception as err:  # the client raises plain exceptions for unreadable configs
            raise KindgpuError(f"cannot load the cluster's kubeconfig: {err}") from err

    @cached_property
    def core(self):
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    @cached_property
    def apps(self):
        from kubernetes import client

        return client.AppsV1Api(self.api_client)

    @cached_property
    def batch(self):
        from kubernetes import client

        return client.BatchV1Api(self.api_client)

    def nodes(self):
        return self.core.list_node(_request_timeout=10).items

    def pod_log(self, name, namespace, tail_lines=None):
        """A pod's log as the container wrote it: the client's own decoding mangles JSON lines."""
        kwargs = {"tail_lines": tail_lines} if tail_lines else {}
        response = self.core.read_namespaced_pod_log(name, namespace, _preload_content=False,
                                                     _request_timeout=10, **kwargs)
        return response.data.decode(errors="replace")

    def apply(self, obj):
        """Create, or replace when what kindgpu wrote last differs: idempotent, no needless writes."""
        from kubernetes.client.exceptions import ApiException

        obj = json.loads(json.dumps(obj))
        digest = manifest_hash(obj)
        obj["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = digest
        kind, meta = obj["kind"], obj["metadata"]
        read, create, replace = self._verbs(kind)
        try:
            current = read(meta["name"], meta["namespace"])
        except ApiException as err:
            if err.status != 404:
                raise
            create(meta["namespace"], obj)
            return
        if (current.metadata.annotations or {}).get(HASH_ANNOTATION) != digest:
            replace(meta["name"], meta["namespace"], obj)

    def current_hash(self, kind, name, namespace):
        from kubernetes.client.exceptions import ApiException

        try:
            obj = self._verbs(kind)[0](name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return (obj.metadata.annotations or {}).get(HASH_ANNOTATION, "")

    def _verbs(self, kind):
        verbs = {
            "ConfigMap": (self.core.read_namespaced_config_map, self.core.create_namespaced_config_map,
                          self.core.replace_namespaced_config_map),
            "DaemonSet": (self.apps.read_namespaced_daemon_set, self.apps.create_namespaced_daemon_set,
                          self.apps.replace_namespaced_daemon_set),
        }[kind]
        return verbs  # (read(name, ns), create(ns, body), replace(name, ns, body))


def transient_errors():
    """Errors that mean "not yet" while a cluster starts: connection refused, 5xx, timeouts."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    return (urllib3.exceptions.HTTPError, ApiException, ConnectionError, TimeoutError, OSError)
