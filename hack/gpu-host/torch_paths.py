"""kindgpu GPU-host test rig ONLY: the files the compute and collective smoke image needs from this
machine's Python: its interpreter, standard library, and the distributions torch needs (found
through their metadata, so the rest of a large environment stays out). Prints paths, one a line."""

import os
import re
import sys
import sysconfig
from importlib import metadata


def closure(name, seen):
    """The distribution `name` and what it requires (no extras), recursively."""
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return
    seen[key] = dist
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        closure(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0], seen)


dists = {}
for root in ("torch", "numpy"):
    closure(root, dists)
paths = {sys.executable, os.path.realpath(sys.executable), sysconfig.get_paths()["stdlib"],
         sysconfig.get_paths()["platstdlib"], os.path.join(sys.prefix, "pyvenv.cfg"),
         "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/bin/sh", "/usr/bin/dash", "/usr/bin/env",
         "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd", "/etc/group"}
for dist in dists.values():
    for f in dist.files or []:
        path = os.path.abspath(dist.locate_file(f))  # as the interpreter finds it
        if "__pycache__" not in path:
            paths.add(path)
for p in sorted(p for p in paths if os.path.lexists(p)):
    print(p)
print(f"# {len(dists)} distributions: {' '.join(sorted(dists))}", file=sys.stderr)
