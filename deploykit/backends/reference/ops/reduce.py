"""Reductions (ReduceMean, ReduceSum, ReduceMax, ...) and ArgMax/ArgMin.

Axes come from an attribute before the version that moved them to an input (13 for ReduceSum,
18 for the others); an empty reduction returns the operation's identity (0, 1, -inf, +inf).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..kernels import Kernel, Node, register

Array = np.ndarray


def _extreme(x: Array, low: bool) -> float | int | bool:
    if x.dtype == np.bool_:
        return not low
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        return int(info.min if low else info.max)
    return float("-inf" if low else "inf")


def _max(x: Array, axes: tuple[int, ...] | None, keep: bool) -> Array:
    return np.max(x, axis=axes, keepdims=keep, initial=_extreme(x, True)) if x.size == 0 \
        else np.max(x, axis=axes, keepdims=keep)


def _min(x: Array, axes: tuple[int, ...] | None, keep: bool) -> Array:
    return np.min(x, axis=axes, keepdims=keep, initial=_extreme(x, False)) if x.size == 0 \
        else np.min(x, axis=axes, keepdims=keep)


def _logsumexp(x: Array, axes: tuple[int, ...] | None, keep: bool) -> Array:
    if x.size == 0:
        return np.log(np.sum(np.exp(x), axis=axes, keepdims=keep))
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return out if keep else np.squeeze(out, axis=axes)


_REDUCERS: dict[str, tuple[Callable[[Array, tuple[int, ...] | None, bool], Array], tuple[int, ...], int]] = {
    # name: (function(x, axes, keepdims), schema versions, first version with axes as input)
    "ReduceSum": (lambda x, a, k: np.sum(x, axis=a, keepdims=k), (1, 11, 13), 13),
    "ReduceMean": (lambda x, a, k: np.mean(x, axis=a, keepdims=k), (1, 11, 13, 18), 18),
    "ReduceMax": (_max, (1, 11, 12, 13, 18, 20), 18),
    "ReduceMin": (_min, (1, 11, 12, 13, 18, 20), 18),
    "ReduceProd": (lambda x, a, k: np.prod(x, axis=a, keepdims=k), (1, 11, 13, 18), 18),
    "ReduceL1": (lambda x, a, k: np.sum(np.abs(x), axis=a, keepdims=k), (1, 11, 13, 18), 18),
    "ReduceL2": (lambda x, a, k: np.sqrt(np.sum(np.square(x), axis=a, keepdims=k)), (1, 11, 13, 18), 18),
    "ReduceSumSquare": (lambda x, a, k: np.sum(np.square(x), axis=a, keepdims=k), (1, 11, 13, 18), 18),
    "ReduceLogSum": (lambda x, a, k: np.log(np.sum(x, axis=a, keepdims=k)), (1, 11, 13, 18), 18),
    "ReduceLogSumExp": (_logsumexp, (1, 11, 13, 18), 18),
}


def _make(fn: Callable[[Array, tuple[int, ...] | None, bool], Array], axes_input_from: int
          ) -> Callable[[Node], Kernel]:
    def factory(node: Node) -> Kernel:
        keep = bool(node.attr("keepdims", 1))
        if node.since < axes_input_from:
            attr_axes = node.attr("axes")
            fixed = None if attr_axes is None else tuple(int(a) for a in attr_axes)

            def kernel_attr(x: Array) -> Array:
                with np.errstate(divide="ignore", invalid="ignore"):
                    return np.asarray(fn(x, fixed, keep), dtype=x.dtype)

            return kernel_attr
        noop = bool(node.attr("noop_with_empty_axes", 0))

        def kernel(x: Array, axes: Array | None = None) -> Array:
            if axes is None or np.asarray(axes).size == 0:
                if noop:
                    return x
                picked = None
            else:
                picked = tuple(int(a) for a in np.asarray(axes).reshape(-1))
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.asarray(fn(x, picked, keep), dtype=x.dtype)

        return kernel

    return factory


for _name, (_fn, _versions, _from) in _REDUCERS.items():
    register(_name, *_versions)(_make(_fn, _from))


def _arg(find_max: bool) -> Callable[[Node], Kernel]:
    def factory(node: Node) -> Kernel:
        axis = int(node.attr("axis", 0))
        keep = bool(node.attr("keepdims", 1))
        last = bool(node.attr("select_last_index", 0))
        pick = np.argmax if find_max else np.argmin

        def kernel(x: Array) -> Array:
            if last:
                a = axis if axis >= 0 else axis + x.ndim
                idx = x.shape[a] - 1 - pick(np.flip(x, a), axis=a)
            else:
                idx = pick(x, axis=axis)
            idx = np.asarray(idx, dtype=np.int64)
            return np.expand_dims(idx, axis) if keep else idx

        return kernel

    return factory


register("ArgMax", 1, 11, 12, 13)(_arg(True))
register("ArgMin", 1, 11, 12, 13)(_arg(False))
