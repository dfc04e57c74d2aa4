"""QuantizeLinear and DequantizeLinear at opsets 10 and 13: what ONNX Runtime's quantizer writes (QDQ
models). onnx.reference implements them only from opset 19, so without these the numpy backend could
not be the oracle for a quantized model.

Opset 10: per-tensor scale and zero point. Opset 13 adds ``axis`` (default 1): a 1-D scale (and zero
point) applies along that axis. Quantize rounds half to even and saturates to the zero point's type
(uint8 when there is none); dequantize gives the scale's dtype.
"""

from __future__ import annotations

import numpy as np

from ..kernels import Kernel, Node, register

Array = np.ndarray


def _along(param: Array, x: Array, axis: int) -> Array:
    """A per-axis parameter reshaped to broadcast along ``axis`` of ``x`` (a scalar as it is)."""
    if param.ndim == 0 or (param.size == 1 and x.ndim == 0):
        return param.reshape(())
    if param.ndim != 1:
        raise ValueError(f"a quantization parameter must be a scalar or 1-D, got shape {param.shape}")
    axis = axis % x.ndim if x.ndim else 0
    if param.size == 1:
        return param.reshape(())
    if x.shape[axis] != param.size:
        raise ValueError(f"per-axis parameter of {param.size} values for axis {axis} of shape {x.shape}")
    shape = [1] * x.ndim
    shape[axis] = param.size
    return param.reshape(shape)


@register("DequantizeLinear", 10, 13)
def _dequantize(node: Node) -> Kernel:
    axis = int(node.attr("axis", 1))

    def kernel(x: Array, scale: Array, zero_point: Array | None = None) -> Array:
        s = _along(np.asarray(scale), x, axis)
        wide = x.astype(np.int64) if x.dtype.kind in "iu" else x.astype(np.float64)
        if zero_point is not None and np.asarray(zero_point).size:
            wide = wide - _along(np.asarray(zero_point), x, axis).astype(wide.dtype)
        return (wide.astype(s.dtype) * s).astype(s.dtype, copy=False)

    return kernel


@register("QuantizeLinear", 10, 13)
def _quantize(node: Node) -> Kernel:
    axis = int(node.attr("axis", 1))

    def kernel(x: Array, scale: Array, zero_point: Array | None = None) -> Array:
        target = np.dtype(np.uint8) if zero_point is None else np.asarray(zero_point).dtype
        s = _along(np.asarray(scale), x, axis).astype(np.float32)
        q = np.rint(x.astype(np.float32) / s)  # round half to even, as the spec says
        if zero_point is not None and np.asarray(zero_point).size:
            q = q + _along(np.asarray(zero_point), x, axis).astype(np.float32)
        info = np.iinfo(target)
        return np.clip(q, info.min, info.max).astype(target)

    return kernel
