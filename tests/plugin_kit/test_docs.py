"""docs/plugins.md documents every hook with its exact signature, and every hook has a test.

As datasette does for its plugin hooks: a hook added to ``hookspecs.py``
without documentation or a ``test_hook_<name>`` test fails here.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ahl_plugins import hookspecs
from ahl_plugins.testing import REQUIREMENTS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "plugins.md"
HEADING = re.compile(r"^### `(?P<name>ahl_\w+)\((?P<params>.*)\)(?: -> (?P<returns>.+))?`\s*$", re.MULTILINE)


def hooks() -> dict[str, object]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if callable(fn) and name.startswith("ahl_") and hasattr(fn, f"{hookspecs.PROJECT_NAME}_spec")
    }


def signature_text(fn: object) -> str:
    """``name(param: Annotation, ...) -> Return`` with annotations as written in the source."""
    signature = inspect.signature(fn)

    def annotation(value: object) -> str:
        return value if isinstance(value, str) else inspect.formatannotation(value)

    params = ", ".join(
        p.name if p.annotation is inspect.Parameter.empty else f"{p.name}: {annotation(p.annotation)}"
        for p in signature.parameters.values()
    )
    returns = (
        ""
        if signature.return_annotation is inspect.Signature.empty
        else f" -> {annotation(signature.return_annotation)}"
    )
    return f"{fn.__name__}({params}){returns}"


def documented() -> dict[str, str]:
    text = DOCS.read_text(encoding="utf-8")
    return {
        m["name"]: f"{m['name']}({m['params']})" + (f" -> {m['returns']}" if m["returns"] else "")
        for m in HEADING.finditer(text)
    }


def test_the_hookspecs_are_found() -> None:
    assert len(hooks()) >= 6
    assert "ahl_register_scorers" in hooks()


@pytest.mark.parametrize("hook", sorted(hooks()))
def test_hook_is_documented_with_its_signature(hook: str) -> None:
    docs = documented()
    assert hook in docs, f"{hook} has no '### `{signature_text(hooks()[hook])}`' heading in {DOCS}"
    assert docs[hook] == signature_text(hooks()[hook]), (
        f"{DOCS} documents {docs[hook]!r}, but hookspecs.py declares {signature_text(hooks()[hook])!r}"
    )


def test_docs_document_no_hook_that_does_not_exist() -> None:
    stale = sorted(set(documented()) - set(hooks()))
    assert not stale, f"{DOCS} documents hooks that hookspecs.py no longer has: {stale}"


@pytest.mark.parametrize("hook", sorted(hooks()))
def test_hook_has_a_test(hook: str) -> None:
    pattern = re.compile(rf"^\s*def test_hook_{hook}\b", re.MULTILINE)
    files = [p for p in (ROOT / "tests").rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert files, f"no test function named test_hook_{hook} under tests/; add one that registers a component through it"


def test_every_contract_requirement_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [r for r in REQUIREMENTS if f"| `{r}` |" not in text]
    assert not missing, f"{DOCS} does not explain the contract requirements {missing}"


def test_signature_text_reads_annotations_as_written() -> None:
    def sample(register: int, other) -> None: ...

    assert signature_text(sample) == "sample(register: int, other) -> None"
