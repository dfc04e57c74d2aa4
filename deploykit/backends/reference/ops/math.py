"""Linear algebra and normalised exponentials: MatMul, Gemm, Einsum, Softmax, LogSoftmax, CumSum."""

from __future__ import annotations

import numpy as np

from ..kernels import Kernel, Node, register

Array = np.ndarray


@register("MatMul", 1, 9, 13)
def _matmul(node: Node) -> Kernel:
    return np.matmul


@register("Gemm", 7, 9, 11, 13)
def _gemm(node: Node) -> Kernel:
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    trans_a, trans_b = int(node.attr("transA", 0)), int(node.attr("transB", 0))
    b_const = node.const(1)
    b_ready = None if b_const is None else np.ascontiguousarray(b_const.T if trans_b else b_const)

    def kernel(a: Array, b: Array, c: Array | None = None) -> Array:
        a2 = a.T if trans_a else a
        b2 = b_ready if b_ready is not None else (b.T if trans_b else b)
        y = a2 @ b2
        if alpha != 1.0:
            y *= alpha
        if c is not None:
            y += c * beta if beta != 1.0 else c
        return y.astype(a.dtype, copy=False)

    return kernel


@register("Einsum", 12)
def _einsum(node: Node) -> Kernel:
    equation = str(node.attrs["equation"]).replace(" ", "")
    return lambda *xs: np.asarray(np.einsum(equation, *xs, optimize=len(xs) > 2))


def _softmax_axis(node: Node) -> tuple[int, bool]:
    """(axis, legacy): opset < 13 flattens to 2-D at ``axis`` (default 1); 13+ uses one axis."""
    if node.since >= 13:
        return int(node.attr("axis", -1)), False
    return int(node.attr("axis", 1)), True


def _exp_normalised(x: Array, axis: int, legacy: bool, log: bool) -> Array:
    shape = x.shape
    if legacy:
        a = axis if axis >= 0 else axis + x.ndim
        x = x.reshape(int(np.prod(shape[:a], dtype=np.int64)), -1)
        axis = 1
    shifted = x - x.max(axis=axis, keepdims=True)
    if log:
        out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    else:
        out = np.exp(shifted)
        out /= out.sum(axis=axis, keepdims=True)
    return out.reshape(shape)


@register("Softmax", 1, 11, 13)
def _softmax(node: Node) -> Kernel:
    axis, legacy = _softmax_axis(node)
    return lambda x: _exp_normalised(x, axis, legacy, log=False)


@register("LogSoftmax", 1, 11, 13)
def _log_softmax(node: Node) -> Kernel:
    axis, legacy = _softmax_axis(node)
    return lambda x: _exp_normalised(x, axis, legacy, log=True)


@register("CumSum", 11, 14)
def _cumsum(node: Node) -> Kernel:
    exclusive, reverse = int(node.attr("exclusive", 0)), int(node.attr("reverse", 0))

    def kernel(x: Array, axis: Array) -> Array:
        a = int(np.asarray(axis).reshape(-1)[0])
        y = np.flip(x, a) if reverse else x
        out = np.cumsum(y, axis=a, dtype=x.dtype)
        if exclusive:
            out = np.roll(out, 1, axis=a)
            index = [slice(None)] * x.ndim
            index[a] = slice(0, 1)
            out[tuple(index)] = 0
        return np.flip(out, a) if reverse else out

    return kernel
