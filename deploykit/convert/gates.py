"""What every conversion step shares: its arguments checked, the user's samples read, and the gates —
each candidate timed interleaved with the original on this machine and checked on the samples; the
fastest one inside both gates is written, else the original stays and every refusal says why."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..arguments import check_number
from ..engine import Engine
from ..errors import DeployKitError, DeployKitWarning, InvalidArgument, warn
from ..loading import load
from ..synth import synthesize
from . import accuracy as acc
from .report import ORIGINAL, CandidateRow
from .samples import from_iterable

#: Interleaved timing rounds, each of ``RUNS`` calls per model.
ROUNDS, RUNS = 5, 20

Metric = Callable[[dict[str, np.ndarray]], float]


@dataclass(frozen=True)
class Gates:
    """A candidate is kept only at ``min_speedup`` x the original's speed (batch 1, ``threads``
    threads) and within ``accuracy`` (worst cosine / fraction equal) and, with ``metric``, ``max_drop``
    below the original's score."""

    accuracy: float = 0.99
    metric: Metric | None = None
    max_drop: float = 0.01
    min_speedup: float = 1.25
    threads: int = 1

    def __post_init__(self) -> None:
        check_number(self.accuracy, "accuracy", minimum=0)
        if self.accuracy > 1:
            raise InvalidArgument(f"accuracy is the worst cosine / fraction equal a candidate may reach, "
                                  f"0..1; got {self.accuracy!r}")
        check_number(self.max_drop, "max_drop", minimum=0)
        check_number(self.min_speedup, "min_speedup", minimum=0)
        check_number(self.threads, "threads", minimum=1, integer=True)
        if self.metric is not None and not callable(self.metric):
            raise InvalidArgument(f"metric must be a callable over the outputs (dict name -> array), got "
                                  f"{type(self.metric).__name__}")


def model_path(model: Any) -> Path:
    if not isinstance(model, (str, Path)):
        raise InvalidArgument(f"model must be the path of an .onnx file, got {type(model).__name__}")
    path = Path(model)
    if not path.is_file():
        raise InvalidArgument(f"model: no file at {path}")
    return path


def output_path(output: Any, source: Path | None = None, argument: str = "output") -> Path:
    """Where the kept candidate goes: a file in an existing folder, never the model itself
    (``argument``: the name the caller's parameter has, for the messages)."""
    if not isinstance(output, (str, Path)):
        raise InvalidArgument(f"{argument} must be a file path for the converted model, got "
                              f"{type(output).__name__}")
    path = Path(output)
    if source is not None and path.exists() and path.resolve() == source.resolve():
        raise InvalidArgument(f"{argument} {path} is the model itself; write the candidate to another file")
    if path.is_dir():
        raise InvalidArgument(f"{argument} {path} is a folder; give a file path "
                              f"(e.g. {path / 'model.int8.onnx'})")
    if not path.parent.is_dir():
        raise InvalidArgument(f"{argument}: the folder {path.parent} does not exist")
    return path


def engine_for(path: Path, threads: int, what: str) -> Engine:
    try:
        return load(str(path), "onnxruntime", threads=threads)
    except DeployKitError as e:
        raise InvalidArgument(f"{what} does not load on onnxruntime: {e}") from e


def samples_for(engine: Engine, data: Any, argument: str, step: str) -> list[dict[str, np.ndarray]]:
    """One feed dict per sample, each at batch 1, from ``data`` (the ``argument`` of ``step``): an
    array (first axis: samples) for a one-input model, a dict name -> array, a list of feed dicts, or
    an iterable (a generator...) of arrays or feed dicts (``samples.from_iterable``). None: made-up
    inputs, with a warning."""
    names = [s.name for s in engine.inputs]
    if data is None:
        warn(f"{step}: no {argument} given; made-up inputs are what the results are checked on (pass "
             "real samples: accuracy on made-up inputs says little)", DeployKitWarning)
        return [synthesize(engine.inputs, batch=1, seed=i).feeds for i in range(8)]
    if isinstance(data, np.ndarray):
        if len(names) != 1:
            raise InvalidArgument(f"{argument}: an array feeds a one-input model; this one has inputs "
                                  f"{', '.join(names)}: give a dict name -> array")
        data = {names[0]: data}
    if isinstance(data, Mapping):
        missing = [n for n in names if n not in data]
        if missing:
            raise InvalidArgument(f"{argument}: no samples for input(s) {', '.join(missing)}")
        arrays = {n: np.asarray(data[n]) for n in names}
        counts = {n: (a.shape[0] if a.ndim else 0) for n, a in arrays.items()}
        if len(set(counts.values())) != 1 or not next(iter(counts.values())):
            raise InvalidArgument(f"{argument}: the arrays' first axis counts the samples; got {counts}")
        total = next(iter(counts.values()))
        samples = [{n: a[i:i + 1] for n, a in arrays.items()} for i in range(total)]
    elif isinstance(data, (list, tuple)) and data and all(isinstance(s, Mapping) for s in data):
        samples = [dict(s) for s in data]
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, Mapping, list, tuple)):
        samples = from_iterable(data, engine.inputs, argument)
    else:
        raise InvalidArgument(f"{argument} must be an array, a dict name -> array, a list of feed dicts or "
                              f"an iterable of arrays / feed dicts, got {type(data).__name__}")
    try:
        engine.run(samples[0])
    except DeployKitError as e:
        raise InvalidArgument(f"{argument}: the first sample does not fit the model: {e}") from e
    return samples


def judge(source: Path, original: Engine, built: Mapping[str, Path | str],
          samples: list[dict[str, np.ndarray]], gates: Gates, target: Path,
          ) -> tuple[list[CandidateRow], CandidateRow, Path]:
    """Every candidate's row (the original first), the kept one, and the model to deploy (the kept
    candidate copied to ``target``, or the original's path)."""
    reference = [original.run(s) for s in samples]
    base_score = acc.score(gates.metric, reference) if gates.metric is not None else None
    rows, engines = _evaluate(built, samples, reference, gates, base_score)
    try:
        ms = _interleaved(original, engines, samples[0])
    finally:
        for engine in engines.values():
            engine.close()
    base_ms = ms.pop(ORIGINAL)
    rows.insert(0, CandidateRow(ORIGINAL, source.stat().st_size, base_ms * 1e3, 1.0,
                                acc.figures(reference, reference) | _score_figure(base_score), False,
                                "the original"))
    for row in rows[1:]:
        if row.name in ms:
            row.ms, row.speedup = ms[row.name] * 1e3, base_ms / ms[row.name]
            if row.reason == "" and row.speedup < gates.min_speedup:
                row.reason = f"{row.speedup:.2f}x, not the {gates.min_speedup:g}x asked for"
    passing = [r for r in rows[1:] if r.reason == "" and r.speedup is not None]
    chosen = max(passing, key=lambda r: r.speedup or 0.0) if passing else rows[0]
    chosen.kept = True
    if chosen.name == ORIGINAL:
        chosen.reason = "the original: no candidate passed the gates"
        path = source
    else:
        chosen.reason = f"fastest within the gates ({chosen.speedup:.2f}x)"
        made = built[chosen.name]
        assert isinstance(made, Path)
        shutil.copyfile(made, target)
        path = target
    for row in passing:
        if not row.kept:
            row.reason = f"passed, slower than {chosen.name}"
    return rows, chosen, path


def _evaluate(built: Mapping[str, Path | str], samples: list[dict[str, np.ndarray]],
              reference: list[dict[str, np.ndarray]], gates: Gates, base_score: float | None,
              ) -> tuple[list[CandidateRow], dict[str, Engine]]:
    threads, threshold, metric, max_drop = gates.threads, gates.accuracy, gates.metric, gates.max_drop
    rows, engines = [], {}
    for name, made in built.items():
        if isinstance(made, str):
            rows.append(CandidateRow(name, reason=made))
            continue
        row = CandidateRow(name, made.stat().st_size)
        try:
            engine = load(str(made), "onnxruntime", threads=threads)
            outputs = [engine.run(s) for s in samples]
        except DeployKitError as e:
            row.reason = f"does not run: {str(e).splitlines()[0][:200]}"
            rows.append(row)
            continue
        row.accuracy = acc.figures(reference, outputs)
        why = acc.check(row.accuracy, threshold)
        if metric is not None and base_score is not None:
            value = acc.score(metric, outputs)
            row.accuracy["metric"] = value
            if why is None and base_score - value > max_drop:
                why = f"metric {value:.4g}, {base_score - value:.4g} below the original's {base_score:.4g}"
        row.reason = "" if why is None else f"accuracy: {why}"
        engines[name] = engine
        rows.append(row)
    return rows, engines


def _interleaved(original: Engine, engines: Mapping[str, Engine], feeds: dict[str, np.ndarray]
                 ) -> dict[str, float]:
    """Median seconds per run of each model, taken in turn round after round (a noisy machine
    shifts them all alike)."""
    everyone = {ORIGINAL: original, **engines}
    times: dict[str, list[float]] = {name: [] for name in everyone}
    for engine in everyone.values():
        engine.run(feeds)  # warm
    for r in range(ROUNDS):
        order = list(everyone.items())
        order = order[r % len(order):] + order[:r % len(order)]
        for name, engine in order:
            for _ in range(RUNS):
                start = time.perf_counter()
                engine.run(feeds)
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def _score_figure(value: float | None) -> dict[str, float]:
    return {} if value is None else {"metric": value}


__all__ = ["Gates", "engine_for", "judge", "model_path", "output_path", "samples_for"]
