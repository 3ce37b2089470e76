"""``index.html`` of a compare or report directory: the answer (verdicts, headline gains), every plot, the rest.

People would rather open one page than a folder of PNGs and a Markdown file.
The page is built from the same ``summary.md`` text (a small Markdown subset:
headings, tables, lists, paragraphs, *emphasis*), so the numbers on the page
and in the file never differ. Links and images are relative, so the
directory can be moved or copied as a whole.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ahl_plugins.atomic import atomic_write_text

INDEX_FILE = "index.html"
# A compare page leads with its verdicts, then the AUC-ROC tables whose gain columns are the headline numbers.
COMPARE_LEAD = ("Paired gains", "AUC-ROC,")
# Plots that carry the verdicts span the page's width; the others sit side by side at their drawn size.
WIDE_PLOTS = ("forest", "cd_")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1500px; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; white-space: normal; vertical-align: bottom; }
.table { max-width: 100%; overflow-x: auto; }
td.helps { background: #e3f4e3; } td.hurts { background: #fbe3e3; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; max-width: 100%; }
figure.wide { display: block; margin-right: 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; color: #555; }
"""


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=False)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", escaped)


def _cell(text: str, tag: str) -> str:
    kind = text.strip()
    css = f' class="{kind}"' if kind in ("helps", "hurts") else ""
    return f"<{tag}{css}>{_inline(kind)}</{tag}>"


def markdown_html(text: str) -> str:
    """The Markdown subset ``summary.md`` uses, as HTML."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i].strip().strip("|").split("|"))
                i += 1
            rows = [r for r in block if not all(set(c.strip()) <= set("-:") for c in r)]
            out.append('<div class="table"><table>')
            if rows:
                out.append("<tr>" + "".join(_cell(c, "th") for c in rows[0]) + "</tr>")
                out += ["<tr>" + "".join(_cell(c, "td") for c in r) + "</tr>" for r in rows[1:]]
            out.append("</table></div>")
            continue
        heading = re.match(r"^(#{1,4})\s+(.*)$", line)
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def maps_pages(directory: Path, depth: int = 3) -> list[Path]:
    """``index.html`` pages below ``directory`` (maps written there), nearest first."""
    found = []
    for path in sorted(directory.rglob(INDEX_FILE)):
        relative = path.relative_to(directory)
        if len(relative.parts) > 1 and len(relative.parts) <= depth + 1 and relative.parts[0] not in ("plots", "cells"):
            found.append(path)
    return found


def split_sections(markdown: str) -> tuple[str, list[tuple[str, str]]]:
    """(the text before the first ``## `` heading, [(heading, the section's text with its heading)])."""
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in markdown.splitlines():
        if line.startswith("## "):
            sections.append((line[3:].strip(), [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return "\n".join(preamble), [(heading, "\n".join(body)) for heading, body in sections]


def _figure(path: Path, directory: Path) -> str:
    src = html.escape(Path(os.path.relpath(path, directory)).as_posix(), quote=True)
    wide = ' class="wide"' if Path(path).name.startswith(WIDE_PLOTS) else ""
    return (
        f'<figure{wide}><a href="{src}"><img src="{src}" alt="{html.escape(Path(path).stem)}"></a>'
        f"<figcaption>{html.escape(Path(path).name)}</figcaption></figure>"
    )


def write_index(
    directory: str | Path,
    title: str,
    markdown: str,
    plots: Sequence[Path],
    links: Sequence[tuple[str, Path]] = (),
    lead: Sequence[str] = (),
) -> Path:
    """Write ``directory/index.html``, answer first: what was compared (the text before the first section), the
    sections whose headings start with one of ``lead`` (in that order: the verdicts, the headline gains), then
    the plots, the other sections and the links. A reader who stops after one screen has read the result."""
    directory = Path(directory)
    preamble, sections = split_sections(markdown)
    leading = [text for prefix in lead for heading, text in sections if heading.startswith(prefix)]
    rest = [text for heading, text in sections if not any(heading.startswith(prefix) for prefix in lead)]
    preamble = re.sub(r"^# .*$\n?", "", preamble, count=1, flags=re.MULTILINE)  # the page has its own title
    parts = [
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<div id="answer" class="summary">',
        markdown_html("\n".join([preamble, *leading])),
        "</div>",
    ]
    existing = [p for p in plots if Path(p).is_file()]
    if existing:
        parts += ['<div id="plots">', "<h2>Plots</h2>", *(_figure(Path(p), directory) for p in existing), "</div>"]
    if rest:
        parts += ['<div id="details" class="summary">', markdown_html("\n".join(rest)), "</div>"]
    if links:
        parts.append("<h2>Pages</h2><ul>")
        for text, target in links:
            href = html.escape(Path(os.path.relpath(target, directory)).as_posix(), quote=True)
            parts.append(f'<li><a href="{href}">{html.escape(text)}</a></li>')
        parts.append("</ul>")
    parts.append("</body></html>")
    path = directory / INDEX_FILE
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path


def write_compare_index(output: str | Path, summary_md: str, plots: Sequence[Path], title: str) -> Path:
    """A compare directory's page, linking every maps page written below it."""
    output = Path(output)
    plot_dir = output / "plots"
    every_plot = sorted(set(plots) | set(plot_dir.glob("*.png"))) if plot_dir.is_dir() else list(plots)
    links = [(f"anomaly maps: {p.parent.relative_to(output).as_posix()}", p) for p in maps_pages(output)]
    links += [
        (name, output / name) for name in ("summary.md", "summary.json", "results.csv") if (output / name).is_file()
    ]
    return write_index(output, title, summary_md, _forest_first(every_plot), links, lead=COMPARE_LEAD)


def _forest_first(plots: Sequence[Path]) -> list[Path]:
    """Forest plots and CD diagrams lead: they carry the verdicts."""
    return sorted(
        plots, key=lambda p: (not Path(p).name.startswith(("forest", "cd_")), "auc_pr" in Path(p).name, Path(p).name)
    )
