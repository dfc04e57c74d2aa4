"""Pooling: MaxPool (with Indices), AveragePool, LpPool and their Global forms, 1D/2D/3D, as
separable NumPy kernels (one strided slice per kernel tap along each spatial axis)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..kernels import Kernel, Node, register


@dataclass(frozen=True)
class _Window:
    """Pooling attributes of one node, decoded once."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]  # begin..., end...
    auto_pad: str
    ceil_mode: bool


@dataclass(frozen=True)
class _Geometry:
    """Where the windows of one input shape fall."""

    out: tuple[int, ...]
    begin: tuple[int, ...]  # padding before each spatial axis
    end: tuple[int, ...]  # declared padding after (what count_include_pad counts)
    extra: tuple[int, ...]  # padding after that the windows actually reach (may be < 0)


def _window(node: Node) -> _Window:
    kernel = tuple(int(k) for k in node.attr("kernel_shape"))
    n = len(kernel)
    strides = tuple(int(s) for s in node.attr("strides", None) or [1] * n)
    dilations = tuple(int(d) for d in node.attr("dilations", None) or [1] * n)
    pads = tuple(int(p) for p in node.attr("pads", None) or [0] * (2 * n))
    auto_pad = str(node.attr("auto_pad", "NOTSET")) or "NOTSET"
    if len(strides) != n or len(dilations) != n or len(pads) != 2 * n:
        raise ValueError(f"{node.op_type}: strides/dilations/pads do not match kernel_shape {kernel}")
    if min(kernel + strides + dilations) < 1 or min(pads) < 0:
        raise ValueError(f"{node.op_type}: kernel/strides/dilations must be >= 1 and pads >= 0")
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ValueError(f"{node.op_type}: unknown auto_pad {auto_pad!r}")
    return _Window(kernel, strides, dilations, pads, auto_pad, bool(node.attr("ceil_mode", 0)))


def _geometry(spatial: tuple[int, ...], w: _Window) -> _Geometry:
    out, begin, end, extra = [], [], [], []
    n = len(w.kernel)
    if len(spatial) != n:
        raise ValueError(f"pooling: input has {len(spatial)} spatial axes, kernel_shape {n}")
    for i, size in enumerate(spatial):
        k, s, d = w.kernel[i], w.strides[i], w.dilations[i]
        span = (k - 1) * d + 1
        if w.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-size // s)
            # a stride longer than the window would make this negative: clamped, as TensorFlow
            # (where SAME comes from) does; onnx.reference and onnxruntime disagree on the rest
            total = max(0, (o - 1) * s + span - size)
            small = total // 2
            pb = small if w.auto_pad == "SAME_UPPER" else total - small
            pe = total - pb
        elif w.auto_pad == "VALID":
            o, pb, pe = (size - span) // s + 1, 0, 0
        else:
            pb, pe = w.pads[i], w.pads[i + n]
            room = size + pb + pe - span
            if w.ceil_mode:
                o = -(-room // s) + 1
                if (o - 1) * s >= size + pb:  # the last window would start in the end padding
                    o -= 1
            else:
                o = room // s + 1
        if o < 1:
            raise ValueError(f"pooling window {span} does not fit axis of size {size} (padded)")
        out.append(o)
        begin.append(pb)
        end.append(pe)
        extra.append((o - 1) * s + span - size - pb)
    return _Geometry(tuple(out), tuple(begin), tuple(end), tuple(extra))


def _lowest(dtype: np.dtype) -> Any:
    if dtype.kind == "f":
        return -np.inf
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    raise TypeError(f"pooling does not support dtype {dtype}")


def _padded(x: np.ndarray, g: _Geometry, fill: Any) -> np.ndarray:
    """``x`` with its spatial axes padded by ``fill`` as far as the windows reach."""
    after = [max(e, 0) for e in g.extra]
    if not any(g.begin) and not any(after):
        return x
    shape = x.shape[:2] + tuple(s + b + a for s, b, a in zip(x.shape[2:], g.begin, after))
    out = np.full(shape, fill, dtype=x.dtype)
    inner = (slice(None), slice(None), *(slice(b, b + s) for b, s in zip(g.begin, x.shape[2:])))
    out[inner] = x
    return out


def _pool_axis(y: np.ndarray, axis: int, size: int, begin: int, k: int, s: int, d: int,
               ufunc: np.ufunc, fill: Any) -> np.ndarray:
    """Pool ``y`` along a leading spatial axis without padding it: each kernel tap is a strided
    view combined into the output positions whose tap lands on data."""
    length = y.shape[axis]
    lead = (slice(None),) * axis
    full: list[np.ndarray] = []
    partial: list[tuple[slice, np.ndarray]] = []
    for t in range(k):
        first = t * d - begin  # input position of this tap for output 0
        lo = -(first // s) if first < 0 else 0
        hi = min(size, (length - 1 - first) // s + 1) if length - 1 >= first else 0
        if hi <= lo:
            continue
        start = first + lo * s
        index = (*lead, slice(start, start + (hi - lo - 1) * s + 1, s))
        view = y[index]
        if lo == 0 and hi == size:
            full.append(view)
        else:
            partial.append((slice(lo, hi), view))
    acc = np.empty((*y.shape[:axis], size, *y.shape[axis + 1:]), dtype=y.dtype)
    if len(full) >= 2:
        ufunc(full[0], full[1], out=acc)
        full = full[2:]
    elif full:
        np.copyto(acc, full.pop())
    else:
        acc[...] = fill
    for v in full:
        ufunc(acc, v, out=acc)
    for where, v in partial:
        index = (*lead, where)
        part = acc[index]
        ufunc(part, v, out=part)
    return acc


def _pool_last(y: np.ndarray, size: int, k: int, s: int, d: int, ufunc: np.ufunc) -> np.ndarray:
    """Pool the last axis of the contiguous ``y`` (padded so that every window fits, its length
    a multiple of ``s``) as one long 1D run over all rows: no per-row loop overhead."""
    width = y.shape[-1]
    q = width // s
    n = y.size // width * q - (q - size)  # the last row's tail windows would run off the end
    flat = y.reshape(-1)
    views = [flat[t * d: t * d + (n - 1) * s + 1: s] for t in range(k)]
    z = np.empty(y.size // width * q, dtype=y.dtype)
    run = z[:n]
    if k == 1:
        run[...] = views[0]
    else:
        ufunc(views[0], views[1], out=run)
        for v in views[2:]:
            ufunc(run, v, out=run)
    out = z.reshape((*y.shape[:-1], q))
    return out if q == size else np.ascontiguousarray(out[..., :size])


def _reduce(x: np.ndarray, w: _Window, g: _Geometry, ufunc: np.ufunc, fill: Any) -> np.ndarray:
    """Separable pooling of ``x`` with ``ufunc`` (np.maximum or np.add; ``fill`` is its identity).
    Only the last axis is padded (leading axes take clipped taps, in long contiguous runs)."""
    n = len(w.kernel)
    s, begin = w.strides[-1], g.begin[-1]
    width = x.shape[-1]
    padded = width + begin + max(g.extra[-1], 0)
    padded += -padded % s
    if padded != width:
        y = np.full((*x.shape[:-1], padded), fill, dtype=x.dtype)
        y[..., begin: begin + width] = x
    else:
        y = np.ascontiguousarray(x)
    for i in range(n - 1):
        y = _pool_axis(y, 2 + i, g.out[i], g.begin[i], w.kernel[i], w.strides[i], w.dilations[i],
                       ufunc, fill)
    return _pool_last(y, g.out[-1], w.kernel[-1], s, w.dilations[-1], ufunc)


def _counts(spatial: tuple[int, ...], w: _Window, g: _Geometry, include_pad: bool) -> list[np.ndarray]:
    """Per axis, how many taps of each window land on data (or on declared padding)."""
    counts = []
    for i, size in enumerate(spatial):
        start = np.arange(g.out[i]) * w.strides[i] - g.begin[i]
        pos = start[:, None] + np.arange(w.kernel[i])[None, :] * w.dilations[i]
        lo, hi = (-g.begin[i], size + g.end[i]) if include_pad else (0, size)
        counts.append(((pos >= lo) & (pos < hi)).sum(axis=1))
    return counts


def _outer(vectors: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    n = len(vectors)
    total = np.ones((1,) * n, dtype=dtype)
    for i, v in enumerate(vectors):
        total = total * v.astype(dtype).reshape((-1,) + (1,) * (n - 1 - i))
    return total


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind != "f":
        raise TypeError(f"this pooling does not support dtype {dtype}")
    return dtype if dtype.itemsize >= 4 else np.dtype(np.float32)


def _shape_cache(build: Callable[[tuple[int, ...]], Any]) -> Callable[[tuple[int, ...]], Any]:
    cache: dict[tuple[int, ...], Any] = {}

    def get(spatial: tuple[int, ...]) -> Any:
        hit = cache.get(spatial)
        if hit is None:
            if len(cache) > 32:
                cache.clear()
            hit = cache[spatial] = build(spatial)
        return hit

    return get


def _argmax_indices(x: np.ndarray, w: _Window, g: _Geometry, storage_order: int) -> tuple[Any, Any]:
    """MaxPool with its Indices output (flat positions in ``x``), one pass per kernel offset."""
    xp = _padded(x, g, _lowest(x.dtype))
    nsp = len(w.kernel)
    best: np.ndarray | None = None
    arg = np.zeros(x.shape[:2] + g.out, dtype=np.int64)
    offsets = list(itertools.product(*(range(k) for k in w.kernel)))
    for j, off in enumerate(offsets):
        sl = tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                   for t, d, o, s in zip(off, w.dilations, g.out, w.strides))
        where = (slice(None), slice(None), *sl)
        v = xp[where]
        if best is None:
            best = v.copy()
            continue
        better = v > best
        np.copyto(best, v, where=better)
        np.copyto(arg, j, where=better)
    assert best is not None
    spatial = x.shape[2:]
    taps = np.unravel_index(arg, w.kernel)
    flat = np.zeros_like(arg)
    stride = 1
    axes = range(nsp - 1, -1, -1) if storage_order == 0 else range(nsp)
    for i in axes:
        grid = (np.arange(g.out[i]) * w.strides[i] - g.begin[i]).reshape((-1,) + (1,) * (nsp - 1 - i))
        flat += (grid + taps[i] * w.dilations[i]) * stride
        stride *= spatial[i]
    plane = int(np.prod(spatial))
    channel = np.arange(x.shape[0] * x.shape[1], dtype=np.int64).reshape(x.shape[:2] + (1,) * nsp)
    flat += channel * plane
    return best, flat


@register("MaxPool", 1, 8, 10, 11, 12, 22)
def max_pool(node: Node) -> Kernel:
    w = _window(node)
    storage_order = int(node.attr("storage_order", 0))
    outputs = list(node.proto.output) if node.proto is not None else ["y"] * node.n_outputs
    want_indices = len(outputs) > 1 and bool(outputs[1])
    geometry = _shape_cache(lambda spatial: _geometry(spatial, w))

    def kernel(x: np.ndarray) -> Any:
        g = geometry(x.shape[2:])
        if want_indices:
            return _argmax_indices(x, w, g, storage_order)
        return _reduce(x, w, g, np.maximum, _lowest(x.dtype))

    return kernel


@register("AveragePool", 1, 7, 10, 11, 19, 22)
def average_pool(node: Node) -> Kernel:
    w = _window(node)
    include_pad = bool(node.attr("count_include_pad", 0))

    def build(spatial: tuple[int, ...]) -> tuple[_Geometry, list[np.ndarray] | None]:
        g = _geometry(spatial, w)
        counts = _counts(spatial, w, g, include_pad)
        uniform = all((c == c[0]).all() for c in counts) and all(c[0] == k for c, k in zip(counts, w.kernel))
        return g, None if uniform else counts

    geometry_of = _shape_cache(build)
    divisors: dict[tuple[tuple[int, ...], str], np.ndarray] = {}

    def kernel(x: np.ndarray) -> np.ndarray:
        g, counts = geometry_of(x.shape[2:])
        ct = _compute_dtype(x.dtype)
        y = _reduce(x.astype(ct, copy=False), w, g, np.add, 0)
        if counts is None:
            y *= ct.type(1.0 / float(np.prod(w.kernel)))
        else:
            key = (x.shape[2:], ct.str)
            div = divisors.get(key)
            if div is None:
                div = divisors[key] = _outer(counts, ct)
            np.divide(y, div, out=y)
        return y.astype(x.dtype, copy=False)

    return kernel


def _lp_sum(x: np.ndarray, p: float) -> np.ndarray:
    if p == 2:
        return x * x
    return np.abs(x) if p == 1 else np.power(np.abs(x), p)


def _lp_root(y: np.ndarray, p: float) -> np.ndarray:
    if p == 2:
        return np.sqrt(y, out=y)
    return y if p == 1 else np.power(y, 1.0 / p, out=y)


@register("LpPool", 1, 2, 11, 18, 22)
def lp_pool(node: Node) -> Kernel:
    w = _window(node)
    p = float(node.attr("p", 2))
    geometry = _shape_cache(lambda spatial: _geometry(spatial, w))

    def kernel(x: np.ndarray) -> np.ndarray:
        g = geometry(x.shape[2:])
        ct = _compute_dtype(x.dtype)
        y = _reduce(_lp_sum(x.astype(ct, copy=False), p), w, g, np.add, 0)
        return _lp_root(y, p).astype(x.dtype, copy=False)

    return kernel


def _flat_spatial(x: np.ndarray) -> np.ndarray:
    return x.reshape((*x.shape[:2], -1))


def _global_shape(x: np.ndarray) -> tuple[int, ...]:
    return x.shape[:2] + (1,) * (x.ndim - 2)


@register("GlobalAveragePool", 1, 22)
def global_average_pool(node: Node) -> Kernel:
    def kernel(x: np.ndarray) -> np.ndarray:
        flat = _flat_spatial(x)
        y = flat.sum(axis=-1, dtype=_compute_dtype(x.dtype))
        y *= y.dtype.type(1.0 / max(flat.shape[-1], 1))
        return y.astype(x.dtype, copy=False).reshape(_global_shape(x))

    return kernel


@register("GlobalMaxPool", 1, 22)
def global_max_pool(node: Node) -> Kernel:
    def kernel(x: np.ndarray) -> np.ndarray:
        return _flat_spatial(x).max(axis=-1).reshape(_global_shape(x))

    return kernel


@register("GlobalLpPool", 1, 2, 22)
def global_lp_pool(node: Node) -> Kernel:
    p = float(node.attr("p", 2))

    def kernel(x: np.ndarray) -> np.ndarray:
        ct = _compute_dtype(x.dtype)
        y = _lp_sum(_flat_spatial(x).astype(ct, copy=False), p).sum(axis=-1)
        return _lp_root(y, p).astype(x.dtype, copy=False).reshape(_global_shape(x))

    return kernel
