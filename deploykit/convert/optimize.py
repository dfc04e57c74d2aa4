"""``dk.optimize``: the graph simplified offline (onnxslim: constant folding, dead nodes, fused and
eliminated ops), with what changed measured — node count, file size, session-creation time and run
time, before and after — and the outputs checked unchanged on the same inputs. No speed-up is claimed
that was not measured: ONNX Runtime applies most of the same rewrites when it loads a model, so the
usual gain is load time and file size, not run time."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import InvalidArgument, require
from ..loading import load
from ..reprs import html_table
from . import accuracy as acc
from .gates import Gates, engine_for, model_path, output_path, samples_for

#: Sessions created, and runs timed, per model (alternating between the two).
SESSIONS, RUNS = 5, 50


@dataclass
class OptimizeReport:
    """Before and after: nodes, bytes, session-creation and run time (ms), the closeness of the
    outputs, and whether the simplified model was written (``path``: the model to deploy)."""

    model: str
    path: Path
    written: bool
    before: dict[str, float]
    after: dict[str, float]
    accuracy: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data

    def _rows(self) -> list[tuple[str, str, str, str]]:
        rows = []
        for key in self.before:
            b, a = self.before[key], self.after.get(key, float("nan"))
            change = f"{a / b:.2f}x" if b else "-"
            rows.append((key, f"{b:.4g}", f"{a:.4g}", change))
        return rows

    def __str__(self) -> str:
        lines = [f"deploykit optimize: {self.model} -> {self.path}"
                 + ("" if self.written else " (unchanged)")]
        lines += [f"  {k:<18} {b:>12} -> {a:<12} {c}" for k, b, a, c in self._rows()]
        lines.append("  outputs: " + ", ".join(f"{k} {v:.6g}" for k, v in self.accuracy.items()))
        lines.append(f"  {self.reason}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        sub = "outputs: " + ", ".join(f"{k} {v:.6g}" for k, v in self.accuracy.items()) + "; " + self.reason
        header = ("", "before", "after", "after/before")
        return html_table(f"deploykit optimize: {self.model}", self._rows(), header, sub)


def optimize(model: str | Path, samples: Any = None, *, output: str | Path, accuracy: float = 0.9999,
             threads: int = 1) -> OptimizeReport:
    """Simplify the ONNX model at ``model`` with onnxslim, write it to ``output`` when its outputs on
    ``samples`` stay within ``accuracy`` (worst cosine / fraction equal) and the graph got smaller,
    and report what changed. ``samples`` as ``quantize``'s ``calibration`` (None: made up, warned)."""
    source = model_path(model)
    target = output_path(output, source)
    gates = Gates(accuracy=accuracy, min_speedup=0.0, threads=threads)
    onnxslim = require("onnxslim", "optimize needs onnxslim: pip install 'deploykit[optimize]'")
    original = engine_for(source, gates.threads, "the model")
    data = samples_for(original, samples, "samples", "optimize")
    reference = [original.run(s) for s in data]
    original.close()
    proto = onnx.load(str(source))
    try:
        slim = onnxslim.slim(proto)
    except Exception as e:
        raise InvalidArgument(f"onnxslim cannot simplify this model: {str(e).splitlines()[0][:200]}") from e
    with tempfile.TemporaryDirectory(prefix="deploykit-optimize-") as work:
        candidate = Path(work) / "slim.onnx"
        onnx.save(slim, str(candidate))
        engine = load(str(candidate), "onnxruntime", threads=gates.threads)
        outputs = [engine.run(s) for s in data]
        engine.close()
        figures = acc.figures(reference, outputs)
        before, after = _measure(source, candidate, data[0], gates.threads)
        before["nodes"], after["nodes"] = float(len(proto.graph.node)), float(len(slim.graph.node))
        why = acc.check(figures, gates.accuracy)
        if why is not None:
            reason, written = f"not written: outputs changed ({why})", False
        elif after["nodes"] >= before["nodes"] and after["bytes"] >= before["bytes"]:
            reason, written = "not written: nothing to simplify", False
        else:
            shutil.copyfile(candidate, target)
            reason, written = "written: same outputs, smaller graph", True
    return OptimizeReport(str(source), target if written else source, written, before, after, figures, reason)


def _measure(a: Path, b: Path, feeds: dict[str, np.ndarray], threads: int) -> tuple[dict[str, float], ...]:
    """File size, median session-creation and run time (ms) of both models, taken in turns."""
    created: dict[Path, list[float]] = {a: [], b: []}
    runs: dict[Path, list[float]] = {a: [], b: []}
    for _ in range(SESSIONS):
        for path in (a, b):
            start = time.perf_counter()
            engine = load(str(path), "onnxruntime", threads=threads, check=False)
            created[path].append(time.perf_counter() - start)
            engine.run(feeds)
            for _ in range(RUNS // SESSIONS):
                start = time.perf_counter()
                engine.run(feeds)
                runs[path].append(time.perf_counter() - start)
            engine.close()
    return tuple({"bytes": float(p.stat().st_size), "load ms": statistics.median(created[p]) * 1e3,
                  "run ms": statistics.median(runs[p]) * 1e3} for p in (a, b))


__all__ = ["OptimizeReport", "optimize"]
