"""vpkit's modules import one way: no module imports (at module level or inside a function) a module that
imports it back, directly or through others. A circle makes import order matter and hides which layer a
piece belongs to; this test names the circle when one comes back."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "vpkit"


def module_files(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package under `root`."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_package(name: str, files: dict[str, Path]) -> bool:
    return files[name].name == "__init__.py"


def _top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def import_graph(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its source: `import`, `from ... import` (a name
    that a package only re-exports on first use counts as an import of the submodule defining it), and a call
    given a string that names one of the package's modules exactly (importlib.import_module or a helper of it)."""
    files = module_files(root)
    trees = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in files.items()}
    top_names = {name: _top_level_names(tree) for name, tree in trees.items()}

    def targets_of_from(module: str, base: str, names: list[str]) -> set[str]:
        found = set()
        for name in names:
            child = f"{base}.{name}"
            if child in files:
                found.add(child)
                continue
            found.add(base)
            if _is_package(base, files) and name not in top_names[base]:
                # a lazily exported name (module __getattr__): the submodule that defines it
                found.update(m for m in files if m.rpartition(".")[0] == base and name in top_names[m])
        return found

    graph: dict[str, set[str]] = {}
    for module, tree in trees.items():
        package = module if _is_package(module, files) else module.rpartition(".")[0]
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in files)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                if base in files:
                    edges.update(targets_of_from(module, base, [a.name for a in node.names]))
            elif isinstance(node, ast.Call):  # importlib.import_module("vpkit.x"), or a helper given the name
                edges.update(a.value for a in node.args if isinstance(a, ast.Constant) and a.value in files)
        edges.discard(module)
        graph[module] = edges
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (as a path that ends where it starts) for each group of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_circle_in(group, graph) for group in groups]


def _circle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from the group's first module back to itself, staying inside the group."""
    start = min(group)
    previous = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    path = [node]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no circle in {sorted(group)}")


def test_vpkit_imports_go_one_way():
    cycles = import_cycles(import_graph())
    assert not cycles, "vpkit modules import each other in a circle: " + "; ".join(
        " -> ".join(cycle) for cycle in cycles)


def test_the_checker_sees_circles_through_function_imports_lazy_exports_and_module_strings(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.b import g\n")  # function level
    (pkg / "b.py").write_text("from . import c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "sub" / "__init__.py").write_text("def __getattr__(name):\n    ...\n")
    (pkg / "sub" / "x.py").write_text("LAZY = 1\nRECORD = {'by': 'pkg.d'}\n")  # a mere string: no import
    (pkg / "d.py").write_text("from pkg.sub import LAZY\n")  # through the lazy export: an edge to pkg.sub.x
    (pkg / "sub" / "y.py").write_text("import importlib\nimportlib.import_module('pkg.d')\n")
    (pkg / "e.py").write_text("from .sub import y\n")
    graph = import_graph(pkg)
    assert graph["pkg.d"] == {"pkg.sub", "pkg.sub.x"}
    assert graph["pkg.sub.y"] == {"pkg.d"}
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    (pkg / "sub" / "x.py").write_text("LAZY = 1\ndef f():\n    import pkg.sub.y\n")
    cycles = import_cycles(import_graph(pkg))
    assert ["pkg.d", "pkg.sub.x", "pkg.sub.y", "pkg.d"] in cycles and len(cycles) == 2
