"""``dk.quantize``: int8 candidates of an ONNX model, each measured on this machine and checked on the
user's samples; the fastest one inside the gates is kept, or the original when none is.

Candidates (ONNX Runtime's quantizer, after its ``quant_pre_process``, without which nothing is
quantized; symbolic shape inference is skipped when it fails, as on Paddle models; a model below
opset 13 is upgraded first, as per-channel QDQ at opset 11 writes an invalid file):

- ``int8-static``: static QDQ, per-channel int8 weights, uint8 activations (MinMax calibration);
- ``int8-static-conv-matmul``: the same, only Conv, MatMul and Gemm quantized;
- ``int8-dynamic``: dynamic int8 weights (activations quantized at run time; for MatMul-heavy models);
- ``fp16``: float16 weights and compute, inputs and outputs kept float32 (onnxconverter-common, the
  ``[optimize]`` extra), made from the pre-processed model, whose BatchNormalization is folded into the
  convolutions first — straight from the original, rapidocr det's output falls to cosine 0.64 (a
  variance of 9.8e7 overflows float16); from the folded model 0.99999. Half the size; on a CPU rarely
  faster (ONNX Runtime computes most float16 ops in float32), so the speed gate usually refuses it.

Gates: a candidate is kept only if it runs at least ``min_speedup`` times faster than the original
(median time per run at batch 1, interleaved rounds, ``threads`` threads) and stays within the
accuracy budget (``accuracy.py``: worst cosine / fraction equal >= ``accuracy``; with ``metric``,
a drop of at most ``max_drop`` from the original's score). Every refusal says why.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import DeployKitError, InvalidArgument, require
from ..hostinfo import probe_cpu
from .gates import Gates, engine_for, judge, model_path, output_path, samples_for
from .report import QuantizeReport

log = logging.getLogger("deploykit.convert")

#: The candidates ``quantize`` knows (all tried by default).
CANDIDATES = ("int8-static", "int8-static-conv-matmul", "int8-dynamic", "fp16")
#: The opset below which the model is upgraded before per-channel QDQ.
MIN_QDQ_OPSET = 13
#: How long ORT's pre-processing may take in its child process.
PRE_PROCESS_TIMEOUT_S = 1800


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
    source = model_path(model)
    target = output_path(output, source)
    gates = Gates(accuracy, metric, max_drop, min_speedup, threads)
    names = _candidate_names(candidates)
    quant = _ort_quantization()
    original = engine_for(source, threads, "the original model")
    samples = samples_for(original, calibration, "calibration", "quantize")
    notes = [] if calibration is not None else [
        "calibration: none given, made-up inputs used — accuracy on them says little about real data"]
    reduce_range = not int8_dot_products()
    if reduce_range and any(n.startswith("int8-static") for n in names):
        notes.append("this CPU has no VNNI/AMX int8 dot products: the static candidates' weights use 7 bits "
                     "(reduce_range), as ONNX Runtime advises — uint8 x int8 products saturate in its AVX2 "
                     "kernels otherwise (rapidocr cls worst cosine 0.07 -> 0.96)")
    work = Path(tempfile.mkdtemp(prefix="deploykit-quantize-"))
    try:
        prepared = _prepare(source, work, notes)
        built = {name: _build(quant, name, prepared, work, samples, reduce_range) for name in names}
        rows, chosen, path = judge(source, original, built, samples, gates, target)
    finally:
        original.close()
        shutil.rmtree(work, ignore_errors=True)
    return QuantizeReport(str(source), chosen.name, path, rows, len(samples), threads, notes)


# -- inputs --------------------------------------------------------------------------------------

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
    return require("onnxruntime.quantization", "quantize needs onnxruntime: pip install "
                                               "'deploykit[onnxruntime]'")


# -- candidates ----------------------------------------------------------------------------------

def _prepare(source: Path, work: Path, notes: list[str]) -> Path:
    """Opset upgrade when needed, then ORT's quant_pre_process (shape inference, optimisation)."""
    proto = onnx.load(str(source))
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), MIN_QDQ_OPSET)
    model_path = source
    if opset < MIN_QDQ_OPSET:
        try:
            upgraded = onnx.version_converter.convert_version(proto, MIN_QDQ_OPSET)
            model_path = work / "upgraded.onnx"
            onnx.save(upgraded, str(model_path))
            notes.append(f"opset {opset} upgraded to {MIN_QDQ_OPSET} first (per-channel QDQ needs it: at "
                         "opset 11 the quantizer writes an invalid file)")
        except Exception as e:  # a converter that cannot: quantize as it is, say so
            notes.append(f"opset {opset} could not be upgraded ({str(e).splitlines()[0][:120]}); "
                         "quantized as it is")
    prepared = work / "prepared.onnx"
    failed = _pre_process(model_path, prepared, work, skip_symbolic_shape=False)
    if failed:
        log.info("quant_pre_process with symbolic shape inference failed (%s); retrying without", failed)
        failed = _pre_process(model_path, prepared, work, skip_symbolic_shape=True)
        if failed:
            raise QuantizeError(f"onnxruntime's quant_pre_process failed on the model: {failed}")
        notes.append("symbolic shape inference failed; pre-processed without it")
    return prepared


def _pre_process(model: Path, prepared: Path, work: Path, *, skip_symbolic_shape: bool) -> str | None:
    """ORT's quant_pre_process in a child process whose working folder is ``work``: when symbolic shape
    inference comes up short, ORT writes ``sym_shape_infer_temp.onnx`` (and its weights) into the
    working folder — the caller's, were it run here. None on success, else the failure's last line."""
    script = ("import sys\nfrom onnxruntime.quantization import quant_pre_process\n"
              "quant_pre_process(sys.argv[1], sys.argv[2], skip_symbolic_shape=sys.argv[3] == '1')\n")
    done = subprocess.run([sys.executable, "-c", script, str(model), str(prepared),
                           "1" if skip_symbolic_shape else "0"], cwd=work, capture_output=True, text=True,
                          timeout=PRE_PROCESS_TIMEOUT_S, check=False)
    if done.returncode == 0 and prepared.is_file():
        return None
    lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else f"exit code {done.returncode}")[:300]


class _Reader:
    """The calibration samples as ORT's ``CalibrationDataReader`` wants them."""

    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def int8_dot_products() -> bool:
    """True when this CPU has int8 dot-product instructions (VNNI, AMX) or is not x86 (Arm's
    kernels do not saturate so): then full 8-bit weights are safe."""
    cpu = probe_cpu()
    if cpu.arch not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return True
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(cpu.features))


def _build(quant: Any, name: str, prepared: Path, work: Path, samples: list[dict[str, np.ndarray]],
           reduce_range: bool = False) -> Path | str:
    """The candidate's file, or why it could not be made."""
    out = work / f"{name}.onnx"
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the quantizer warns on the root logger per weight it skips
    try:
        if name == "fp16":
            return _fp16(prepared, out)
        if name == "int8-dynamic":
            # (not reduce_range: measured here it cost the dynamic candidates accuracy — cls worst cosine
            # 0.986 -> 0.651, det 0.937 -> 0.722 — while it rescued the static ones)
            quant.quantize_dynamic(str(prepared), str(out), weight_type=quant.QuantType.QInt8)
        else:
            only = {"op_types_to_quantize": ["Conv", "MatMul", "Gemm"]} \
                if name == "int8-static-conv-matmul" else {}
            quant.quantize_static(str(prepared), str(out), _Reader(samples),
                                  quant_format=quant.QuantFormat.QDQ, per_channel=True,
                                  activation_type=quant.QuantType.QUInt8, weight_type=quant.QuantType.QInt8,
                                  reduce_range=reduce_range, **only)
    except Exception as e:
        return f"the quantizer failed: {str(e).splitlines()[0][:200]}"
    finally:
        root.setLevel(level)
    return out


def _fp16(prepared: Path, out: Path) -> Path | str:
    try:
        from onnxconverter_common import float16
    except ImportError:
        return "needs onnxconverter-common: pip install 'deploykit[optimize]'"
    with warnings.catch_warnings():  # it warns per constant it rounds; the accuracy gate judges the result
        warnings.simplefilter("ignore")
        model = float16.convert_float_to_float16(onnx.load(str(prepared)), keep_io_types=True)
    onnx.save(model, str(out))
    return out


__all__ = ["CANDIDATES", "QuantizeError", "quantize"]
