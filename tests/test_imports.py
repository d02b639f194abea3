"""No import circles between lijian's modules, and the HTTP layers import downwards only.

Every import counts, also one inside a function or under ``TYPE_CHECKING``: a circle
hidden that way still means two modules that cannot be read (or changed) one at a time.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "lijian"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The lijian modules ``path`` imports (``from a import b``: ``a.b`` if a module)."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for imported in names:
            # The deepest module the name points at (a class or function: its module).
            name = imported
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != me and name != "lijian":
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph = {_module_name(p): _imports(p, modules) for p in paths}
    # A package's __init__ re-exporting its modules is not a dependency of those modules.
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root, deps in graph.items():
        if root in index:
            continue
        work = [(root, iter(sorted(deps)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]


def test_no_module_of_lijian_imports_itself_round_about() -> None:
    graph = _graph()
    assert len(graph) > 50  # the whole package was read
    assert _circles(graph) == []


def test_the_http_layers_import_downwards_only() -> None:
    graph = _graph()
    http = {m for m in graph if m.startswith("lijian.http.")}
    assert {d for d in graph["lijian.http.types"] if d in http} == set()
    above_the_pipeline = {"lijian.http.api", "lijian.http.extras", "lijian.http.openapi"}
    assert graph["lijian.http.app"] & (above_the_pipeline | {"lijian.http.assembly"}) == set()
    assert {"lijian.http.api", "lijian.http.app", "lijian.http.extras"} <= graph[
        "lijian.http.assembly"
    ]
    assert "lijian.sim.runner" not in graph["lijian.sim.metrics"]
