"""Writing sections out: one self-contained HTML page, and Markdown with the figures as PNG files.

At any width the page does not scroll sideways: a table wider than the text scrolls inside its own box,
long words (paths, labels) wrap, and figures shrink to the width.

The HTML page embeds every figure as a base64 `data:` URI and its style inline, loads nothing from
anywhere and runs no script, so it can be mailed or archived as one file. All text is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attribench_core.report.content import Figure, Section, Table

TITLE = "attribench report"
FIGURES = "figures"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #fff; }
main { max-width: 1100px; margin: 0 auto; padding: 1rem 2rem 3rem; }
p, li, figcaption, caption { overflow-wrap: anywhere; }
td, th { overflow-wrap: break-word; }
.scroll { overflow-x: auto; max-width: 100%; }
h1 { margin-bottom: 0.2rem; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2.5rem; }
.meta { color: #666; }
nav ol { columns: 2; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
caption { caption-side: bottom; text-align: left; color: #666; font-size: 0.8rem; padding-top: 0.3rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; }
figcaption { color: #666; font-size: 0.8rem; }
.table-title { font-weight: 600; margin: 1rem 0 0; }
"""


def cell_text(value: Any) -> str:
    """A table cell as text: floats with 3 decimals (3 significant digits when tiny or huge), '–' for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if value != 0 and not 1e-3 <= abs(value) < 1e5 else f"{value:.3f}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


# -- HTML ---------------------------------------------------------------------------------------------


def _td(value: Any) -> str:
    numeric = ' class="num"' if _is_number(value) else ""
    return f"<td{numeric}>{html.escape(cell_text(value))}</td>"


def _html_table(table: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in table.rows)
    caption = f"<caption>{e(table.caption)}</caption>" if table.caption else ""
    return (
        f'<p class="table-title">{e(table.title)}</p><div class="scroll">'
        f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _html_figure(figure: Figure) -> str:
    e = html.escape
    data = base64.b64encode(figure.png).decode("ascii")
    caption = f": {e(figure.caption)}" if figure.caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{e(figure.title)}">'
        f"<figcaption><strong>{e(figure.title)}</strong>{caption}</figcaption></figure>"
    )


def html_page(sections: list[Section], subtitle: str) -> str:
    """The whole report as one HTML document."""
    e = html.escape
    toc = "".join(f'<li><a href="#s{i}">{e(s.title)}</a></li>' for i, s in enumerate(sections, 1))
    parts = []
    for i, section in enumerate(sections, 1):
        text = "".join(f"<p>{e(p)}</p>" for p in _paragraphs(section.text))
        blocks = "".join(_html_table(b) if isinstance(b, Table) else _html_figure(b) for b in section.blocks)
        parts.append(f'<section id="s{i}"><h2>{e(section.title)}</h2>{text}{blocks}</section>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{e(TITLE)}</title><style>{STYLE}</style></head>'
        f'<body><main><h1>{e(TITLE)}</h1><p class="meta">{e(subtitle)}</p>'
        f"<nav><h2>Contents</h2><ol>{toc}</ol></nav>{''.join(parts)}</main></body></html>\n"
    )


# -- Markdown -----------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def _md_cell(value: Any) -> str:
    return cell_text(value).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> Iterator[str]:
    yield f"**{_md_cell(table.title)}**"
    yield ""
    yield "| " + " | ".join(_md_cell(c) for c in table.columns) + " |"
    numeric = [any(_is_number(row[j]) for row in table.rows) for j in range(len(table.columns))]
    yield "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    for row in table.rows:
        yield "| " + " | ".join(_md_cell(v) for v in row) + " |"
    if table.caption:
        yield ""
        yield f"*{_md_cell(table.caption)}*"
    yield ""


def markdown(sections: list[Section], subtitle: str) -> tuple[str, dict[str, bytes]]:
    """The report as Markdown, and its figures by relative path (`figures/fig-01-<slug>.png`)."""
    lines = [f"# {TITLE}", "", subtitle, "", "## Contents", ""]
    anchors: dict[str, int] = {}
    for section in sections:
        anchor = slug(section.title)
        seen = anchors.get(anchor, 0)
        anchors[anchor] = seen + 1
        lines.append(f"1. [{section.title}](#{anchor}{f'-{seen}' if seen else ''})")
    files: dict[str, bytes] = {}
    for section in sections:
        lines += ["", f"## {section.title}", ""]
        for paragraph in _paragraphs(section.text):
            lines += [paragraph, ""]
        for block in section.blocks:
            if isinstance(block, Table):
                lines += list(_md_table(block))
                continue
            path = f"{FIGURES}/fig-{len(files) + 1:02d}-{slug(block.title)[:40].strip('-')}.png"
            files[path] = block.png
            lines += [f"![{block.title}]({path})", ""]
            if block.caption:
                lines += [f"*{block.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n", files


def write(sections: list[Section], out: Path, formats: tuple[str, ...], subtitle: str) -> list[Path]:
    """Write `index.html` and/or `report.md` (with `figures/`) into `out`; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "html" in formats:
        page = out / "index.html"
        page.write_text(html_page(sections, subtitle), encoding="utf-8")
        written.append(page)
    if "md" in formats:
        text, files = markdown(sections, subtitle)
        folder = out / FIGURES
        folder.mkdir(exist_ok=True)
        for stale in folder.glob("fig-*.png"):  # figures of an earlier report into the same folder
            stale.unlink()
        for name, png in files.items():
            (out / name).write_bytes(png)
        page = out / "report.md"
        page.write_text(text, encoding="utf-8")
        written.append(page)
    return written
