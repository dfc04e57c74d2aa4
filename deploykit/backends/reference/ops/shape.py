"""Shape and data-movement operators: Reshape, Transpose, Concat, Slice, Gather, Squeeze,
Unsqueeze, Shape, Size, Expand, Tile, Split, Pad, Flatten, Cast, Constant, ConstantOfShape,
Range, GatherElements, NonZero."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import Kernel, Node, register

Array = np.ndarray

_LATEST = (21, 23, 24, 25)  # versions that only widened the accepted types


def _ints(v: Any) -> list[int]:
    if type(v) is np.ndarray:
        return [int(a) for a in v.reshape(-1).tolist()]
    return [int(a) for a in np.asarray(v).reshape(-1).tolist()]


@register("Reshape", 5, 13, 14, 19, *_LATEST)
def _reshape(node: Node) -> Kernel:
    allow_zero = bool(node.attr("allowzero", 0))

    def kernel(x: Array, shape: Array) -> Array:
        target = _ints(shape)
        if not allow_zero:
            target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
        return x.reshape(target)

    return kernel


@register("Transpose", 1, 13, *_LATEST)
def _transpose(node: Node) -> Kernel:
    perm = node.attr("perm")
    return lambda x: np.transpose(x, perm if perm is None else [int(p) for p in perm])


@register("Concat", 4, 11, 13)
def _concat(node: Node) -> Kernel:
    axis = int(node.attrs["axis"])
    return lambda *xs: np.concatenate(xs, axis=axis)


@register("Flatten", 1, 9, 11, 13, *_LATEST)
def _flatten(node: Node) -> Kernel:
    axis = int(node.attr("axis", 1))

    def kernel(x: Array) -> Array:
        a = axis if axis >= 0 else axis + x.ndim
        outer = int(np.prod(x.shape[:a], dtype=np.int64))
        return x.reshape(outer, -1) if x.size else x.reshape(outer, int(np.prod(x.shape[a:])))

    return kernel


def _slice(x: Array, starts: list[int], ends: list[int], axes: list[int] | None,
           steps: list[int] | None) -> Array:
    index = [slice(None)] * x.ndim
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step == 0:
            raise ValueError("Slice step cannot be 0")
        a = axis if axis >= 0 else axis + x.ndim
        d = x.shape[a]
        start = start + d if start < 0 else start
        end = end + d if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), d), min(max(end, 0), d)
            index[a] = slice(start, end, step)
        else:
            start, end = min(max(start, 0), d - 1), min(max(end, -1), d - 1)
            index[a] = slice(start, None if end < 0 else end, step)
    return x[tuple(index)]


@register("Slice", 1, 10, 11, 13)
def _slice_op(node: Node) -> Kernel:
    if node.since == 1:
        starts, ends = _ints(node.attrs["starts"]), _ints(node.attrs["ends"])
        axes = node.attr("axes")
        fixed_axes = None if axes is None else _ints(axes)
        return lambda x: _slice(x, starts, ends, fixed_axes, None)

    def kernel(x: Array, starts: Array, ends: Array, axes: Array | None = None,
               steps: Array | None = None) -> Array:
        return _slice(x, _ints(starts), _ints(ends), None if axes is None else _ints(axes),
                      None if steps is None else _ints(steps))

    return kernel


@register("Gather", 1, 11, 13)
def _gather(node: Node) -> Kernel:
    axis = int(node.attr("axis", 0))
    return lambda x, idx: np.take(x, idx.astype(np.int64, copy=False), axis=axis)


@register("GatherElements", 11, 13)
def _gather_elements(node: Node) -> Kernel:
    axis = int(node.attr("axis", 0))

    def kernel(x: Array, idx: Array) -> Array:
        a = axis if axis >= 0 else axis + x.ndim
        idx = np.where(idx < 0, idx + x.shape[a], idx)
        return np.take_along_axis(x, idx.astype(np.int64), axis=a)

    return kernel


def _squeeze(x: Array, axes: list[int] | None) -> Array:
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(a if a >= 0 else a + x.ndim for a in axes))


def _unsqueeze(x: Array, axes: list[int]) -> Array:
    out_rank = x.ndim + len(axes)
    norm = sorted(a if a >= 0 else a + out_rank for a in axes)
    return np.reshape(x, np.expand_dims(np.empty(x.shape, dtype=np.bool_), norm).shape) \
        if x.size == 0 else np.expand_dims(x, norm)


@register("Squeeze", 1, 11, 13, *_LATEST)
def _squeeze_op(node: Node) -> Kernel:
    if node.since < 13:
        axes = node.attr("axes")
        fixed = None if axes is None else _ints(axes)
        return lambda x: _squeeze(x, fixed)
    return lambda x, axes=None: _squeeze(x, None if axes is None else _ints(axes))


@register("Unsqueeze", 1, 11, 13, *_LATEST)
def _unsqueeze_op(node: Node) -> Kernel:
    if node.since < 13:
        fixed = _ints(node.attrs["axes"])
        return lambda x: _unsqueeze(x, fixed)
    return lambda x, axes: _unsqueeze(x, _ints(axes))


@register("Shape", 1, 13, 15, 19, *_LATEST)
def _shape(node: Node) -> Kernel:
    start, end = node.attr("start", 0), node.attr("end")

    def kernel(x: Array) -> Array:
        dims = x.shape
        s = min(max(start + len(dims) if start < 0 else start, 0), len(dims))
        e = len(dims) if end is None else end + len(dims) if end < 0 else end
        return np.array(dims[s:min(max(e, 0), len(dims))], dtype=np.int64)

    return kernel


@register("Size", 1, 13, 19, *_LATEST)
def _size(node: Node) -> Kernel:
    return lambda x: np.array(x.size, dtype=np.int64)


@register("Expand", 8, 13)
def _expand(node: Node) -> Kernel:
    def kernel(x: Array, shape: Array) -> Array:
        target = np.broadcast_shapes(x.shape, tuple(_ints(shape)))
        return np.broadcast_to(x, target).copy()

    return kernel


@register("Tile", 6, 13)
def _tile(node: Node) -> Kernel:
    return lambda x, repeats: np.tile(x, _ints(repeats))


@register("Split", 2, 11, 13, 18)
def _split(node: Node) -> Kernel:
    axis = int(node.attr("axis", 0))
    n_out = node.n_outputs
    attr_split = node.attr("split")
    num_outputs = node.attr("num_outputs")

    def kernel(x: Array, split: Array | None = None) -> tuple[Array, ...]:
        a = axis if axis >= 0 else axis + x.ndim
        sizes = _ints(split) if split is not None else (
            _ints(attr_split) if attr_split is not None and node.since < 13 else None)
        if sizes is None:
            d = x.shape[a]
            if num_outputs is not None:  # opset 18: last chunk may be smaller
                chunk = -(-d // int(num_outputs))
                sizes = [min(chunk, d - i * chunk) for i in range(int(num_outputs))]
            else:
                sizes = [d // n_out] * n_out
        bounds = np.cumsum(sizes)[:-1]
        return tuple(np.split(x, bounds, axis=a))

    return kernel


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def _pad(x: Array, pads: list[int], mode: str, value: Any, axes: list[int] | None) -> Array:
    axes = list(range(x.ndim)) if axes is None else [a if a >= 0 else a + x.ndim for a in axes]
    n = len(axes)
    before, after = [0] * x.ndim, [0] * x.ndim
    for i, a in enumerate(axes):
        before[a], after[a] = pads[i], pads[i + n]
    crop = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in
                 enumerate(zip(before, after)))
    x = x[crop]
    width = [(max(b, 0), max(e, 0)) for b, e in zip(before, after)]
    if mode not in _PAD_MODES:
        raise ValueError(f"Pad mode {mode!r} is not one of {sorted(_PAD_MODES)}")
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=value)
    return np.pad(x, width, mode=_PAD_MODES[mode])  # type: ignore[call-overload]


@register("Pad", 2, 11, 13, 18, 19, *_LATEST)
def _pad_op(node: Node) -> Kernel:
    mode = str(node.attr("mode", "constant"))
    if node.since == 2:
        pads, value = _ints(node.attrs["pads"]), float(node.attr("value", 0.0))
        return lambda x: _pad(x, pads, mode, x.dtype.type(value), None)

    def kernel(x: Array, pads: Array, value: Array | None = None, axes: Array | None = None
               ) -> Array:
        fill = x.dtype.type(0) if value is None or np.asarray(value).size == 0 \
            else np.asarray(value).reshape(-1)[0]
        return _pad(x, _ints(pads), mode, fill, None if axes is None else _ints(axes))

    return kernel


def _onnx_dtype(code: int) -> np.dtype:
    from onnx import TensorProto
    from onnx.helper import tensor_dtype_to_np_dtype

    if code in (TensorProto.STRING, TensorProto.BFLOAT16) or code >= TensorProto.FLOAT8E4M3FN:
        raise NotImplementedError("string, bfloat16 and float8 casts are delegated")
    return np.dtype(tensor_dtype_to_np_dtype(code))


@register("Cast", 6, 9, 13, 19, *_LATEST)
def _cast(node: Node) -> Kernel:
    target = _onnx_dtype(int(node.attrs["to"]))

    def kernel(x: Array) -> Array:
        if x.dtype.kind in "OUS":  # strings parse as numbers ("1.5", "inf", "NaN")
            x = x.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            return x.astype(target)

    return kernel


@register("Constant", 1, 9, 11, 12, 13, 19, *_LATEST)
def _constant(node: Node) -> Kernel:
    attrs = node.attrs
    if "value" in attrs:
        value = np.asarray(attrs["value"])
    elif "value_float" in attrs:
        value = np.array(attrs["value_float"], dtype=np.float32)
    elif "value_floats" in attrs:
        value = np.array(attrs["value_floats"], dtype=np.float32)
    elif "value_int" in attrs:
        value = np.array(attrs["value_int"], dtype=np.int64)
    elif "value_ints" in attrs:
        value = np.array(attrs["value_ints"], dtype=np.int64)
    elif "value_string" in attrs:
        value = np.array(attrs["value_string"], dtype=object)
    elif "value_strings" in attrs:
        value = np.array(attrs["value_strings"], dtype=object)
    else:
        raise NotImplementedError("Constant with a sparse value")
    return lambda: value


@register("ConstantOfShape", 9, 20, *_LATEST)
def _constant_of_shape(node: Node) -> Kernel:
    value = node.attr("value")
    fill = np.zeros(1, dtype=np.float32) if value is None else np.asarray(value).reshape(-1)

    def kernel(shape: Array) -> Array:
        return np.full(_ints(shape), fill[0], dtype=fill.dtype)

    return kernel


@register("Range", 11)
def _range(node: Node) -> Kernel:
    def kernel(start: Array, limit: Array, delta: Array) -> Array:
        return np.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)

    return kernel


@register("NonZero", 9, 13)
def _nonzero(node: Node) -> Kernel:
    return lambda x: np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


@register("Scatter", 9, 11)
def _scatter(node: Node) -> Kernel:
    """The deprecated Scatter: ScatterElements without a reduction."""
    axis = int(node.attr("axis", 0))

    def kernel(x: Array, idx: Array, updates: Array) -> Array:
        a = axis if axis >= 0 else axis + x.ndim
        out = x.copy()
        idx = np.where(idx < 0, idx + x.shape[a], idx).astype(np.int64)
        np.put_along_axis(out, idx, updates, axis=a)
        return out

    return kernel
