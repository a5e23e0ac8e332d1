"""Kubernetes through the official client, with the cluster's own kubeconfig.

Where a change goes: a kind of object kindgpu reads or writes, Kube._verbs; what counts as "the
cluster does not answer yet", is_transient (attempt and the waits use it); what a pod's status
says, pods.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from . import kind
from .errors import KindgpuError
from .wait import Seen, WaitTimeout, wait_for

if TYPE_CHECKING:
    from kubernetes.client import V1Node, V1Pod

# kubernetes, urllib3 and yaml are imported where used: the Kubernetes client alone takes most of
# a second to import, which tasks that do not talk to a cluster must not pay.

HASH_ANNOTATION = "kindgpu.dev/manifest-hash"
REQUEST_TIMEOUT = 10  # seconds for one API call; the waits around calls retry them
T = TypeVar("T")


def manifest_hash(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


class Kube:
    """Lazily built API clients for one cluster."""

    def __init__(self, kubeconfig: Path | dict):
        self.kubeconfig = kubeconfig  # a path, or the parsed kubeconfig itself

    @classmethod
    def for_kind_cluster(cls, name: str) -> Kube:
        """The API of a running kind cluster, whatever kubeconfig it was written to."""
        import yaml

        result = kind.get_kubeconfig(name, check=False)
        if result.returncode != 0:
            raise KindgpuError(f"cluster {name} is not running (kind get kubeconfig: "
                               f"{result.stderr.strip() or result.stdout.strip()})", "create it with `invoke up`")
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

    @cached_property
    def resource(self):
        from kubernetes import client

        return client.ResourceV1Api(self.api_client)

    @cached_property
    def rbac(self):
        from kubernetes import client

        return client.RbacAuthorizationV1Api(self.api_client)

    def resource_slices(self) -> list[dict]:
        """Every ResourceSlice (resource.k8s.io/v1) as the API writes it (camelCase keys)."""
        found = self.resource.list_resource_slice(_request_timeout=REQUEST_TIMEOUT).items
        return [self.api_client.sanitize_for_serialization(s) for s in found]

    def nodes(self) -> list[V1Node]:
        """The cluster's Kubernetes Node objects (nodes.py's Nodes are their containers)."""
        return self.core.list_node(_request_timeout=REQUEST_TIMEOUT).items

    def pods(self, namespace: str, selector: str) -> list[V1Pod]:
        return self.core.list_namespaced_pod(namespace, label_selector=selector,
                                             _request_timeout=REQUEST_TIMEOUT).items

    def pod_log(self, name: str, namespace: str, tail_lines: int | None = None, previous: bool = False) -> str:
        """A pod's log as the container wrote it: the client's own decoding mangles JSON lines.
        `previous`: the log of the container that ran before the current one (a crash's)."""
        kwargs = {"tail_lines": tail_lines} if tail_lines else {}
        if previous:
            kwargs["previous"] = True
        response = self.core.read_namespaced_pod_log(name, namespace, _preload_content=False,
                                                     _request_timeout=REQUEST_TIMEOUT, **kwargs)
        return response.data.decode(errors="replace")

    def get(self, kind: str, name: str, namespace: str | None = None) -> Any | None:
        """The object, or None when it does not exist."""
        return none_if_absent(self._verbs(kind).read, name, namespace, _request_timeout=REQUEST_TIMEOUT)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        """Delete the object; fine when it is not there."""
        none_if_absent(self._verbs(kind).delete, name, namespace, _request_timeout=REQUEST_TIMEOUT)

    def apply(self, obj: dict) -> None:
        """Create, or replace when what kindgpu wrote last differs: idempotent, no needless writes."""
        obj = json.loads(json.dumps(obj))
        digest = manifest_hash(obj)
        obj["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = digest
        kind, meta = obj["kind"], obj["metadata"]
        verbs = self._verbs(kind)
        namespace = meta.get("namespace")  # none for cluster-scoped kinds
        current = self.get(kind, meta["name"], namespace)
        if current is None:
            verbs.create(namespace, obj)
        elif (current.metadata.annotations or {}).get(HASH_ANNOTATION) != digest:
            verbs.replace(meta["name"], namespace, obj)

    def server_version(self) -> tuple[int, int, int] | None:
        """The API server's Kubernetes version, (1, 37, 2); None when it says none kindgpu can read."""
        found = re.match(r"v(\d+)\.(\d+)\.(\d+)", self._raw("GET", "/version").get("gitVersion", ""))
        return (int(found[1]), int(found[2]), int(found[3])) if found else None

    def served_versions(self, group: str, resource: str) -> list[str]:
        """The apiVersions ("group/version") in which the API server serves a resource, the group's preferred
        first: for kinds the Python client does not know (DeviceTaintRule), found through discovery."""
        found = none_if_absent(self._raw, "GET", f"/apis/{group}")
        versions = [v["groupVersion"] for v in (found or {}).get("versions", [])]
        return [v for v in versions
                if any(r.get("name") == resource for r in (self._raw("GET", f"/apis/{v}") or {}).get("resources", []))]

    def create_raw(self, api_version: str, plural: str, obj: dict) -> dict:
        """Create a cluster-scoped object of a kind the Python client does not know, by its path."""
        return self._raw("POST", f"/apis/{api_version}/{plural}", obj)

    def get_raw(self, api_version: str, plural: str, name: str) -> dict | None:
        return none_if_absent(self._raw, "GET", f"/apis/{api_version}/{plural}/{name}")

    def delete_raw(self, api_version: str, plural: str, name: str) -> None:
        """Delete it; fine when it is not there."""
        none_if_absent(self._raw, "DELETE", f"/apis/{api_version}/{plural}/{name}")

    def _raw(self, method: str, path: str, body: dict | None = None) -> Any:
        response = self.api_client.call_api(path, method, body=body, auth_settings=["BearerToken"],
                                            header_params={"Accept": "application/json",
                                                           "Content-Type": "application/json"},
                                            _return_http_data_only=True, _preload_content=False,
                                            _request_timeout=REQUEST_TIMEOUT)
        return json.loads(response.data or b"null")

    def current_hash(self, kind: str, name: str, namespace: str | None) -> str | None:
        """The manifest hash kindgpu wrote on the object ("" when none); None when it does not exist."""
        obj = self.get(kind, name, namespace)
        return None if obj is None else (obj.metadata.annotations or {}).get(HASH_ANNOTATION, "")

    def _verbs(self, kind: str) -> Verbs:
        core, apps = self.core, self.apps
        if kind == "Namespace":  # not namespaced: the namespace arguments are ignored
            return Verbs(lambda name, _, **kw: core.read_namespace(name, **kw),
                         lambda _, body: core.create_namespace(body),
                         lambda name, _, body: core.replace_namespace(name, body),
                         lambda name, _, **kw: core.delete_namespace(name, **kw))
        cluster_scoped = {
            "DeviceClass": ("resource", "device_class"),
            "ClusterRole": ("rbac", "cluster_role"),
            "ClusterRoleBinding": ("rbac", "cluster_role_binding"),
        }
        if kind in cluster_scoped:  # the namespace arguments are ignored
            api, what = cluster_scoped[kind]
            api = getattr(self, api)
            read, create = getattr(api, f"read_{what}"), getattr(api, f"create_{what}")
            replace, delete = getattr(api, f"replace_{what}"), getattr(api, f"delete_{what}")
            return Verbs(lambda name, _, **kw: read(name, **kw), lambda _, body: create(body),
                         lambda name, _, body: replace(name, body), lambda name, _, **kw: delete(name, **kw))
        return {
            "ServiceAccount": Verbs(core.read_namespaced_service_account, core.create_namespaced_service_account,
                                    core.replace_namespaced_service_account, core.delete_namespaced_service_account),
            "ConfigMap": Verbs(core.read_namespaced_config_map, core.create_namespaced_config_map,
                               core.replace_namespaced_config_map, core.delete_namespaced_config_map),
            "DaemonSet": Verbs(apps.read_namespaced_daemon_set, apps.create_namespaced_daemon_set,
                               apps.replace_namespaced_daemon_set, apps.delete_namespaced_daemon_set),
            "Service": Verbs(core.read_namespaced_service, core.create_namespaced_service,
                             core.replace_namespaced_service, core.delete_namespaced_service),
        }[kind]


class Verbs(NamedTuple):
    """The calls of one kind: read(name, ns), create(ns, body), replace(name, ns, body), delete(name, ns)."""

    read: Callable
    create: Callable
    replace: Callable
    delete: Callable


def none_if_absent(call: Callable[..., T], *args, **kwargs) -> T | None:
    """call(*args), or None when the API answers 404: "not found" is None, written once."""
    from kubernetes.client.exceptions import ApiException

    try:
        return call(*args, **kwargs)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def is_transient(err: BaseException, *, own_cluster: bool = True) -> bool:
    """Whether an error means "not yet" while a cluster starts or restarts: the one place that says so.

    Those errors are: no connection, TLS not ready or a timeout (the kubernetes client raises urllib3's
    errors, Docker's client raises OSErrors), and HTTP 5xx or 429 from an API server that is starting.
    On a cluster kindgpu made, a 403 too: its admin credentials are refused only while kubeadm's RBAC
    is not yet in the restarted API server's cache (every wait is bounded, so a real refusal still ends).
    On a cluster kindgpu did not make (own_cluster=False) a 401 or 403 is final.
    """
    import urllib3
    from kubernetes.client.exceptions import ApiException

    if isinstance(err, ApiException):
        # status 0: no HTTP answer
        return not err.status or err.status == 429 or err.status >= 500 or (own_cluster and err.status == 403)
    return isinstance(err, (urllib3.exceptions.HTTPError, OSError))


def attempt(call: Callable[[], T], *, own_cluster: bool = True) -> tuple[T | None, Exception | None]:
    """call(), and whether the cluster did not answer yet: (its value, None), or (None, the error)
    when the error is transient (is_transient). Any other error is raised."""
    try:
        return call(), None
    except Exception as err:
        if not is_transient(err, own_cluster=own_cluster):
            raise
        return None, err


STARTUP_TIMEOUT = 120  # seconds a command waits for a (re)starting API server before it says so


def short_reason(err: BaseException) -> str:
    """An API error in a few words: 'connection refused', 'TLS not ready', 'HTTP 403 Forbidden'."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(err, ApiException) and err.status:
        return f"HTTP {err.status} {err.reason or ''}".strip()
    text = str(err)
    for words, said in (("SSL", "TLS not ready"), ("refused", "connection refused"), ("timed out", "timed out"),
                        ("reset", "connection reset")):
        if words in text:
            return said
    return type(err).__name__


def wait_answering(kube: Kube, cluster: str, note: Callable[[str], None], timeout: float = STARTUP_TIMEOUT,
                   interval: float = 1.0) -> None:
    """Wait, bounded and said once, until the API server of a cluster kindgpu made answers a read its RBAC
    governs (a restarted control plane refuses connections, then TLS, then kubeadm's RBAC, for seconds)."""
    said = False

    def probe():
        nonlocal said
        try:
            kube.core.list_namespaced_config_map("kube-system", limit=1, _request_timeout=REQUEST_TIMEOUT)
        except Exception as err:
            if not is_transient(err):
                raise
            if not said:
                note(f"waiting for the API server of {cluster} ({short_reason(err)}), up to {timeout:.0f}s")
                said = True
            return Seen(last=short_reason(err))
        return Seen(done=True)

    try:
        wait_for(probe, what=f"the API server of {cluster}", timeout=timeout, interval=interval)
    except WaitTimeout as err:
        raise KindgpuError(f"the API server of {cluster} did not answer in {timeout:.0f}s "
                           f"({str(err).rpartition('last seen: ')[2]})",
                           f"`docker ps --filter name={cluster}-control-plane` shows whether it runs; "
                           "`invoke up` starts a stopped one and waits for it") from err
