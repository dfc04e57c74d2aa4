"""How result objects show themselves in a notebook: one small HTML table helper for all of them."""

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


__all__ = ["html_table"]
