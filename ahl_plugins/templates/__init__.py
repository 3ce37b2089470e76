"""Package skeletons written by ``ahl plugins new NAME``.

The files under ``plugin/`` are templates (``*.tmpl``, so no tool mistakes
them for code of this package); ``{{name}}``-style fields are filled in and
a folder called ``__module__`` takes the plugin's import name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ahl_plugins.errors import TemplateError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*$")
TEMPLATE = "plugin"


@dataclass(frozen=True)
class PluginNames:
    """Every spelling of one plugin name the skeleton needs."""

    name: str  # entry point, plugin and component name
    module: str  # import package
    dist: str  # distribution (pip) name and folder name
    cls: str  # class-name prefix

    @classmethod
    def of(cls, name: str) -> PluginNames:
        if not NAME_PATTERN.match(name or ""):
            raise TemplateError(
                f"invalid plugin name {name!r}: use lower-case letters and digits, words joined by '_' or '-', "
                "starting with a letter (e.g. 'deepsad' or 'my_model')"
            )
        words = re.split(r"[_-]", name)
        return cls(
            name=name,
            module="ahl_plugin_" + "_".join(words),
            dist="ahl-plugin-" + "-".join(words),
            cls="".join(w.capitalize() for w in words),
        )

    def fields(self) -> dict[str, str]:
        from ahl_plugins import __version__

        return {
            "name": self.name,
            "module": self.module,
            "dist": self.dist,
            "Class": self.cls,
            "ahl_version": __version__,
        }


def _render(text: str, fields: dict[str, str]) -> str:
    for key, value in fields.items():
        text = text.replace("{{" + key + "}}", value)
    leftover = re.search(r"\{\{\s*\w+\s*\}\}", text)
    if leftover:
        raise TemplateError(f"template field {leftover.group(0)} has no value (a bug in ahl-plugins' templates)")
    return text


def template_files() -> list[tuple[str, str]]:
    """``(relative path, text)`` of every template file, paths with ``/``."""
    root = resources.files(__name__) / TEMPLATE
    found: list[tuple[str, str]] = []

    def walk(node, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name == "__pycache__":
                continue
            path = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, path + "/")
            elif child.name.endswith(".tmpl"):
                found.append((path[: -len(".tmpl")], child.read_text(encoding="utf-8")))

    walk(root, "")
    if not found:
        raise TemplateError(f"no template files found in {root}; is ahl-plugins installed with its package data?")
    return found


def write_plugin_package(name: str, directory: str | Path = ".", force: bool = False) -> Path:
    """Write a plugin package skeleton for ``name`` into ``directory/<dist name>``; return that folder.

    The skeleton registers a scorer, a loss and a model all called ``name``
    through the ``ahl_plugins`` entry point, and its test runs the contract kit.
    """
    names = PluginNames.of(name)
    target = Path(directory) / names.dist
    if target.exists() and any(target.iterdir()) and not force:
        raise TemplateError(f"{target} already exists and is not empty; choose another directory or pass --force")
    fields = names.fields()
    for relative, text in template_files():
        path = target / relative.replace("__module__", names.module)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_render(text, fields), encoding="utf-8")
    return target
