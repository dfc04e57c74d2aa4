"""``dk.compare``: one input set through several engines or artifacts, output by output.

The same network exported twice (ONNX and TFLite), or run on two backends, never agrees to the
last bit: kernels sum in different orders. ``compare`` says by how much, per output, against a
tolerance that follows the dtype compared (float64, float32, float16, quantized integers, exact
types) instead of one global 1e-5.

    report = dk.compare(["model.onnx", ("model.onnx", "numpy"), "model.tflite"], feeds)
    print(report)          # one row per candidate and output
    report.check()         # AssertionError listing what is out of tolerance
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .agreement import DEFAULT_TOLERANCES, OutputDiff, Tolerance, diff_output, tolerance_table
from .engine import Engine, feeds_from
from .errors import InputMismatch, InvalidArgument
from .loading import load
from .model import ModelLike
from .reprs import html_table
from .spec import TensorSpec, pair_specs

#: What ``compare`` accepts as one side: an Engine, a model (loaded with ``backend="auto"``), or
#: ``(model, backend)``. (Not a plan's ``Candidate``: that is a backend choice.)
Side = Engine | ModelLike | tuple[ModelLike, str]


@dataclass
class Comparison:
    """Result of :func:`compare`: one :class:`OutputDiff` per candidate and output."""

    reference: str
    candidates: list[str]
    diffs: list[OutputDiff]
    #: each label's raw outputs, for a closer look
    results: dict[str, dict[str, np.ndarray]] = field(repr=False, default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.diffs)

    def failures(self) -> list[OutputDiff]:
        return [d for d in self.diffs if not d.ok]

    def check(self) -> Comparison:
        """Raise ``AssertionError`` with the table when any output is out of tolerance."""
        if not self.ok:
            bad = ", ".join(f"{d.candidate}/{d.output}" for d in self.failures())
            raise AssertionError(f"outputs out of tolerance: {bad}\n{self}")
        return self

    def __str__(self) -> str:
        head = (f"{'candidate':<28}{'output':<20}{'tolerance':<16}{'max abs':>11}{'max rel':>11}"
                f"{'atol':>10}{'rtol':>9}  result")
        lines = [f"reference: {self.reference}", head, "-" * len(head)]
        for d in self.diffs:
            result = d.note if d.note else \
                ("ok" if d.ok else f"FAIL ({d.mismatched}/{d.size} elements)")
            lines.append(f"{_clip(d.candidate, 27):<28}{_clip(d.output, 19):<20}{d.kind:<16}"
                         f"{d.max_abs:>11.3g}{d.max_rel:>11.3g}{d.atol:>10.2g}{d.rtol:>9.2g}  "
                         f"{result}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<deploykit Comparison {'ok' if self.ok else 'FAILED'}\n{self}>"

    def _repr_html_(self) -> str:
        rows = [(d.candidate, d.output, d.kind, f"{d.max_abs:.3g}", f"{d.max_rel:.3g}", f"{d.atol:.2g}",
                 f"{d.rtol:.2g}", d.note or ("ok" if d.ok else f"FAIL ({d.mismatched}/{d.size} elements)"))
                for d in self.diffs]
        return html_table("deploykit Comparison — " + ("all outputs agree" if self.ok else "FAILED"), rows,
                          ("candidate", "output", "tolerance", "max abs", "max rel", "atol", "rtol",
                           "result"), subtitle=f"reference: {self.reference}")


def compare(
    candidates: Sequence[Side] | Mapping[str, Side],
    feeds: Mapping[str, Any] | Sequence[np.ndarray] | np.ndarray,
    *,
    reference: int | str = 0,
    rtol: float | None = None,
    atol: float | None = None,
    tolerances: Mapping[str, Tolerance] | None = None,
) -> Comparison:
    """Run ``feeds`` through every candidate and compare each output with the reference's.

    ``candidates``: Engines, models (loaded with ``backend="auto"``) or ``(model, backend)``
    pairs; a mapping gives them labels. ``feeds``: a dict keyed by the reference's input names,
    a list in its input order, or one array. Another candidate whose input names differ (the same
    network in another format) gets them by position. Outputs pair by name where the names match,
    the rest by position. ``rtol``/``atol`` override every float tolerance (``atol`` then absolute);
    ``tolerances`` overrides entries of ``DEFAULT_TOLERANCES``. Engines given are left open;
    models loaded here are closed.
    """
    given = _sides(candidates)
    if isinstance(reference, bool) or not isinstance(reference, (int, str)):
        raise InvalidArgument(f"reference must be a candidate's position (int) or label (str), got "
                              f"{reference!r}")
    table = tolerance_table(rtol, atol, tolerances)
    engines: list[Engine] = []
    opened: list[Engine] = []
    try:
        for _, cand in given:
            engine = _engine(cand)
            if engine is not cand:
                opened.append(engine)
            engines.append(engine)
        labels = _labels([name for name, _ in given], engines)
        ref_pos = _reference_position(reference, labels)
        order = [ref_pos] + [k for k in range(len(engines)) if k != ref_pos]
        results = _run_all(engines, labels, order, feeds)
        ref = engines[ref_pos]
        diffs = [diff_output(labels[k], ref_spec, results[labels[ref_pos]][ref_spec.name], spec,
                             results[labels[k]][spec.name], table)
                 for k in order[1:] for ref_spec, spec in _pair_outputs(ref, engines[k], labels[k])]
    finally:
        for engine in opened:
            engine.close()
    return Comparison(labels[ref_pos], [labels[k] for k in order[1:]], diffs, results)


def _sides(candidates: Any) -> list[tuple[str | None, Side]]:
    """(label or None, side) per candidate given as a list or a dict; at least two."""
    given: list[tuple[str | None, Side]]
    if isinstance(candidates, Mapping):
        given = list(candidates.items())
    elif isinstance(candidates, Sequence) and not isinstance(candidates, (str, bytes)):
        given = [(None, c) for c in candidates]
    else:
        raise InvalidArgument(f"candidates must be a list (or a dict label -> candidate) of Engines, "
                              f"models or (model, backend) pairs; got {type(candidates).__name__}")
    if len(given) < 2:
        raise InvalidArgument(f"compare needs at least two candidates, got {len(given)}")
    return given


def _reference_position(reference: int | str, labels: list[str]) -> int:
    if isinstance(reference, str):
        if reference not in labels:
            raise InvalidArgument(f"reference {reference!r} is not one of {labels}")
        return labels.index(reference)
    if -len(labels) <= reference < len(labels):
        return reference % len(labels)
    raise InvalidArgument(f"reference {reference} is out of range for {len(labels)} candidates")


def _run_all(engines: list[Engine], labels: list[str], order: list[int],
             feeds: Any) -> dict[str, dict[str, np.ndarray]]:
    """Every engine's outputs on the feeds (the reference's names, paired to each engine's)."""
    ref = engines[order[0]]
    values = _feed_values(ref, feeds)
    results: dict[str, dict[str, np.ndarray]] = {}
    for k in order:
        try:
            results[labels[k]] = engines[k].run(_feeds_for(engines[k], ref, values, labels[k]))
        except InputMismatch as e:
            raise InputMismatch(f"candidate {labels[k]!r} refused the inputs: {e}") from e
    return results


# -- candidates and feeds -------------------------------------------------------------------
def _labels(given: list[Any], engines: list[Engine]) -> list[str]:
    """The labels given, else ``backend:file name``, numbered where two would be the same."""
    labels: list[str] = []
    for name, engine in zip(given, engines):
        base = str(name) if name is not None else f"{engine.backend}:{_short(engine.source.label)}"
        label, n = base, 2
        while label in labels:
            label, n = f"{base} #{n}", n + 1
        labels.append(label)
    return labels


def _short(label: str) -> str:
    return Path(label).name if not label.startswith("<") else label


def _engine(cand: Any) -> Engine:
    if isinstance(cand, Engine):
        return cand
    if isinstance(cand, tuple):
        if len(cand) != 2 or not isinstance(cand[1], str):
            raise InvalidArgument(f"a candidate tuple is (model, backend name); got {cand!r}")
        return load(cand[0], backend=cand[1])
    return load(cand)


def _feed_values(ref: Engine, feeds: Any) -> list[Any]:
    """The feeds as a list in the reference's input order (names checked by the reference)."""
    names = [s.name for s in ref.inputs]
    if isinstance(feeds, Mapping):
        missing = [n for n in names if n not in feeds]
        unknown = [n for n in feeds if n not in names]
        if missing or unknown:
            ref.run(feeds)  # raises the engine's own InputMismatch naming what is wrong
        return [feeds[n] for n in names]
    if feeds is None or isinstance(feeds, (str, bytes)):
        feeds_from(feeds, ref.inputs)  # raises the engine's InputMismatch: not feeds at all
    if isinstance(feeds, np.ndarray) or not isinstance(feeds, Sequence):
        feeds = [feeds]
    if len(feeds) != len(names):
        raise InputMismatch(f"{len(feeds)} input array(s) given; the reference has "
                            f"{len(names)} inputs: {', '.join(map(str, ref.inputs))}")
    return list(feeds)


def _feeds_for(engine: Engine, ref: Engine, values: list[Any], label: str) -> dict[str, Any]:
    """The reference's input values under ``engine``'s names (``spec.pair_specs``)."""
    paired = pair_specs(ref.inputs, engine.inputs) if len(engine.inputs) == len(ref.inputs) else None
    if paired is None:
        raise InputMismatch(f"{label} has {len(engine.inputs)} inputs "
                            f"({', '.join(s.name for s in engine.inputs)}), the reference "
                            f"{len(ref.inputs)} ({', '.join(s.name for s in ref.inputs)}); cannot pair them")
    return {spec.name: value for spec, value in zip(paired, values)}


def _pair_outputs(ref: Engine, engine: Engine, label: str) -> list[tuple[TensorSpec, TensorSpec]]:
    """Each reference output with ``engine``'s: by name, the rest by position (``spec.pair_specs``)."""
    names = [s.name for s in engine.outputs]
    named = all(s.name in names for s in ref.outputs)  # extra candidate outputs are fine then
    paired = pair_specs(ref.outputs, engine.outputs) \
        if named or len(engine.outputs) == len(ref.outputs) else None
    if paired is None:
        raise InputMismatch(
            f"{label} has {len(engine.outputs)} outputs ({', '.join(names)}), the reference "
            f"{len(ref.outputs)} ({', '.join(s.name for s in ref.outputs)}); cannot pair them")
    return list(zip(ref.outputs, paired))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def __getattr__(name: str) -> Any:
    if name == "Candidate":  # the former name of Side (a plan's Candidate is a backend choice)
        import warnings

        warnings.warn("deploykit.comparison.Candidate is now deploykit.comparison.Side",
                      DeprecationWarning, stacklevel=2)
        return Side
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_TOLERANCES", "Comparison", "OutputDiff", "Side", "Tolerance", "compare"]
