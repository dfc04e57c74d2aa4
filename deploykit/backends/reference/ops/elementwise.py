"""Elementwise operators: arithmetic, comparisons, logic, unary math and activations.

All follow numpy broadcasting (ONNX >= 7 multidirectional broadcasting) and keep the input
dtype: attribute scalars are Python floats, which numpy treats as weak (NEP 50).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from typing import Any

import numpy as np

from ..kernels import Kernel, Node, register

Array = np.ndarray


def _simple(op: str, *since: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a kernel that needs no attributes: the factory just returns it."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        register(op, *since)(lambda node: fn)
        return fn

    return deco


# -- binary arithmetic --------------------------------------------------------------------
_simple("Add", 7, 13, 14)(np.add)
_simple("Sub", 7, 13, 14)(np.subtract)
_simple("Mul", 7, 13, 14)(np.multiply)


@_simple("Div", 7, 13, 14)
def _div(a: Array, b: Array) -> Array:
    if a.dtype.kind in "iu":  # integer division truncates toward zero (C semantics)
        q = np.floor_divide(a, b)
        fix = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
        return (q + fix.astype(q.dtype)).astype(a.dtype, copy=False)
    return np.divide(a, b)


@_simple("Pow", 7, 12, 13, 15)
def _pow(a: Array, b: Array) -> Array:
    if a.dtype.kind == "f" and b.dtype != a.dtype:
        b = b.astype(a.dtype)
    return np.power(a, b).astype(a.dtype, copy=False)


@register("Mod", 10, 13)
def _mod(node: Node) -> Kernel:
    if int(node.attr("fmod", 0)):
        return np.fmod
    return np.mod


def _variadic(ufunc: Callable[[Array, Array], Array]) -> Callable[..., Array]:
    def kernel(*xs: Array) -> Array:
        return xs[0].copy() if len(xs) == 1 else reduce(ufunc, xs)

    return kernel


register("Max", 8, 12, 13)(lambda node: _variadic(np.maximum))
register("Min", 8, 12, 13)(lambda node: _variadic(np.minimum))
register("Sum", 8, 13)(lambda node: _variadic(np.add))


@_simple("Mean", 8, 13)
def _mean(*xs: Array) -> Array:
    return (reduce(np.add, xs) / len(xs)).astype(xs[0].dtype, copy=False)


# -- comparison and logic -----------------------------------------------------------------
_simple("Equal", 7, 11, 13, 19)(np.equal)
_simple("Less", 7, 9, 13)(np.less)
_simple("Greater", 7, 9, 13)(np.greater)
_simple("LessOrEqual", 12, 16)(np.less_equal)
_simple("GreaterOrEqual", 12, 16)(np.greater_equal)
_simple("And", 7)(np.logical_and)
_simple("Or", 7)(np.logical_or)
_simple("Xor", 7)(np.logical_xor)
_simple("Not", 1)(np.logical_not)
_simple("BitwiseAnd", 18)(np.bitwise_and)
_simple("BitwiseOr", 18)(np.bitwise_or)
_simple("BitwiseXor", 18)(np.bitwise_xor)
_simple("BitwiseNot", 18)(np.invert)
_simple("IsNaN", 9, 13, 20)(np.isnan)


@_simple("Where", 9, 16)
def _where(cond: Array, a: Array, b: Array) -> Array:
    return np.where(cond, a, b)


@register("IsInf", 10, 20)
def _isinf(node: Node) -> Kernel:
    pos, neg = int(node.attr("detect_positive", 1)), int(node.attr("detect_negative", 1))

    def kernel(x: Array) -> Array:
        if pos and neg:
            return np.isinf(x)
        if pos:
            return np.isposinf(x)
        if neg:
            return np.isneginf(x)
        return np.zeros(x.shape, dtype=bool)

    return kernel


# -- unary math ---------------------------------------------------------------------------
_simple("Abs", 6, 13)(np.abs)
_simple("Neg", 6, 13)(np.negative)
_simple("Exp", 6, 13)(np.exp)
_simple("Log", 6, 13)(np.log)
_simple("Sqrt", 6, 13)(np.sqrt)
_simple("Floor", 6, 13)(np.floor)
_simple("Ceil", 6, 13)(np.ceil)
_simple("Round", 11, 22)(np.round)  # numpy rounds half to even, as ONNX requires
_simple("Sign", 9, 13)(np.sign)
_simple("Tanh", 6, 13)(np.tanh)
_TRIG: dict[str, tuple[Any, tuple[int, ...]]] = {
    "Sin": (np.sin, (7, 22)), "Cos": (np.cos, (7, 22)), "Tan": (np.tan, (7, 22)),
    "Asin": (np.arcsin, (7, 22)), "Acos": (np.arccos, (7, 22)), "Atan": (np.arctan, (7, 22)),
    "Sinh": (np.sinh, (9, 22)), "Cosh": (np.cosh, (9, 22)), "Asinh": (np.arcsinh, (9, 22)),
    "Acosh": (np.arccosh, (9, 22)), "Atanh": (np.arctanh, (9, 22)),
}
for _name, (_fn, _versions) in _TRIG.items():
    _simple(_name, *_versions)(_fn)


@_simple("Reciprocal", 6, 13)
def _reciprocal(x: Array) -> Array:
    return np.reciprocal(x)


@register("Identity", 1, 13, 14, 16, 19, 21, 23, 24, 25)
def _identity(node: Node) -> Kernel:
    return lambda x: x


# -- activations ----------------------------------------------------------------------------
_simple("Relu", 6, 13, 14)(lambda x: np.maximum(x, x.dtype.type(0)))


@_simple("Sigmoid", 6, 13)
def _sigmoid(x: Array) -> Array:
    # stable for large |x|: exp of a non-positive number only
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


@register("HardSigmoid", 6, 22)
def _hard_sigmoid(node: Node) -> Kernel:
    alpha, beta = float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))

    def kernel(x: Array) -> Array:
        y = x * alpha
        y += beta
        return np.clip(y, 0, 1, out=y)

    return kernel


@_simple("HardSwish", 14, 22)
def _hard_swish(x: Array) -> Array:
    y = x * (1 / 6)
    y += 0.5
    np.clip(y, 0, 1, out=y)
    return np.multiply(x, y, out=y)


@register("HardSwish", 1, domain="deploykit")
def _fused_hard_swish(node: Node) -> Kernel:
    """x * clip(x + 3, 0, 6) / 6, in that order of operations (bit-identical to the unfused
    Add/Clip/Mul/Div chain), in one buffer."""

    def kernel(x: Array) -> Array:
        y = x + x.dtype.type(3)
        np.clip(y, x.dtype.type(0), x.dtype.type(6), out=y)
        np.multiply(x, y, out=y)
        return np.divide(y, x.dtype.type(6), out=y)

    return kernel


@register("LeakyRelu", 6, 16)
def _leaky_relu(node: Node) -> Kernel:
    alpha = float(node.attr("alpha", 0.01))
    return lambda x: np.where(x >= 0, x, x * alpha).astype(x.dtype, copy=False)


@register("Elu", 6, 22)
def _elu(node: Node) -> Kernel:
    alpha = float(node.attr("alpha", 1.0))
    return lambda x: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype)


@register("Selu", 6, 22)
def _selu(node: Node) -> Kernel:
    alpha = float(node.attr("alpha", 1.67326319217681884765625))
    gamma = float(node.attr("gamma", 1.05070102214813232421875))
    return lambda x: (gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))).astype(x.dtype)


@register("Celu", 12)
def _celu(node: Node) -> Kernel:
    alpha = float(node.attr("alpha", 1.0))
    return lambda x: (np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(x / alpha))).astype(x.dtype)


@register("ThresholdedRelu", 10, 22)
def _thresholded_relu(node: Node) -> Kernel:
    alpha = float(node.attr("alpha", 1.0))
    return lambda x: np.where(x > alpha, x, x.dtype.type(0))


@_simple("Softplus", 1, 22)
def _softplus(x: Array) -> Array:
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype, copy=False)


@_simple("Softsign", 1, 22)
def _softsign(x: Array) -> Array:
    return x / (1 + np.abs(x))


@_simple("Mish", 18, 22)
def _mish(x: Array) -> Array:
    return (x * np.tanh(_softplus(x))).astype(x.dtype, copy=False)


@_simple("PRelu", 9, 16)
def _prelu(x: Array, slope: Array) -> Array:
    return np.where(x >= 0, x, x * slope).astype(x.dtype, copy=False)


@register("Clip", 6, 11, 12, 13)
def _clip(node: Node) -> Kernel:
    if node.since == 6:
        lo, hi = float(node.attr("min", -3.4028234663852886e38)), float(
            node.attr("max", 3.4028234663852886e38))

        def kernel6(x: Array) -> Array:
            return np.clip(x, lo, hi).astype(x.dtype, copy=False)

        return kernel6

    def kernel(x: Array, lo: Array | None = None, hi: Array | None = None) -> Array:
        if lo is None and hi is None:
            return x.copy()
        lo_ = None if lo is None else lo.astype(x.dtype, copy=False)
        hi_ = None if hi is None else hi.astype(x.dtype, copy=False)
        if lo_ is not None and hi_ is not None and lo_ > hi_:
            return np.full_like(x, hi_)  # spec: min > max sets every value to max
        return np.clip(x, lo_, hi_)  # one pass

    return kernel
