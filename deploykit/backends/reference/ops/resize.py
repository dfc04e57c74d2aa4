"""Resize (10-19) and Upsample (7, 9): separable per-axis interpolation from index/weight tables
built once per input shape and scales/sizes/roi."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..kernels import Kernel, Node, register

_CTMS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
         "tf_crop_and_resize", "tf_half_pixel_for_nn")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")
#: an axis is resampled with a dense (out, in) matrix product (BLAS) while in <= this * taps
_DENSE_PER_TAP = 192


@dataclass(frozen=True)
class _Mode:
    """How one node resamples, decoded once."""

    mode: str  # nearest | linear | cubic
    ctm: str
    nearest: str  # a nearest_mode, or "simple" (Resize-10 / Upsample)
    a: float = -0.75
    exclude_outside: bool = False
    extrapolation: float = 0.0
    antialias: bool = False
    axes: tuple[int, ...] | None = None
    policy: str = "stretch"


@dataclass
class _Axis:
    """The resampling of one axis: a gather (nearest) or taps with weights (linear/cubic)."""

    axis: int
    index: np.ndarray | None = None  # (out,) source index, nearest mode
    taps: np.ndarray | None = None  # (out, T) source indices, clipped to the axis
    weights: np.ndarray | None = None  # (out, T) float64
    outside: np.ndarray | None = None  # (out,) bool: tf_crop_and_resize extrapolates there
    dense: dict[str, np.ndarray] = field(default_factory=dict)  # dtype -> (out, in) matrix


@dataclass
class _Tables:
    """How one input shape is resized: the output shape and the axes that change, shrinking first."""

    shape: tuple[int, ...]
    axes: list[_Axis]


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _coords(m: _Mode, length: int, out: int, scale: float, start: float, end: float,
            dtype: type[np.floating[Any]] = np.float64) -> np.ndarray:
    """Source coordinate of every output position along one axis (the spec's x_original).

    align_corners and tf_crop_and_resize divide by the real-valued resized length
    ``scale * length``, as the ONNX conformance data does (it differs from ``out`` when the
    output size comes from a scale that does not divide evenly). Nearest mode computes in
    float32, as runtimes do: its rounding decisions depend on the last bit."""
    x = np.arange(out, dtype=dtype)
    half, sc, n = dtype(0.5), dtype(scale), dtype(length)
    width = sc * n
    ctm = m.ctm
    if ctm == "half_pixel":
        return (x + half) / sc - half
    if ctm == "half_pixel_symmetric":
        return n / 2 * (1 - dtype(out) / width) + (x + half) / sc - half
    if ctm == "pytorch_half_pixel":
        return (x + half) / sc - half if out > 1 else np.zeros(out, dtype)
    if ctm == "align_corners":
        return x * (n - 1) / (width - 1) if width != 1 else np.zeros(out, dtype)
    if ctm == "asymmetric":
        return x / sc
    if ctm == "tf_half_pixel_for_nn":
        return (x + half) / sc
    # tf_crop_and_resize
    lo, hi = dtype(start), dtype(end)
    if width != 1:
        return lo * (n - 1) + x * (hi - lo) * (n - 1) / (width - 1)
    return np.full(out, half * (lo + hi) * (n - 1), dtype)


def _nearest(x: np.ndarray, how: str, scale: float) -> np.ndarray:
    if how == "simple":  # Resize-10 / Upsample, as onnxruntime does it
        return np.ceil(x) if scale < 1 else np.trunc(x)
    if how == "floor":
        return np.floor(x)
    if how == "ceil":
        return np.ceil(x)
    base = np.floor(x)
    frac = x - base
    return base + (frac > 0.5 if how == "round_prefer_floor" else frac >= 0.5)


def _weights(m: _Mode, x: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(out, T) source indices (unclipped) and weights for linear/cubic resampling."""
    base = np.floor(x)
    frac = (x - base)[:, None]
    support = 1.0 if m.mode == "linear" else 2.0
    s = min(scale, 1.0) if m.antialias else 1.0
    start = int(np.floor(-support / s)) + 1
    offsets = np.arange(start, 2 - start, dtype=np.float64)[None, :]
    t = (offsets - frac) * s
    w = np.clip(1 - np.abs(t), 0, 1) if m.mode == "linear" else _cubic(t, m.a)
    if m.antialias:
        w = w / w.sum(axis=1, keepdims=True)
    return (base[:, None] + offsets).astype(np.int64), w


def _axis_tables(m: _Mode, axis: int, length: int, out: int, scale: float, roi: tuple[float, float]
                 ) -> _Axis | None:
    """How to resample one axis, or None when it maps onto itself."""
    x = _coords(m, length, out, scale, *roi, np.float32 if m.mode == "nearest" else np.float64)
    outside = None
    if m.ctm == "tf_crop_and_resize":
        mask = (x < 0) | (x > length - 1)
        outside = mask if mask.any() else None
    same = out == length and outside is None
    if m.mode == "nearest":
        index = np.clip(_nearest(x, m.nearest, scale), 0, length - 1).astype(np.intp)
        if same and (index == np.arange(length)).all():
            return None
        return _Axis(axis, index=index, outside=outside)
    taps, w = _weights(m, x, scale)
    if m.exclude_outside:
        w = np.where((taps >= 0) & (taps < length), w, 0.0)
        total = w.sum(axis=1, keepdims=True)  # 0 only far outside (tf_crop_and_resize extrapolates)
        w = np.divide(w, total, out=np.zeros_like(w), where=total != 0)
    taps = np.clip(taps, 0, length - 1)
    if same:
        self_weight = np.where(taps == np.arange(length)[:, None], w, 0.0).sum(axis=1)
        if (self_weight == 1).all() and (np.abs(w).sum(axis=1) == 1).all():
            return None
    return _Axis(axis, taps=taps, weights=w, outside=outside)


def _targets(m: _Mode, shape: tuple[int, ...], scales: np.ndarray | None, sizes: np.ndarray | None
             ) -> tuple[list[int], list[float]]:
    """Output size and scale factor of every axis."""
    r = len(shape)
    axes = [a + r if a < 0 else a for a in m.axes] if m.axes is not None else list(range(r))
    out, factor = list(shape), [1.0] * r
    if scales is not None and scales.size:
        if scales.size != len(axes):
            raise ValueError(f"Resize: {scales.size} scales for {len(axes)} axes")
        for a, s in zip(axes, scales.astype(np.float64).tolist()):
            if not s > 0:
                raise ValueError(f"Resize: scales must be positive, got {s}")
            factor[a] = s
            out[a] = int(shape[a] * s)
        return out, factor
    if sizes is None or not sizes.size:
        raise ValueError("Resize needs scales or sizes")
    if sizes.size != len(axes):
        raise ValueError(f"Resize: {sizes.size} sizes for {len(axes)} axes")
    wanted = [int(v) for v in sizes.tolist()]
    if min(wanted) < 0:
        raise ValueError(f"Resize: sizes must not be negative, got {wanted}")
    if m.policy == "stretch":
        for a, n in zip(axes, wanted):
            out[a], factor[a] = n, n / shape[a]
        return out, factor
    ratios = [n / shape[a] for a, n in zip(axes, wanted)]
    common = min(ratios) if m.policy == "not_larger" else max(ratios)
    for a in axes:
        out[a], factor[a] = int(np.floor(shape[a] * common + 0.5)), common
    return out, factor


def _tables(m: _Mode, shape: tuple[int, ...], roi: np.ndarray | None, scales: np.ndarray | None,
            sizes: np.ndarray | None) -> _Tables:
    r = len(shape)
    out, factor = _targets(m, shape, scales, sizes)
    box = [(0.0, 1.0)] * r
    if m.ctm == "tf_crop_and_resize" and roi is not None and roi.size:
        axes = [a + r if a < 0 else a for a in m.axes] if m.axes is not None else list(range(r))
        values = roi.astype(np.float64).ravel().tolist()
        if len(values) != 2 * len(axes):
            raise ValueError(f"Resize: roi has {len(values)} values for {len(axes)} axes")
        for i, a in enumerate(axes):
            box[a] = (values[i], values[i + len(axes)])
    per_axis = [_axis_tables(m, a, shape[a], out[a], factor[a], box[a]) for a in range(r)]
    todo = [p for p in per_axis if p is not None]
    todo.sort(key=lambda p: out[p.axis] / max(shape[p.axis], 1))  # shrink first: less data after
    return _Tables(tuple(out), todo)


def _gather(x: np.ndarray, axes: list[_Axis]) -> np.ndarray:
    """Nearest resampling: strided views for evenly spaced indices, then one ``take`` per axis
    (shrinking axes first, then from the innermost out: whole rows get copied)."""
    view = x
    rest: list[tuple[int, np.ndarray]] = []
    for p in axes:
        idx = p.index
        assert idx is not None
        step = int(idx[1] - idx[0]) if idx.size > 1 else 1
        if step >= 1 and (idx == idx[0] + step * np.arange(idx.size)).all():
            index = (*(slice(None),) * p.axis, slice(int(idx[0]), int(idx[-1]) + 1, step))
            view = view[index]
        else:
            rest.append((p.axis, idx))
    if not rest:
        return view.copy()
    rest.sort(key=lambda r: (r[1].size >= view.shape[r[0]], -r[0]))
    for axis, idx in rest:
        view = view.take(idx, axis=axis)
    return view


def _resample(y: np.ndarray, p: _Axis, dense: bool) -> np.ndarray:
    """Linear/cubic resampling of ``y`` (float) along one axis."""
    taps, w = p.taps, p.weights
    assert taps is not None and w is not None
    n_out, length = taps.shape[0], y.shape[p.axis]
    head, tail = y.shape[: p.axis], y.shape[p.axis + 1:]
    if dense:
        mat = p.dense.get(y.dtype.str)
        if mat is None:
            full = np.zeros((n_out, length))
            np.add.at(full, (np.repeat(np.arange(n_out), taps.shape[1]), taps.ravel()), w.ravel())
            mat = p.dense[y.dtype.str] = full.astype(y.dtype)
        before, after = int(np.prod(head)), int(np.prod(tail))
        if after == 1:
            res = y.reshape(before, length) @ mat.T
        else:
            res = np.matmul(mat, y.reshape(before, length, after))
        return res.reshape((*head, n_out, *tail))
    shape = (-1,) + (1,) * len(tail)
    wt = w.astype(y.dtype)
    res = y.take(taps[:, 0], axis=p.axis) * wt[:, 0].reshape(shape)
    for t in range(1, taps.shape[1]):
        res += y.take(taps[:, t], axis=p.axis) * wt[:, t].reshape(shape)
    return res


def _run(m: _Mode, tables: _Tables, x: np.ndarray) -> np.ndarray:
    if 0 in tables.shape or 0 in x.shape:
        return np.zeros(tables.shape, dtype=x.dtype)
    if not tables.axes:
        return x.copy()
    if m.mode == "nearest":
        y = _gather(x, tables.axes)
    else:
        wide = x.dtype == np.float64 or (x.dtype.kind in "iu" and x.dtype.itemsize >= 4)
        ct = np.dtype(np.float64 if wide else np.float32)
        y = x.astype(ct, copy=False)
        finite = y.dtype.kind == "f" and bool(np.isfinite(y).all())
        for p in tables.axes:
            assert p.taps is not None
            y = _resample(y, p, finite and y.shape[p.axis] <= _DENSE_PER_TAP * p.taps.shape[1])
    for p in tables.axes:
        if p.outside is not None:
            where = p.outside.reshape((-1,) + (1,) * (y.ndim - 1 - p.axis))
            np.copyto(y, np.asarray(m.extrapolation).astype(y.dtype), where=where)
    if y.dtype == x.dtype:
        return y
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        y = np.clip(np.trunc(y), info.min, info.max)
    return y.astype(x.dtype)


def _kernel(m: _Mode) -> Any:
    """A function (x, roi, scales, sizes) -> y that caches its tables per shape and parameters."""
    cache: dict[tuple[Any, ...], _Tables] = {}

    def key(a: np.ndarray | None) -> bytes | None:
        return None if a is None else np.asarray(a).tobytes()

    def run(x: np.ndarray, roi: np.ndarray | None, scales: np.ndarray | None,
            sizes: np.ndarray | None) -> np.ndarray:
        k = (x.shape, key(roi), key(scales), key(sizes))
        tables = cache.get(k)
        if tables is None:
            if len(cache) > 32:
                cache.clear()
            arrays = [None if a is None else np.asarray(a) for a in (roi, scales, sizes)]
            tables = cache[k] = _tables(m, x.shape, *arrays)
        return _run(m, tables, x)

    return run


def _mode_name(node: Node, default: str = "nearest") -> str:
    mode = str(node.attr("mode", default))
    if mode == "bilinear":
        mode = "linear"
    if mode not in ("nearest", "linear", "cubic"):
        raise NotImplementedError(f"{node.op_type} mode {mode!r}")
    return mode


@register("Resize", 10, 11, 13, 18, 19)
def resize(node: Node) -> Kernel:
    legacy = node.since == 10
    ctm = "asymmetric" if legacy else str(node.attr("coordinate_transformation_mode", "half_pixel"))
    nearest = "simple" if legacy else str(node.attr("nearest_mode", "round_prefer_floor"))
    axes = node.attr("axes", None) if node.since >= 18 else None
    m = _Mode(
        mode=_mode_name(node), ctm=ctm, nearest=nearest, a=float(node.attr("cubic_coeff_a", -0.75)),
        exclude_outside=bool(node.attr("exclude_outside", 0)),
        extrapolation=float(node.attr("extrapolation_value", 0.0)),
        antialias=node.since >= 18 and bool(node.attr("antialias", 0)),
        axes=tuple(int(a) for a in axes) if axes else None,
        policy=str(node.attr("keep_aspect_ratio_policy", "stretch")) if node.since >= 18 else "stretch",
    )
    if m.ctm not in _CTMS or m.nearest not in _NEAREST:
        raise NotImplementedError(f"Resize {m.ctm!r} / {m.nearest!r}")
    if m.policy not in ("stretch", "not_larger", "not_smaller"):
        raise NotImplementedError(f"Resize keep_aspect_ratio_policy {m.policy!r}")
    if m.antialias and m.mode == "nearest":
        m = _Mode(**{**m.__dict__, "antialias": False})  # antialias only affects linear/cubic
    run = _kernel(m)
    if legacy:
        def kernel10(x: np.ndarray, scales: np.ndarray) -> np.ndarray:
            return run(x, None, scales, None)

        return kernel10

    def kernel(x: np.ndarray, roi: np.ndarray | None = None, scales: np.ndarray | None = None,
               sizes: np.ndarray | None = None) -> np.ndarray:
        return run(x, roi, scales, sizes)

    return kernel


@register("Upsample", 7, 9)
def upsample(node: Node) -> Kernel:
    mode = _mode_name(node)
    if mode == "cubic":
        raise NotImplementedError("Upsample has no cubic mode")
    run = _kernel(_Mode(mode=mode, ctm="asymmetric", nearest="simple"))
    if node.since >= 9:
        def kernel9(x: np.ndarray, scales: np.ndarray) -> np.ndarray:
            return run(x, None, scales, None)

        return kernel9
    fixed = np.asarray(node.attr("scales"), dtype=np.float32)

    def kernel7(x: np.ndarray) -> np.ndarray:
        return run(x, None, fixed, None)

    return kernel7
