"""``BenchResult.plot()``: the figure, wrapped so that it shows itself.

A bare ``matplotlib.figure.Figure`` not made through pyplot shows as ``<Figure size ...>`` in
Jupyter unless ``%matplotlib inline`` ran first. :class:`BenchPlot` renders itself as a PNG (and an
HTML ``<img>`` of it) wherever IPython displays objects, needs no pyplot state and no display in
scripts (``.savefig(path)``), and keeps the Figure at ``.figure``.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from ..arguments import check_number
from .output import output_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .result import BenchRow

#: dots per inch of the image shown in a notebook
DISPLAY_DPI = 100


class BenchPlot:
    """A bench figure that displays itself: an image in Jupyter, a one-line repr elsewhere.

    ``.figure`` is the ``matplotlib.figure.Figure``; ``.savefig(path, **kw)`` writes it; ``.to_png()``
    returns PNG bytes. Other public attributes are the Figure's (``.axes``, ...), so code written
    when ``plot()`` returned the Figure keeps working.
    """

    def __init__(self, figure: Figure, title: str) -> None:
        self.figure = figure
        self.title = title

    def savefig(self, fname: str | os.PathLike[str] | IO[bytes], **kwargs: Any) -> None:
        """``Figure.savefig``: the format follows the file name (or ``format=``). A path's folder
        must exist (``InvalidArgument`` otherwise); a file object is written as it is."""
        if isinstance(fname, (str, os.PathLike)):
            fname = output_path(fname, "savefig(fname)")
        self.figure.savefig(fname, **kwargs)

    def to_png(self, dpi: float = DISPLAY_DPI) -> bytes:
        """The figure as PNG bytes at ``dpi`` dots per inch."""
        check_number(dpi, "dpi", above=0)
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()

    def _repr_png_(self) -> bytes:
        return self.to_png()

    def _repr_html_(self) -> str:
        return self._img(base64.b64encode(self.to_png()).decode("ascii"))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """One rendering for both the image and its HTML (IPython skips the separate hooks)."""
        png = base64.b64encode(self.to_png()).decode("ascii")
        return {"image/png": png, "text/html": self._img(png), "text/plain": repr(self)}

    def _img(self, png_b64: str) -> str:
        return (f"<img src='data:image/png;base64,{png_b64}' alt='{html.escape(self.title, quote=True)}' "
                "style='max-width:100%'>")

    def __repr__(self) -> str:
        return (f"<deploykit BenchPlot {self.title}: .figure is the matplotlib Figure, "
                ".savefig(path) writes it>")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("figure", "title"):
            raise AttributeError(name)
        return getattr(self.figure, name)


def plot_rows(rows: Sequence[BenchRow], title: str) -> BenchPlot:
    """Latency per row (box p25-p75, whiskers p1-p99, log scale) and samples/s against batch size
    per (backend, concurrency)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    lat, thr = fig.subplots(1, 2)
    lat.boxplot([r.latencies * 1e3 for r in rows], whis=(1, 99), showfliers=False)
    lat.set_xticks(range(1, len(rows) + 1), [r.label for r in rows], rotation=35, ha="right",
                   fontsize="small")
    lat.set_ylabel("latency per call (ms)")
    lat.set_yscale("log")
    lat.set_title("latency (box p25-p75, whiskers p1-p99)")
    groups: dict[tuple[str, int], list[BenchRow]] = {}
    for r in rows:
        groups.setdefault((r.backend, r.concurrency), []).append(r)
    for (backend, conc), group in groups.items():
        group = sorted(group, key=lambda r: r.batch)
        thr.plot([r.batch for r in group], [r.samples_per_s for r in group], marker="o",
                 label=f"{backend}, concurrency {conc}")
    thr.set_xscale("log", base=2)
    batches = sorted({r.batch for r in rows})
    thr.set_xticks(batches, [str(b) for b in batches])
    thr.set_xlabel("batch size")
    thr.set_ylabel("samples / s")
    thr.set_title("throughput")
    thr.legend(fontsize="small")
    thr.grid(alpha=0.3)
    fig.suptitle(title)
    return BenchPlot(fig, title)


__all__ = ["DISPLAY_DPI", "BenchPlot", "plot_rows"]
