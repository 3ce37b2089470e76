"""Imports go one way: no module of ``ahl_plugins`` or ``benchmarks`` takes part in an import cycle.

Every ``import`` counts, including the lazy ones inside functions: a lazy
import hides a circle from the interpreter, not from a reader. The one edge
allowed is the package face's lazy ``OSADDetector`` export (docs/architecture.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ahl_plugins", "benchmarks")
#: (importer, imported): ``ahl_plugins/__init__.py`` exports ``OSADDetector`` lazily, the documented exception.
ALLOWED = {("ahl_plugins", "ahl_plugins.detector")}


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the checked packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """The checked modules ``module`` imports anywhere in its file (``from a import b`` counts ``a.b`` when it is one)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                if f"{source}.{alias.name}" in known:
                    found.add(f"{source}.{alias.name}")
                elif source in known:
                    found.add(source)
    found.discard(module)
    return {target for target in found if (module, target) not in ALLOWED}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = module_files(root)
    return {module: imported_modules(module, path, set(files)) for module, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative): each is at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
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
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_the_checker_finds_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    package = tmp_path / "ahl_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from ahl_plugins.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from ahl_plugins import a\n    return a\n")
    (package / "c.py").write_text("from . import a\n")
    (tmp_path / "benchmarks").mkdir()
    assert cycles(import_graph(tmp_path)) == [["ahl_plugins.a", "ahl_plugins.b"]]


def test_no_import_cycles_in_the_library_or_benchmarks() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles (move the shared names into a lower module): " + "; ".join(
        " <-> ".join(group) for group in found
    )
