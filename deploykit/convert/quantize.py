"""``dk.quantize``: int8 candidates of an ONNX model, each measured on this machine and checked on the
user's samples; the fastest one inside the gates is kept, or the original when none is.

Candidates (ONNX Runtime's quantizer, after its ``quant_pre_process``, without which nothing is
quantized; symbolic shape inference is skipped when it fails, as on Paddle models; a model below
opset 13 is upgraded first, as per-channel QDQ at opset 11 writes an invalid file):

- ``int8-static``: static QDQ, per-channel int8 weights, uint8 activations (MinMax calibration);
- ``int8-static-conv-matmul``: the same, only Conv, MatMul and Gemm quantized;
- ``int8-dynamic``: dynamic int8 weights (activations quantized at run time; for MatMul-heavy models).

Gates: a candidate is kept only if it runs at least ``min_speedup`` times faster than the original
(median time per run at batch 1, interleaved rounds, ``threads`` threads) and stays within the
accuracy budget (``accuracy.py``: worst cosine / fraction equal >= ``accuracy``; with ``metric``,
a drop of at most ``max_drop`` from the original's score). Every refusal says why.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..arguments import check_number
from ..engine import Engine
from ..errors import BackendUnavailable, DeployKitError, DeployKitWarning, InvalidArgument, warn
from ..loading import load
from ..synth import synthesize
from . import accuracy as acc
from .report import CandidateRow, QuantizeReport

log = logging.getLogger("deploykit.convert")

#: name -> (what it is, how ORT's quantizer makes it)
CANDIDATES = ("int8-static", "int8-static-conv-matmul", "int8-dynamic")
#: The opset below which the model is upgraded before per-channel QDQ.
MIN_QDQ_OPSET = 13
#: Interleaved timing rounds, each of ``RUNS`` calls per model.
ROUNDS, RUNS = 5, 20


class QuantizeError(DeployKitError, RuntimeError):
    """The original model cannot be prepared or measured (a candidate's own failure is a refusal)."""


def quantize(model: str | Path, calibration: Any = None, *, output: str | Path, accuracy: float = 0.99,
             metric: Callable[[dict[str, np.ndarray]], float] | None = None, max_drop: float = 0.01,
             min_speedup: float = 1.25, candidates: Iterable[str] = CANDIDATES, threads: int = 1,
             ) -> QuantizeReport:
    """Quantize the ONNX model at ``model`` and keep the best candidate that passes the gates.

    ``calibration``: the user's samples — an array (the first axis: samples) for a one-input model,
    a dict input name -> array, or a list of feed dicts; each sample is run at batch 1. They
    calibrate the static candidates and are what accuracy is checked on. None: made-up inputs, with
    a warning (accuracy on them says little). ``output``: where the kept candidate is written (nothing
    is written when the original is kept). Returns a :class:`QuantizeReport`."""
    source = _model_path(model)
    target = _output_path(output)
    check_number(accuracy, "accuracy", minimum=0)
    if accuracy > 1:
        raise InvalidArgument(f"accuracy is the worst cosine / fraction equal a candidate may reach, 0..1; "
                              f"got {accuracy!r}")
    check_number(max_drop, "max_drop", minimum=0)
    check_number(min_speedup, "min_speedup", minimum=0)
    check_number(threads, "threads", minimum=1, integer=True)
    if metric is not None and not callable(metric):
        raise InvalidArgument(f"metric must be a callable over the outputs (dict name -> array), got "
                              f"{type(metric).__name__}")
    names = _candidate_names(candidates)
    quant = _ort_quantization()
    original = _engine(source, threads, "the original model")
    samples = _samples(original, calibration)
    notes = [] if calibration is not None else [
        "calibration: none given, made-up inputs used — accuracy on them says little about real data"]
    reference = [original.run(s) for s in samples]
    base_score = acc.score(metric, reference) if metric is not None else None
    work = Path(tempfile.mkdtemp(prefix="deploykit-quantize-"))
    try:
        prepared = _prepare(quant, source, work, notes)
        built = {name: _build(quant, name, prepared, work, samples) for name in names}
        rows, engines = _evaluate(original, built, samples, reference, threads, accuracy, metric, base_score,
                                  max_drop)
        ms = _interleaved(original, engines, samples[0])
        base_ms = ms.pop("fp32")
        rows.insert(0, CandidateRow("fp32", source.stat().st_size, base_ms * 1e3, 1.0,
                                    acc.figures(reference, reference) | _score_figure(base_score), False,
                                    "the original"))
        for row in rows[1:]:
            if row.name in ms:
                row.ms, row.speedup = ms[row.name] * 1e3, base_ms / ms[row.name]
                if row.reason == "" and row.speedup < min_speedup:
                    row.reason = f"{row.speedup:.2f}x, not the {min_speedup:g}x asked for"
        passing = [r for r in rows[1:] if r.reason == "" and r.speedup is not None]
        chosen = max(passing, key=lambda r: r.speedup or 0.0) if passing else rows[0]
        chosen.kept = True
        if chosen.name == "fp32":
            chosen.reason = "the original: no candidate passed the gates"
            path = source
        else:
            chosen.reason = f"fastest within the gates ({chosen.speedup:.2f}x)"
            shutil.copyfile(built[chosen.name], target)
            path = target
        for row in passing:
            if not row.kept:
                row.reason = f"passed, slower than {chosen.name}"
        for engine in engines.values():
            engine.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return QuantizeReport(str(source), chosen.name, path, rows, len(samples), threads, notes)


# -- inputs --------------------------------------------------------------------------------------

def _model_path(model: Any) -> Path:
    if not isinstance(model, (str, Path)):
        raise InvalidArgument(f"model must be the path of an .onnx file, got {type(model).__name__}")
    path = Path(model)
    if not path.is_file():
        raise InvalidArgument(f"model: no file at {path}")
    return path


def _output_path(output: Any) -> Path:
    if not isinstance(output, (str, Path)):
        raise InvalidArgument(f"output must be a file path for the quantized model, got "
                              f"{type(output).__name__}")
    path = Path(output)
    if path.is_dir():
        raise InvalidArgument(f"output {path} is a folder; give a file path "
                              f"(e.g. {path / 'model.int8.onnx'})")
    if not path.parent.is_dir():
        raise InvalidArgument(f"output: the folder {path.parent} does not exist")
    return path


def _candidate_names(candidates: Iterable[str]) -> list[str]:
    if isinstance(candidates, str) or not isinstance(candidates, Iterable):
        raise InvalidArgument(f"candidates must be a list of names from {', '.join(CANDIDATES)}, got "
                              f"{candidates!r}")
    names = list(candidates)
    bad = [n for n in names if n not in CANDIDATES]
    if bad or not names or len(set(names)) != len(names):
        raise InvalidArgument(f"candidates: {bad or names!r}; choose among {', '.join(CANDIDATES)}, "
                              "each once")
    return names


def _ort_quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError as e:
        raise BackendUnavailable(f"quantize needs onnxruntime: pip install 'deploykit[onnxruntime]' "
                                 f"({e})") from e
    return quantization


def _engine(path: Path, threads: int, what: str) -> Engine:
    try:
        return load(str(path), "onnxruntime", threads=threads)
    except DeployKitError as e:
        raise QuantizeError(f"{what} does not load on onnxruntime: {e}") from e


def _samples(engine: Engine, calibration: Any) -> list[dict[str, np.ndarray]]:
    """One feed dict per sample, each at batch 1."""
    names = [s.name for s in engine.inputs]
    if calibration is None:
        warn("quantize: no calibration data given; made-up inputs calibrate and check the candidates "
             "(pass real samples: accuracy on made-up inputs says little)", DeployKitWarning)
        return [synthesize(engine.inputs, batch=1, seed=i).feeds for i in range(8)]
    if isinstance(calibration, np.ndarray):
        if len(names) != 1:
            raise InvalidArgument(f"calibration: an array feeds a one-input model; this one has inputs "
                                  f"{', '.join(names)}: give a dict name -> array")
        calibration = {names[0]: calibration}
    if isinstance(calibration, Mapping):
        missing = [n for n in names if n not in calibration]
        if missing:
            raise InvalidArgument(f"calibration: no samples for input(s) {', '.join(missing)}")
        arrays = {n: np.asarray(calibration[n]) for n in names}
        counts = {n: (a.shape[0] if a.ndim else 0) for n, a in arrays.items()}
        if len(set(counts.values())) != 1 or not next(iter(counts.values())):
            raise InvalidArgument(f"calibration: the arrays' first axis counts the samples; got {counts}")
        total = next(iter(counts.values()))
        samples = [{n: a[i:i + 1] for n, a in arrays.items()} for i in range(total)]
    elif isinstance(calibration, (list, tuple)) and calibration and \
            all(isinstance(s, Mapping) for s in calibration):
        samples = [dict(s) for s in calibration]
    else:
        raise InvalidArgument(f"calibration must be an array, a dict name -> array or a list of feed dicts, "
                              f"got {type(calibration).__name__}")
    try:
        engine.run(samples[0])
    except DeployKitError as e:
        raise InvalidArgument(f"calibration: the first sample does not fit the model: {e}") from e
    return samples


# -- candidates ----------------------------------------------------------------------------------

def _prepare(quant: Any, source: Path, work: Path, notes: list[str]) -> Path:
    """Opset upgrade when needed, then ORT's quant_pre_process (shape inference, optimisation)."""
    proto = onnx.load(str(source))
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), MIN_QDQ_OPSET)
    model_path = source
    if opset < MIN_QDQ_OPSET:
        try:
            upgraded = onnx.version_converter.convert_version(proto, MIN_QDQ_OPSET)
            model_path = work / "upgraded.onnx"
            onnx.save(upgraded, str(model_path))
            notes.append(f"opset {opset} upgraded to {MIN_QDQ_OPSET} first (per-channel QDQ at {opset} "
                         "writes an invalid file)")
        except Exception as e:  # a converter that cannot: quantize as it is, say so
            notes.append(f"opset {opset} could not be upgraded ({str(e).splitlines()[0][:120]}); "
                         "quantized as it is")
    prepared = work / "prepared.onnx"
    try:
        quant.quant_pre_process(str(model_path), str(prepared))
    except Exception as e:
        log.info("quant_pre_process with symbolic shape inference failed (%s); retrying without", e)
        try:
            quant.quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
            notes.append("symbolic shape inference failed; pre-processed without it")
        except Exception as e2:
            raise QuantizeError(f"onnxruntime's quant_pre_process failed on the model: "
                                f"{str(e2).splitlines()[0][:200]}") from e2
    return prepared


class _Reader:
    """The calibration samples as ORT's ``CalibrationDataReader`` wants them."""

    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _build(quant: Any, name: str, prepared: Path, work: Path, samples: list[dict[str, np.ndarray]]
           ) -> Path | str:
    """The candidate's file, or why it could not be made."""
    out = work / f"{name}.onnx"
    try:
        if name == "int8-dynamic":
            quant.quantize_dynamic(str(prepared), str(out), weight_type=quant.QuantType.QInt8)
        else:
            only = {"op_types_to_quantize": ["Conv", "MatMul", "Gemm"]} \
                if name == "int8-static-conv-matmul" else {}
            quant.quantize_static(str(prepared), str(out), _Reader(samples),
                                  quant_format=quant.QuantFormat.QDQ, per_channel=True,
                                  activation_type=quant.QuantType.QUInt8, weight_type=quant.QuantType.QInt8,
                                  **only)
    except Exception as e:
        return f"the quantizer failed: {str(e).splitlines()[0][:200]}"
    return out


# -- measuring -----------------------------------------------------------------------------------

def _evaluate(original: Engine, built: Mapping[str, Path | str], samples: list[dict[str, np.ndarray]],
              reference: list[dict[str, np.ndarray]], threads: int, threshold: float,
              metric: Callable[[dict[str, np.ndarray]], float] | None, base_score: float | None,
              max_drop: float) -> tuple[list[CandidateRow], dict[str, Engine]]:
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
    everyone = {"fp32": original, **engines}
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


__all__ = ["CANDIDATES", "QuantizeError", "quantize"]
