"""kindgpu GPU-host test rig ONLY: the files the compute and collective smoke image needs from this
machine's Python: its interpreter, standard library, and the distributions torch needs (found
through their metadata, so the rest of a large environment stays out). Prints paths, one a line."""

import os
import re
import sys
import sysconfig
from importlib import metadata


def closure(name, seen, extras=frozenset()):
    """The distribution `name` and what it requires, with the extras asked for (torch asks for
    cuda-toolkit[cudart,nvrtc,...]), recursively. seen: key -> (distribution, extras followed)."""
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen and extras <= seen[key][1]:
        return
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return
    followed = extras | (seen[key][1] if key in seen else frozenset())
    seen[key] = (dist, followed)
    for req in dist.requires or []:
        wanted = re.search(r"""extra\s*==\s*["']([^"']+)""", req)
        if wanted and wanted.group(1) not in followed:
            continue
        named = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", req)
        closure(named.group(1), seen, frozenset(e.strip() for e in (named.group(2) or "").split(",") if e.strip()))


def link_chain(path):
    """A path and every link it goes through (python3 -> python3.12 -> /usr/bin/python3.12)."""
    chain = [path]
    while os.path.islink(path) and len(chain) < 16:
        path = os.path.join(os.path.dirname(path), os.readlink(path))
        chain.append(os.path.abspath(path))
    return chain


dists = {}
# RIG_PYTHON_ROOTS: other roots, to rehearse on a machine without torch (e.g. "yaml").
for root in os.environ.get("RIG_PYTHON_ROOTS", "torch numpy").split():
    closure(root, dists)
# The base interpreter's standard library (in a virtual environment, platstdlib is the environment's
# own lib/, which holds every package).
base = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
paths = {base["stdlib"], base["platstdlib"], os.path.join(sys.prefix, "pyvenv.cfg"),
         "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/bin/sh", "/usr/bin/dash", "/usr/bin/env",
         "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd", "/etc/group"}
paths.update(link_chain(sys.executable))
# An interpreter built with a shared libpython needs its own: another one the image has (the
# distribution's, under /usr/lib) would be loaded instead and break its extension modules.
if sysconfig.get_config_var("Py_ENABLE_SHARED"):
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    for name in {library, sysconfig.get_config_var("LDLIBRARY")}:
        if name:
            paths.update(link_chain(os.path.join(libdir, name)))
for dist, _ in dists.values():
    for f in dist.files or []:
        path = os.path.abspath(dist.locate_file(f))  # as the interpreter finds it
        if "__pycache__" not in path:
            paths.add(path)
# tar takes a directory whole: a file listed under one too would be stored twice (as a link to itself).
dirs = {p for p in paths if os.path.isdir(p) and not os.path.islink(p)}
for p in sorted(p for p in paths if os.path.lexists(p)):
    if not any(p != d and p.startswith(d + "/") for d in dirs):
        print(p)
print(f"# {len(dists)} distributions: {' '.join(sorted(dists))}", file=sys.stderr)
