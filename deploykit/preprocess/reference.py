"""Pure-NumPy twins of the two resampling conventions the preprocessing core reproduces.

- ``resize_cv2``: bit-exact with ``cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)`` on
  uint8 images (OpenCV's 11-bit fixed-point weights and its vectorised rounding: each of the two
  vertical products is truncated after a 4-bit pre-shift, then rounded by 2 bits).
- ``resize_pil``: Pillow's ``Image.resize(..., BILINEAR)`` — a triangle filter widened by the
  downscale factor (antialiasing), 22-bit fixed-point weights, horizontal pass then vertical
  pass, each rounded to uint8. Within 1 grey level of Pillow (Pillow 13 sometimes runs the
  vertical pass first, which moves a rounding).

Slow on purpose (clear over fast): they are the test oracle, not the implementation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import PreprocessError
from . import checks

_CV_BITS = 11  # INTER_RESIZE_COEF_BITS
_PIL_BITS = 22  # Pillow's PRECISION_BITS for 8-bit images


def _cv2_taps(src: int, dst: int, clamp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(index0, index1, weight0, weight1) per output position, as cv::resize computes them.

    Positions are computed in float32 from the double ratio; columns clamp the *weights* at the
    borders (fx = 0), rows keep the weights and clamp the *row indices* — the two differ in how
    the vectorised vertical pass rounds, and cv2 does exactly this.
    """
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    f = (f - i0.astype(np.float32)).astype(np.float32)
    if clamp:
        left = i0 < 0
        f, i0 = np.where(left, np.float32(0), f), np.where(left, 0, i0)
        right = i0 >= src - 1
        f, i0 = np.where(right, np.float32(0), f), np.where(right, src - 1, i0)
    one = np.float32(1 << _CV_BITS)
    w0 = np.round((np.float32(1) - f) * one).astype(np.int64)
    w1 = np.round(f * one).astype(np.int64)
    return np.clip(i0, 0, src - 1), np.clip(i0 + 1, 0, src - 1), w0, w1


def _arguments(image: Any, height: Any, width: Any) -> tuple[np.ndarray, int, int]:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) \
            or 0 in image.shape[:2]:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise PreprocessError(f"image: expected a uint8 (H, W[, C]) array, not empty, got {got}")
    return image, checks.side(height, "height"), checks.side(width, "width")


def resize_cv2(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a uint8 (H, W) or (H, W, C) image, bit-exact with cv2 INTER_LINEAR."""
    image, height, width = _arguments(image, height, width)
    h, w = image.shape[:2]
    x0, x1, a0, a1 = _cv2_taps(w, width, clamp=True)
    y0, y1, b0, b1 = _cv2_taps(h, height, clamp=False)
    img = image.astype(np.int64)
    cols = (1, -1) + (1,) * (img.ndim - 2)  # broadcast the column weights over rows and channels
    rows = img[:, x0] * a0.reshape(cols) + img[:, x1] * a1.reshape(cols)
    shape = (-1,) + (1,) * (rows.ndim - 1)
    v = (((rows[y0] >> 4) * b0.reshape(shape)) >> 16) + (((rows[y1] >> 4) * b1.reshape(shape)) >> 16)
    return np.clip((v + 2) >> 2, 0, 255).astype(np.uint8)


def _pil_taps(src: int, dst: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Per output position: (first source index, count) and the fixed-point weights."""
    scale = src / dst
    filterscale = max(scale, 1.0)
    support = filterscale  # bilinear support 1.0, widened when downscaling
    ksize = int(np.ceil(support)) * 2 + 1
    bounds, weights = [], np.zeros((dst, ksize), np.int64)
    for o in range(dst):
        center = (o + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        n = min(int(center + support + 0.5), src) - lo
        t = (np.arange(n) + lo - center + 0.5) / filterscale
        k = np.where(np.abs(t) < 1.0, 1.0 - np.abs(t), 0.0)
        if k.sum() != 0.0:
            k = k / k.sum()
        weights[o, :n] = np.trunc(0.5 + k * (1 << _PIL_BITS)).astype(np.int64)
        bounds.append((lo, n))
    return bounds, weights


def _pil_pass(image: np.ndarray, size: int, axis: int) -> np.ndarray:
    src = np.moveaxis(image.astype(np.int64), axis, 0)
    bounds, weights = _pil_taps(src.shape[0], size)
    out = np.empty((size, *src.shape[1:]), np.int64)
    for o, (lo, n) in enumerate(bounds):
        acc = np.full(src.shape[1:], 1 << (_PIL_BITS - 1), np.int64)
        for j in range(n):
            acc += src[lo + j] * weights[o, j]
        out[o] = np.clip(acc >> _PIL_BITS, 0, 255)
    return np.moveaxis(out, 0, axis).astype(np.uint8)


def resize_pil(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pillow-style antialiased bilinear resize of a uint8 (H, W[, C]) image."""
    image, height, width = _arguments(image, height, width)
    out = image
    if width != image.shape[1]:
        out = _pil_pass(out, width, 1)
    if height != image.shape[0]:
        out = _pil_pass(out, height, 0)
    return out
