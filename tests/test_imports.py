"""kindgpu's imports point one way: no circle among its modules, counting the imports inside
functions too (an import moved into a function to dodge a circle still counts). Read with `ast`."""

import ast
from pathlib import Path

from paths import REPO

PACKAGE = REPO / "kindgpu"


def modules() -> dict[str, Path]:
    """{dotted name: file} of kindgpu's modules (a package by its __init__.py), generated code left out."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "_pb2" in path.name:
            continue
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(module: str, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> set[str]:
    """The kindgpu modules an import statement of `module` names (a module, or the package holding a name)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            here = module.split(".") if known[module].name == "__init__.py" else module.split(".")[:-1]
            here = here[: len(here) - (node.level - 1)]
            base = ".".join([*here, *([node.module] if node.module else [])])
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    found = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {module: {target for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, (ast.Import, ast.ImportFrom)) for target in imported(module, node, known)}
            for module, path in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, without recursion)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circle_among_kindgpu_modules():
    graph = import_graph()
    assert len(graph) > 40 and "kindgpu.smoke.run" in graph and "kindgpu.tasks" in graph
    assert circles(graph) == []


def test_the_check_finds_a_circle_and_a_function_level_import():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    known = {"kindgpu": PACKAGE / "__init__.py", "kindgpu.nodes": PACKAGE / "nodes.py",
             "kindgpu.preflight": PACKAGE / "preflight" / "__init__.py",
             "kindgpu.preflight.dockerhost": PACKAGE / "preflight" / "dockerhost.py"}
    inside = ast.parse("def connect():\n    from .preflight.dockerhost import short_error\n")
    (node,) = [n for n in ast.walk(inside) if isinstance(n, ast.ImportFrom)]
    assert imported("kindgpu.nodes", node, known) == {"kindgpu.preflight.dockerhost"}
    (up,) = ast.parse("from .. import nodes").body
    assert imported("kindgpu.preflight.dockerhost", up, known) == {"kindgpu.nodes"}
