"""Normalization: BatchNormalization (inference *and* training semantics, per the spec),
InstanceNormalization, LayerNormalization."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import Kernel, Node, register


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (ndim - 2)) if ndim > 2 else v.reshape(1, -1)


@register("BatchNormalization", 1, 6, 7, 9, 14, 15)
def batch_norm(node: Node) -> Kernel:
    eps = float(node.attr("epsilon", 1e-5))
    momentum = float(node.attr("momentum", 0.9))
    training = bool(node.attr("training_mode", 0)) if node.since >= 14 else node.n_outputs > 1
    if node.since < 7 and not int(node.attr("spatial", 1)):
        raise NotImplementedError("BatchNormalization with spatial=0")
    consts = node.consts
    folded: tuple[np.ndarray, np.ndarray] | None = None
    if not training and all(c is not None for c in consts[1:5]):
        scale, bias, mean, var = (np.asarray(c) for c in consts[1:5])
        k = scale / np.sqrt(var + np.asarray(eps, var.dtype))
        folded = (k, bias - mean * k)

    def infer(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray,
              var: np.ndarray) -> np.ndarray:
        if folded is not None:
            k, b = folded
        else:
            k = scale / np.sqrt(var + np.asarray(eps, var.dtype))
            b = bias - mean * k
        return (x * _per_channel(k, x.ndim) + _per_channel(b, x.ndim)).astype(x.dtype, copy=False)

    def train(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray,
              var: np.ndarray) -> tuple[Any, ...]:
        axes = (0, *range(2, x.ndim))
        batch_mean = x.mean(axis=axes)
        batch_var = x.var(axis=axes)
        k = scale / np.sqrt(batch_var + np.asarray(eps, x.dtype))
        y = (x - _per_channel(batch_mean, x.ndim)) * _per_channel(k, x.ndim) \
            + _per_channel(bias, x.ndim)
        running_mean = mean * momentum + batch_mean * (1 - momentum)
        running_var = var * momentum + batch_var * (1 - momentum)
        outs = (y.astype(x.dtype), running_mean.astype(mean.dtype), running_var.astype(var.dtype))
        return outs[: node.n_outputs]

    return train if training else infer


@register("InstanceNormalization", 1, 6, 22)
def instance_norm(node: Node) -> Kernel:
    eps = float(node.attr("epsilon", 1e-5))

    def kernel(x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
        axes = tuple(range(2, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        y = (x - mean) / np.sqrt(var + eps) * _per_channel(scale, x.ndim) \
            + _per_channel(bias, x.ndim)
        return y.astype(x.dtype)

    return kernel


@register("LayerNormalization", 17)
def layer_norm(node: Node) -> Kernel:
    axis = int(node.attr("axis", -1))
    eps = float(node.attr("epsilon", 1e-5))
    stash = int(node.attr("stash_type", 1))

    def kernel(x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None = None) -> Any:
        a = axis if axis >= 0 else axis + x.ndim
        axes = tuple(range(a, x.ndim))
        xc = x.astype(np.float32) if stash == 1 and x.dtype != np.float64 else x
        mean = xc.mean(axis=axes, keepdims=True)
        var = ((xc - mean) ** 2).mean(axis=axes, keepdims=True)
        inv = 1.0 / np.sqrt(var + eps)
        y = (xc - mean) * inv * scale
        if bias is not None:
            y = y + bias
        outs = (y.astype(x.dtype), mean.astype(xc.dtype), inv.astype(xc.dtype))
        return outs[: node.n_outputs] if node.n_outputs > 1 else outs[0]

    return kernel
