"""What ``dk.bench`` returns: one row per (backend, batch, concurrency), shown as a text table,
an HTML table in Jupyter, plain dicts, JSON, CSV, a pandas DataFrame or a matplotlib figure."""

from __future__ import annotations

import csv
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .output import output_path

if TYPE_CHECKING:
    import pandas

    from .plot import BenchPlot

#: The columns of ``to_dicts()``/CSV, in order; ``settings`` holds the rest of what was used.
COLUMNS = ("backend", "batch", "concurrency", "load_ms", "first_ms", "p50_ms", "p90_ms", "p99_ms",
           "mean_ms", "min_ms", "max_ms", "throughput", "samples_per_s", "peak_rss_mb", "n",
           "device", "threads", "providers", "runtime_version")


@dataclass
class BenchRow:
    """One measured configuration. Times in ms; ``throughput`` in calls/s, ``samples_per_s`` =
    throughput x batch; ``peak_rss_mb`` in MiB above the RSS before loading (see docs/bench.md)."""

    backend: str
    batch: int
    concurrency: int
    load_ms: float | None
    first_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    throughput: float
    samples_per_s: float
    peak_rss_mb: float | None
    n: int
    device: str
    threads: int | None
    providers: list[str] | None
    runtime_version: str | None
    #: seconds per timed call, for the latency plot (not in ``to_dicts``)
    latencies: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    #: wall seconds of the timed calls (``n / throughput``; not in ``to_dicts``)
    timed_s: float | None = field(repr=False, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in COLUMNS}

    @property
    def label(self) -> str:
        return f"{self.backend} b={self.batch} c={self.concurrency}"

    def __repr__(self) -> str:
        return (f"<deploykit BenchRow {self.label}: p50 {self.p50_ms:.4g} ms, p99 {self.p99_ms:.4g} ms, "
                f"{self.throughput:.4g} calls/s, n={self.n}, {self.device}>")

    def _repr_html_(self) -> str:
        return _html_table(f"deploykit.BenchRow {self.label}", [self.to_dict()], "")


@dataclass
class BenchResult:
    """Rows plus how they were measured; every caveat is in ``notes``."""

    model: str
    rows: list[BenchRow]
    #: how it was measured: clock, warm-up, minimum samples, duration/iterations, memory method
    method: dict[str, Any]
    #: each input as ``name: dtype[shape]`` at the first batch size, and whether it was made up
    inputs: list[str]
    synthesized: bool
    #: False when made-up inputs may time differently from real data (see ``notes``)
    representative: bool
    notes: list[str] = field(default_factory=list)
    #: backends left out of ``backends="all"``, and why
    skipped: dict[str, str] = field(default_factory=dict)

    # -- plain data ------------------------------------------------------------------------
    def to_dicts(self) -> list[dict[str, Any]]:
        """The rows as plain dicts (keys: :data:`COLUMNS`)."""
        return [r.to_dict() for r in self.rows]

    def to_json(self, path: str | Path | None = None) -> str:
        """Everything (rows, method, inputs, notes) as JSON; written to ``path`` when given (its
        folder must exist: ``InvalidArgument`` otherwise)."""
        data = {"model": self.model, "method": self.method, "inputs": self.inputs,
                "synthesized": self.synthesized, "representative": self.representative,
                "notes": self.notes, "skipped": self.skipped, "rows": self.to_dicts()}
        text = json.dumps(data, indent=2, default=_plain)
        if path is not None:
            output_path(path, "to_json(path)").write_text(text + "\n")
        return text

    def to_csv(self, path: str | Path) -> None:
        """The rows as CSV (providers joined with ``;``), one header line, written to ``path`` (its
        folder must exist: ``InvalidArgument`` otherwise)."""
        with open(output_path(path, "to_csv(path)"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            for row in self.to_dicts():
                row["providers"] = ";".join(row["providers"] or [])
                writer.writerow({k: "" if v is None else v for k, v in row.items()})

    def to_pandas(self) -> pandas.DataFrame:
        """The rows as a DataFrame (needs pandas: ``pip install 'deploykit[bench]'``)."""
        pd = _optional("pandas", "to_pandas()")
        return pd.DataFrame(self.to_dicts(), columns=list(COLUMNS))

    # -- display ---------------------------------------------------------------------------
    def format(self) -> str:
        """A text table with the measuring method and every caveat under it."""
        head = (f"{'backend':<13}{'batch':>6}{'conc':>5}{'load ms':>9}{'first ms':>10}{'p50 ms':>9}"
                f"{'p90 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'calls/s':>9}{'samples/s':>10}"
                f"{'peak MiB':>9}{'n':>6}")
        lines = [f"model   {self.model}", f"inputs  {', '.join(self.inputs)}"
                 + (" (made up)" if self.synthesized else " (given)"), "", head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.backend:<13}{r.batch:>6}{r.concurrency:>5}{_num(r.load_ms, 9, 1)}"
                         f"{_num(r.first_ms, 10, 2)}{_num(r.p50_ms, 9, 3)}{_num(r.p90_ms, 9, 3)}"
                         f"{_num(r.p99_ms, 9, 3)}{_num(r.mean_ms, 9, 3)}{_num(r.throughput, 9, 1)}"
                         f"{_num(r.samples_per_s, 10, 1)}{_num(r.peak_rss_mb, 9, 1)}{r.n:>6}")
        lines.append("")
        lines += [f"note: {line}" for line in self._method_lines() + self.notes]
        lines += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)

    def _method_lines(self) -> list[str]:
        m = self.method
        settings = sorted({f"{r.backend}: {r.device}, threads={r.threads}"
                           + (f", providers={','.join(r.providers)}" if r.providers else "")
                           for r in self.rows})
        return [
            f"warm-up excluded: the first call (first ms) and {m['warmup']} more per thread; "
            f"then {m['budget']}; clock {m['clock']}",
            f"peak MiB: {m['memory']}",
            *settings,
        ]

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return f"<deploykit.BenchResult {self.model}: {len(self.rows)} rows>\n{self.format()}"

    def _repr_html_(self) -> str:
        made = "made up" if self.synthesized else "given"
        notes = [*self._method_lines(), *self.notes, *(f"skipped {k}: {v}" for k, v in self.skipped.items())]
        return _html_table(f"deploykit.bench — {self.model}", self.to_dicts(),
                           f"inputs ({made}): {', '.join(self.inputs)}", notes)

    def plot(self) -> BenchPlot:
        """Latency distribution per row (box: p25-p75, whiskers: p1-p99) and samples/s against
        batch size per (backend, concurrency). Needs matplotlib. Returns a :class:`BenchPlot`: it
        shows itself as an image in Jupyter (no ``%matplotlib`` needed); ``.figure`` is the
        matplotlib Figure and ``.savefig(path)`` writes it."""
        _optional("matplotlib", "plot()")
        from .plot import plot_rows

        return plot_rows(self.rows, f"{Path(self.model).name}" + (
            "" if self.representative else " (made-up inputs: see notes)"))


def _optional(module: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"BenchResult.{what} needs {module}, which is not installed ({e}); "
                          "install it with: pip install 'deploykit[bench]'") from e


def _html_table(title: str, rows: list[dict[str, Any]], subtitle: str,
                notes: list[str] | None = None) -> str:
    """Rows as an HTML table (the columns that vary between rows), a title, a subtitle and notes."""
    e = html.escape
    cols = [c for c in COLUMNS if c not in ("providers", "runtime_version", "device")]
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{e(_cell(d[c]))}</td>" for c in cols) + "</tr>" for d in rows)
    sub = f"<br>{e(subtitle)}" if subtitle else ""
    items = "".join(f"<li>{e(n)}</li>" for n in notes or [])
    return (f"<div><b>{e(title)}</b>{sub}<table><tr>{head}</tr>{body}</table>"
            + (f"<ul>{items}</ul>" if items else "") + "</div>")


def _num(value: float | None, width: int, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>{width}}"
    return f"{value:>{width}.{digits}f}"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
