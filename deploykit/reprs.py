"""How result objects show themselves: one small HTML table helper for notebooks, and one text
helper for the name/value reports (export, TFLite conversion, bundles) in a terminal."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence


def html_table(title: str, rows: Iterable[Sequence[str]], header: Sequence[str] = (),
               subtitle: str = "") -> str:
    """A titled HTML table of plain-text cells (escaped here), left-aligned, for ``_repr_html_``."""
    esc = html.escape
    cell = "style='text-align:left'"
    head = "".join(f"<th {cell}>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td {cell}>{esc(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    sub = f"<br>{esc(subtitle)}" if subtitle else ""
    return (f"<div><b>{esc(title)}</b>{sub}<table>"
            + (f"<tr>{head}</tr>" if head else "") + f"{body}</table></div>")


def text_rows(title: str, rows: Sequence[tuple[str, str]]) -> str:
    """``title`` then one indented line per (name, value), the names padded to one width."""
    width = max((len(k) for k, _ in rows), default=0)
    return title + "".join(f"\n  {k.ljust(width)}  {v}" for k, v in rows)


__all__ = ["html_table", "text_rows"]
