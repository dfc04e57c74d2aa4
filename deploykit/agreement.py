"""Whether two outputs agree: dtype-aware tolerances and one output compared with another.

The same network run by two runtimes never agrees to the last bit: kernels sum in different orders.
The tolerance follows the less precise dtype of the two sides (float64, float32, float16, bfloat16,
quantized integers within one quantization step, exact types equal). Used by ``dk.compare`` and by
the tuner, which must never pick a candidate that disagrees with the reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arguments import check_number
from .errors import InvalidArgument
from .spec import TensorSpec, dtype_name


@dataclass(frozen=True)
class Tolerance:
    """``|got - ref| <= atol + rtol * |ref|``, element by element.

    ``atol`` is multiplied by ``max(1, max|ref|)`` when ``scaled`` (the defaults): rounding error of
    a sum grows with the magnitude of what is summed, which the largest output value tracks.
    """

    rtol: float
    atol: float
    scaled: bool = True

    def absolute(self, ref: np.ndarray) -> float:
        if not self.scaled or ref.size == 0:
            return self.atol
        peak = float(np.max(np.abs(ref[np.isfinite(ref)]), initial=0.0))
        return self.atol * max(1.0, peak)


#: Default tolerances, by the less precise dtype of the two sides. Integers, bools and strings
#: must be equal; quantized integers may differ by one quantization step (see ``compare``).
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-7, atol=1e-9),
    "float32": Tolerance(rtol=1e-4, atol=1e-5),
    "float16": Tolerance(rtol=1e-2, atol=1e-3),
    "bfloat16": Tolerance(rtol=5e-2, atol=1e-2),
    "exact": Tolerance(rtol=0.0, atol=0.0, scaled=False),
}
PRECISION = ("float64", "float32", "float16", "bfloat16")  # most to least precise


@dataclass(frozen=True)
class OutputDiff:
    """How one candidate's output compares with the reference's."""

    candidate: str
    output: str            #: the reference's output name
    candidate_output: str  #: the candidate's name for it (differs across formats)
    kind: str              #: the tolerance class used: "float32", "quantized int8", "exact", ...
    shape: tuple[int, ...]
    max_abs: float         #: largest |got - ref|
    max_rel: float         #: max_abs / max|ref| (0 when the reference is all zeros and so is got)
    rtol: float
    atol: float            #: the absolute tolerance applied (after scaling)
    mismatched: int        #: elements outside the tolerance
    size: int
    note: str = ""         #: why the comparison could not be made (shape, type), if so

    @property
    def ok(self) -> bool:
        return not self.note and self.mismatched == 0


def tolerance_table(rtol: float | None = None, atol: float | None = None,
                    overrides: Mapping[str, Tolerance] | None = None) -> dict[str, Tolerance]:
    """``DEFAULT_TOLERANCES`` with ``overrides`` applied, then ``rtol``/``atol`` replacing every
    float tolerance (``atol`` then absolute, not scaled)."""
    rtol = check_number(rtol, "rtol", minimum=0, allow_none=True)
    atol = check_number(atol, "atol", minimum=0, allow_none=True)
    table = dict(DEFAULT_TOLERANCES)
    for key, tol in (overrides or {}).items():
        if key not in DEFAULT_TOLERANCES or not isinstance(tol, Tolerance):
            raise InvalidArgument(f"tolerances: keys are {', '.join(DEFAULT_TOLERANCES)} with Tolerance "
                                  f"values; got {key!r}: {tol!r}")
        table[key] = tol
    if rtol is not None or atol is not None:
        for key in PRECISION:
            base = table[key]
            table[key] = Tolerance(base.rtol if rtol is None else rtol, base.atol if atol is None else atol,
                                   scaled=base.scaled if atol is None else False)
    return table


def diff_output(label: str, ref_spec: TensorSpec, ref: np.ndarray, spec: TensorSpec, got: np.ndarray,
          table: Mapping[str, Tolerance]) -> OutputDiff:
    raw = [np.asarray(ref).dtype, np.asarray(got).dtype]
    ref, ref_step = _as_compared(ref, ref_spec)
    got, got_step = _as_compared(got, spec)
    base: dict[str, Any] = {"candidate": label, "output": ref_spec.name,
                            "candidate_output": spec.name, "shape": tuple(ref.shape),
                            "size": int(ref.size)}
    if ref.shape != got.shape:
        return OutputDiff(**base, kind="-", max_abs=math.nan, max_rel=math.nan, rtol=0.0,
                          atol=0.0, mismatched=int(ref.size),
                          note=f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}")
    kind, tol = _tolerance(ref.dtype, got.dtype, table)
    if kind == "exact" and (ref.dtype.kind in "OUSb" or got.dtype.kind in "OUSb"):
        if ref.dtype.kind != got.dtype.kind and not {ref.dtype.kind, got.dtype.kind} <= {"b"}:
            return OutputDiff(**base, kind=kind, max_abs=math.nan, max_rel=math.nan, rtol=0.0,
                              atol=0.0, mismatched=int(ref.size),
                              note=f"dtype {dtype_name(got.dtype)} vs {dtype_name(ref.dtype)}")
        bad = int(np.count_nonzero(ref != got))
        return OutputDiff(**base, kind=kind, max_abs=float(bad > 0), max_rel=float(bad > 0),
                          rtol=0.0, atol=0.0, mismatched=bad)
    wide = np.complex128 if "c" in (ref.dtype.kind, got.dtype.kind) else np.float64
    r = ref.astype(wide)
    g = got.astype(wide)
    step = max(ref_step, got_step)
    atol = tol.absolute(np.abs(r)) + step
    if step:  # one quantization step on top of the float tolerance
        quantized = raw[0] if ref_step >= got_step else raw[1]
        kind = f"quantized {dtype_name(quantized)}" if quantized.kind in "iu" else f"quantized {kind}"
    both_nan = np.isnan(r) & np.isnan(g)
    same_inf = np.isinf(r) & (r == g)
    err = np.where(both_nan | same_inf, 0.0, np.abs(g - r))
    err = np.where(np.isnan(err), np.inf, err)  # NaN on one side only
    bad = int(np.count_nonzero(err > atol + tol.rtol * np.abs(np.where(same_inf, 0.0, r))))
    max_abs = float(err.max(initial=0.0))
    finite = np.abs(r[np.isfinite(r)])
    peak = float(finite.max(initial=0.0))
    max_rel = max_abs / peak if peak > 0 else (0.0 if max_abs == 0 else math.inf)
    return OutputDiff(**base, kind=kind, max_abs=max_abs, max_rel=max_rel, rtol=tol.rtol,
                      atol=atol, mismatched=bad)


def _as_compared(a: np.ndarray, spec: TensorSpec) -> tuple[np.ndarray, float]:
    """Quantized integers become their float values; the step they are known to is returned."""
    a = np.asarray(a)
    q = spec.quantization
    if q is None:
        return a, 0.0
    step = float(max(q.scales))
    if a.dtype.kind in "iu":
        return q.dequantize(a), step
    return a, step  # already dequantized by the backend (dequantize=True)


def _tolerance(a: np.dtype, b: np.dtype, table: Mapping[str, Tolerance]) -> tuple[str, Tolerance]:
    """The tolerance of the less precise float dtype of the two; exact when neither is a float."""
    names = [_float_name(d) for d in (a, b)]
    floats = [n for n in names if n is not None]
    if not floats:
        return "exact", table["exact"]
    coarsest = max(floats, key=PRECISION.index)
    return coarsest, table[coarsest]


def _float_name(d: np.dtype) -> str | None:
    if d.kind == "f":
        return {8: "float64", 4: "float32", 2: "float16"}.get(d.itemsize, "float64")
    if d.kind == "c":
        return "float64" if d.itemsize >= 16 else "float32"
    if d.name == "bfloat16":
        return "bfloat16"
    return None


__all__ = ["DEFAULT_TOLERANCES", "PRECISION", "OutputDiff", "Tolerance", "diff_output", "tolerance_table"]
