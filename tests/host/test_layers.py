"""The import rules of docs/architecture.md, read from the code: an import only goes down the layers (lazy
imports inside functions included), and no module imports another module's underscore names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: module path prefix -> layer, most specific first (docs/architecture.md's table).
LAYERS: list[tuple[str, int]] = [
    ("ahl_plugins.errors", 0),
    ("ahl_plugins.config", 0),
    ("ahl_plugins.seeding", 0),
    ("ahl_plugins.devices", 0),
    ("ahl_plugins.atomic", 0),
    ("ahl_plugins.contracts", 1),
    ("ahl_plugins.data", 2),
    ("ahl_plugins.features", 3),
    ("ahl_plugins.training", 4),
    ("ahl_plugins.ahl", 4),
    ("ahl_plugins.registry", 5),
    ("ahl_plugins.plugins", 5),
    ("ahl_plugins.hookspecs", 5),
    ("builtin_plugins", 5),  # plugins: built on layers 0-4 and the hook markers, loaded dynamically by the host
    ("ahl_plugins.detector", 6),
    ("ahl_plugins.resolve", 6),
    ("ahl_plugins.components", 6),
    ("ahl_plugins.inputs", 6),
    ("ahl_plugins.fitting", 6),
    ("ahl_plugins.persistence", 6),
    ("ahl_plugins.model_files", 6),
    ("ahl_plugins.presets", 6),
    ("ahl_plugins.maps", 6),
    ("ahl_plugins.map_scoring", 6),
    ("ahl_plugins.map_classifier", 6),
    ("ahl_plugins.profile", 6),
    ("ahl_plugins.drift", 6),
    ("ahl_plugins.testing", 6),
    ("ahl_plugins.templates", 6),
    ("ahl_plugins.evaluation", 7),
    ("ahl_plugins.cli", 8),
    ("ahl_plugins.__main__", 8),
    ("benchmarks", 9),
]
#: The package face exports OSADDetector (and its version) lazily: the one import allowed to run upwards.
FACE = "ahl_plugins"


def layer(module: str) -> int | None:
    for prefix, number in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return number
    return None


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in ("ahl_plugins", "builtin_plugins", "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found.append((name.removesuffix(".__init__"), path))
    return found


def imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """``(imported module, names taken from it, line)`` for every import, at any depth of the file."""
    out = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.append((base, [alias.name for alias in node.names], node.lineno))
    return out


def test_every_module_has_a_layer():
    missing = [name for name, _ in modules() if layer(name) is None and name != FACE]
    assert not missing, f"modules without a layer in docs/architecture.md: {missing}"


def test_imports_only_go_down_the_layers():
    upward = []
    for name, path in modules():
        own = layer(name)
        if own is None:
            continue
        for target, _names, line in imports(name, path):
            other = layer(target)
            if other is not None and other > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} (layer {own}) imports {target} (layer {other})")
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


@pytest.mark.parametrize("package", ["ahl_plugins", "builtin_plugins", "benchmarks"])
def test_no_module_imports_another_modules_underscore_names(package):
    private = []
    for name, path in modules():
        if not name.startswith(package):
            continue
        for target, names, line in imports(name, path):
            if target.split(".")[0] in ("ahl_plugins", "builtin_plugins", "benchmarks"):
                private += [
                    f"{path.relative_to(ROOT)}:{line} {target}.{n}"
                    for n in names
                    if n.startswith("_") and not n.startswith("__")
                ]
    assert not private, f"underscore names imported across modules: {private}"
