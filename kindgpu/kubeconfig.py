"""The cluster in the user's kubeconfig, as kind puts it there: merge, unmerge, and how to reach it.

kindgpu keeps a kubeconfig of its own for every cluster (mode 0600, in the state directory); it
reads no other. Merging copies that file's three entries, the cluster, user and context named
`kind-<name>`, into the file kubectl reads (`$KUBECONFIG`, else `~/.kube/config`), chosen as kind
chooses it, and makes the context current. Unmerging removes exactly those three entries, and
clears current-context only when it pointed at that context. No other entry is ever changed.

Files are edited as kind edits them: under kind's own lock (`<file>.lock`, so kind and kindgpu
never interleave), read and written whole with pyyaml (comments are not kept, as with kind),
written atomically (a temporary file in the same directory, then a rename) with the file's mode
and owner kept; a new file gets mode 0600.

Every merge is recorded in the cluster's state directory: `down` removes what kindgpu merged, from
the files it merged into, and only while those entries still point at this cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import KindgpuError
from .state import StateDir

ENV = "KUBECONFIG"
LOCK_WAIT_SECONDS = 5.0
SECTIONS = ("clusters", "users", "contexts")


def key(cluster):
    """The name kind gives the cluster, user and context of a cluster: kind-<name>."""
    return f"kind-{cluster}"


def kubectl_paths(env=None):
    """The files kubectl reads, in order (kind's `paths`): $KUBECONFIG's list, else ~/.kube/config."""
    env = os.environ if env is None else env
    listed = []
    for part in (env.get(ENV) or "").split(os.pathsep):
        if part and part not in listed:
            listed.append(part)
    if listed:
        return [Path(p).expanduser() for p in listed]
    return [Path(env.get("HOME") or os.path.expanduser("~")) / ".kube" / "config"]


def merge_target(env=None):
    """The file a merge writes to, as kind picks it: the only file kubectl reads, else the first
    of $KUBECONFIG's files that exists, else the last one."""
    paths = kubectl_paths(env)
    if len(paths) == 1:
        return paths[0]
    return next((p for p in paths if p.is_file()), paths[-1])


# ---------------------------------------------------------------- reading and writing


def read(path):
    """A kubeconfig file as a dict; {} when it does not exist. Refuses what is not a kubeconfig."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise KindgpuError(f"cannot read {path}: {err}", f"check the file's permissions ({path})") from err
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise KindgpuError(f"{path} is not valid YAML, so kindgpu leaves it alone: {err}",
                           f"repair {path} (or point KUBECONFIG at another file), then run this again") from err
    if doc is None:
        return {}
    if not isinstance(doc, dict) or any(not isinstance(doc.get(s) or [], list) for s in SECTIONS):
        raise KindgpuError(f"{path} is not a kubeconfig (a mapping with lists of clusters, users and "
                           "contexts), so kindgpu leaves it alone",
                           f"repair {path} (or point KUBECONFIG at another file), then run this again")
    return doc


def entries(doc, name):
    """{section: the entry called `name`} of a kubeconfig, for the sections that have one."""
    found = {}
    for section in SECTIONS:
        for entry in doc.get(section) or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                found[section] = entry
                break
    return found


def server_of(doc, name):
    cluster = entries(doc, name).get("clusters") or {}
    return (cluster.get("cluster") or {}).get("server")


def write_atomically(path, doc):
    """Write the kubeconfig whole: a temporary file beside it, then a rename. A symbolic link is
    followed (the file it points at is replaced, the link kept); mode and owner are kept, and a
    new file gets 0600, as kubectl and kind make it."""
    import yaml

    real = Path(os.path.realpath(path))
    real.parent.mkdir(parents=True, exist_ok=True)
    try:
        before = real.stat()
    except FileNotFoundError:
        before = None
    fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".kindgpu-tmp")
    try:
        os.fchmod(fd, stat.S_IMODE(before.st_mode) if before else 0o600)
        if before:
            try:
                os.fchown(fd, before.st_uid, before.st_gid)
            except PermissionError:
                pass  # not root: the file is ours already
        with os.fdopen(fd, "w") as handle:
            handle.write(yaml.safe_dump(doc, default_flow_style=False, sort_keys=False))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, real)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(real.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def locked(path, wait=LOCK_WAIT_SECONDS):
    """kind's lock on a kubeconfig: `<file>.lock`, made exclusively, removed afterwards."""
    lock = Path(f"{os.path.realpath(path)}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    while True:
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            break
        except FileExistsError:
            if time.monotonic() >= deadline:
                raise KindgpuError(f"{path} is locked by another kind or kindgpu command ({lock} exists)",
                                   f"wait for it to finish; if none is running, remove {lock}") from None
            time.sleep(0.1)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def is_private(path, private):
    """True for the cluster's own kubeconfig, which merging and unmerging never edit."""
    try:
        return private is not None and Path(path).exists() and Path(private).exists() and \
            os.path.samefile(path, private)
    except OSError:
        return False


# ---------------------------------------------------------------- merge and unmerge


@dataclass
class Change:
    path: Path
    changed: bool  # False: the file already said so, and was not written
    current: bool = False  # kind-<name> was made the current context


def merge_into(doc, ours, name, set_current):
    """Add or refresh the three entries named `name` (kind's merge: every entry of that name is
    replaced in place, a missing one appended); nothing else changes. Returns the new doc."""
    doc = dict(doc)
    for section in SECTIONS:
        mine = ours[section]
        listed = list(doc.get(section) or [])
        same_name = [i for i, e in enumerate(listed) if isinstance(e, dict) and e.get("name") == name]
        for i in same_name:
            listed[i] = mine
        if not same_name:
            listed.append(mine)
        doc[section] = listed
    if set_current:
        doc["current-context"] = name
    for field, value in (("apiVersion", "v1"), ("kind", "Config")):
        doc.setdefault(field, value)
    return doc


def remove_from(doc, name):
    """Remove the three entries named `name`; clear current-context only if it was that one."""
    doc = dict(doc)
    for section in SECTIONS:
        if doc.get(section):
            doc[section] = [e for e in doc[section] if not (isinstance(e, dict) and e.get("name") == name)]
    if doc.get("current-context") == name:
        doc["current-context"] = ""
    return doc


def remove_entries(path, name, only_if=lambda doc: True) -> bool:
    """Remove the three entries named `name` from the file, under its lock, when only_if(the file's
    doc) holds; whether the file changed."""
    with locked(path):
        doc = read(path)
        if not only_if(doc):
            return False
        new = remove_from(doc, name)
        if new != doc:
            write_atomically(path, new)
        return new != doc


def own_entries(cluster, private):
    """The cluster's three entries from its own kubeconfig (kind's names)."""
    if not Path(private).is_file():
        raise KindgpuError(f"cluster {cluster} has no kubeconfig at {private}",
                           f"create the cluster first: invoke up --name {cluster}")
    found = entries(read(private), key(cluster))
    missing = [s for s in SECTIONS if s not in found]
    if missing:
        raise KindgpuError(f"{private} has no {', '.join(missing)} entry named {key(cluster)}",
                           f"run `invoke up --name {cluster}` to write it again")
    return found


def up_to_date(doc, ours, name):
    """The file reaches the cluster as it is: its cluster and user entries are ours, once each, and
    its context joins them (a namespace the user set on the context since does not count)."""
    once = all(sum(1 for e in doc.get(s) or [] if isinstance(e, dict) and e.get("name") == name) == 1
               for s in SECTIONS)
    found = entries(doc, name)
    context = (found.get("contexts") or {}).get("context") or {}
    return (once and found.get("clusters") == ours["clusters"] and found.get("users") == ours["users"]
            and context.get("cluster") == name and context.get("user") == name)


def merge(cluster, private, *, target=None, set_current=True, only_if_changed=False, env=None):
    """Put the cluster's entries into `target` (default: where kind would, see merge_target).

    set_current: make kind-<name> the current context (always, as kind does, unless
    only_if_changed and the entries were already there as they are: a no-op `up` does not
    take the current context back from another cluster). Records the merge for `down`.
    """
    target = Path(target) if target else merge_target(env)
    if is_private(target, private):
        return Change(target, False)  # KUBECONFIG is the cluster's own file: nothing to merge
    ours = own_entries(cluster, private)
    name = key(cluster)
    with locked(target):
        doc = read(target)
        if only_if_changed and up_to_date(doc, ours, name):
            new = doc
        else:
            new = merge_into(doc, ours, name, set_current)
        changed = new != doc
        if changed:
            write_atomically(target, new)
    record(cluster, target, ours["clusters"]["cluster"].get("server"))
    return Change(target, changed, new.get("current-context") == name != doc.get("current-context"))


def unmerge(cluster, private=None, *, paths=None, env=None):
    """Remove kind-<name> from every file kubectl reads (as `kind delete cluster` does), or from
    `paths`; the cluster's own kubeconfig is never edited. Returns the files changed."""
    name = key(cluster)
    files = [Path(p) for p in (paths or kubectl_paths(env))]
    changed = []
    for path in files:
        if not path.is_file() or is_private(path, private):
            continue
        if remove_entries(path, name):
            changed.append(path)
    forget(cluster, files)
    return changed


# ---------------------------------------------------------------- what kindgpu merged, for down


def record_path(cluster):
    return StateDir.of(cluster).merged


def recorded(cluster):
    """[{path, server}] of the merges kindgpu made for this cluster."""
    try:
        return json.loads(record_path(cluster).read_text()).get("merged", [])
    except (FileNotFoundError, ValueError):
        return []


def record(cluster, target, server):
    path = record_path(cluster)
    if not path.parent.is_dir():
        return  # no state directory: nothing for down to remove later either
    kept = [m for m in recorded(cluster) if m["path"] != str(target)]
    path.write_text(json.dumps({"merged": [*kept, {"path": str(target), "server": server}]}, indent=2) + "\n")


def forget(cluster, paths=None):
    """Drop merges from the record: those into `paths`, or all of them."""
    path = record_path(cluster)
    if not path.exists():
        return
    drop = None if paths is None else {str(Path(p)) for p in paths}
    kept = [] if drop is None else [m for m in recorded(cluster) if m["path"] not in drop]
    path.write_text(json.dumps({"merged": kept}, indent=2) + "\n")


def unmerge_recorded(cluster):
    """What `down` does: remove the entries kindgpu merged, from the files it merged them into,
    where they still point at this cluster (the server it merged). Returns the files changed."""
    name = key(cluster)
    changed = []
    for merged in recorded(cluster):
        path = Path(merged["path"])
        if not path.is_file():
            continue
        # Replaced since by someone else (another server): not ours to remove.
        if remove_entries(path, name, only_if=lambda doc, server=merged["server"]: server_of(doc, name) == server):
            changed.append(path)
    forget(cluster)
    return changed


# ---------------------------------------------------------------- how to reach the cluster


def kubectl_view(env=None):
    """What kubectl makes of its files: (current context, {context name: its entry}, {cluster
    name: its entry}); the first file to name an entry or set current-context wins, as in kubectl."""
    current, contexts, clusters = "", {}, {}
    for path in kubectl_paths(env):
        try:
            doc = read(path)
        except KindgpuError:
            continue
        current = current or doc.get("current-context") or ""
        for entry in doc.get("contexts") or []:
            if isinstance(entry, dict) and entry.get("name"):
                contexts.setdefault(entry["name"], entry.get("context") or {})
        for entry in doc.get("clusters") or []:
            if isinstance(entry, dict) and entry.get("name"):
                clusters.setdefault(entry["name"], entry.get("cluster") or {})
    return current, contexts, clusters


def reach_command(cluster, private, env=None, verb="get nodes"):
    """The one kubectl command that reaches the cluster from this shell: plain `kubectl` when its
    context is current, `--context` when kubectl knows it, else `--kubeconfig` with its own file."""
    name = key(cluster)
    server = server_of(read(private), name) if Path(private).is_file() else None
    current, contexts, clusters = kubectl_view(env)
    context = contexts.get(name)
    if server and context and (clusters.get(context.get("cluster")) or {}).get("server") == server:
        return f"kubectl {verb}" if current == name else f"kubectl --context {name} {verb}"
    return f"kubectl --kubeconfig {shlex.quote(str(private))} {verb}"
