"""Benchmarking: ``dk.bench(model, backends, batch_sizes, concurrency)`` -> :class:`BenchResult`.

``request`` checks the arguments, ``feeds`` fits or makes up the inputs, ``estimate`` knows each
row's time before it starts, ``core`` runs the steps and measures (timing through
:mod:`deploykit._timing`, shared with auto-tuning), ``memory`` measures peak RSS, ``result`` holds
and shows the rows and ``plot`` draws them. See docs/bench.md.
(The package is not named ``bench`` so that ``deploykit.bench`` stays the function without
shadowing a module: ``import deploykit.benchmark.core`` works.)
"""

from __future__ import annotations

from .core import bench
from .estimate import OverrunWarning
from .plot import BenchPlot
from .request import DEFAULT_DURATION
from .result import COLUMNS, BenchResult, BenchRow

__all__ = ["COLUMNS", "DEFAULT_DURATION", "BenchPlot", "BenchResult", "BenchRow", "OverrunWarning",
           "bench"]
