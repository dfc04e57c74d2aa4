"""Image -> tensor in one pass: letterbox, plain resize, shorter-side resize + centre crop; and
``OPS``, the table of ops that the functions, ``batch`` and ``Pipeline`` all read.

A thin layer over the C core (``_core.resample``): it validates and sizes, the core does every
pixel with the GIL released. ``mode="cv2"`` is bit-exact with cv2.resize(INTER_LINEAR) followed
by OpenCV's blob arithmetic; ``mode="pil"`` follows Pillow's antialiased BILINEAR (within one
grey level). Float outputs are ``float32(v) * float32(scale)``, then ``(x - mean) / std`` in
float32 when mean/std are given.

Each op is a planner (image height and width + its settings -> the core's call, every setting
checked, and what the function returns beside the tensor) and a public function that runs it
through ``apply``. Adding an op: its planner and function here, one ``Op`` line in ``OPS``, its
name in ``__init__``; ``batch`` and ``Pipeline`` take it from the table (a setting ``Pipeline``
does not have yet becomes a field of it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import PreprocessError
from . import checks, resample
from .resample import CoreCall

Size = int | tuple[int, int]


@dataclass(frozen=True)
class LetterboxTransform:
    """How a letterboxed tensor maps back to the original image."""

    scale_y: float  # resized height / original height
    scale_x: float
    pad_top: int
    pad_left: int

    def to_original(self, boxes: Any) -> np.ndarray:
        """(..., 4) x1, y1, x2, y2 boxes in tensor pixels -> original image pixels."""
        try:
            b = np.array(boxes, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise PreprocessError(f"boxes: expected (..., 4) numbers x1, y1, x2, y2, got "
                                  f"{type(boxes).__name__} ({e})") from e
        if b.ndim == 0 or b.shape[-1] != 4:
            raise PreprocessError(f"boxes: expected (..., 4) numbers x1, y1, x2, y2, got shape {b.shape}")
        b[..., [0, 2]] = (b[..., [0, 2]] - self.pad_left) / self.scale_x
        b[..., [1, 3]] = (b[..., [1, 3]] - self.pad_top) / self.scale_y
        return b

    def __repr__(self) -> str:
        return (f"LetterboxTransform(scale_y={self.scale_y:.4g}, scale_x={self.scale_x:.4g}, "
                f"pad_top={self.pad_top}, pad_left={self.pad_left})")

    def _repr_html_(self) -> str:
        return (f"<div><b>LetterboxTransform</b> — scale {self.scale_y:.4g} (y) x {self.scale_x:.4g} (x), "
                f"padding {self.pad_top} px on top, {self.pad_left} px on the left; "
                f"<code>to_original(boxes)</code> maps tensor boxes back</div>")


# -- the planners: image (height, width) + settings -> the core's call ------------------------

def _plan_letterbox(hw: tuple[int, int], size: Size, *, pad_value: int = 114, swap_rb: bool = True,
                    scale: float = 1 / 255, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None, dtype: str = "float32", layout: str = "NCHW",
                    mode: str = "cv2") -> tuple[CoreCall, LetterboxTransform]:
    th, tw = checks.size(size, "size")
    pad = checks.level(pad_value, "pad_value")
    s = resample.settings(swap_rb, scale, mean, std, dtype, layout, mode)
    h, w = hw
    r = min(th / h, tw / w)
    nh, nw = min(th, max(1, round(h * r))), min(tw, max(1, round(w * r)))
    top, left = (th - nh) // 2, (tw - nw) // 2
    call = resample.plan(s, (th, tw), (nh, nw), (0, 0, nh, nw), (top, left), pad=pad)
    return call, LetterboxTransform(nh / h, nw / w, top, left)


def _plan_resize(hw: tuple[int, int], size: Size, *, swap_rb: bool = True, scale: float = 1 / 255,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 dtype: str = "float32", layout: str = "NCHW", mode: str = "cv2") -> tuple[CoreCall, None]:
    th, tw = checks.size(size, "size")
    s = resample.settings(swap_rb, scale, mean, std, dtype, layout, mode)
    return resample.plan(s, (th, tw), (th, tw), (0, 0, th, tw), (0, 0)), None


def _plan_resize_crop(hw: tuple[int, int], resize: int, crop: Size, *, mean: Sequence[float] | None = None,
                      std: Sequence[float] | None = None, scale: float = 1 / 255, swap_rb: bool = True,
                      dtype: str = "float32", layout: str = "NCHW", mode: str = "pil"
                      ) -> tuple[CoreCall, None]:
    short = checks.side(resize, "resize")
    ch, cw = checks.size(crop, "crop")
    s = resample.settings(swap_rb, scale, mean, std, dtype, layout, mode)
    h, w = hw
    if h <= w:
        rh, rw = short, int(short * w / h)
    else:
        rh, rw = int(short * h / w), short
    if ch > rh or cw > rw:
        raise PreprocessError(f"crop {ch}x{cw} is larger than the resized image {rh}x{rw}")
    top, left = round((rh - ch) / 2.0), round((rw - cw) / 2.0)
    return resample.plan(s, (ch, cw), (rh, rw), (top, left, ch, cw), (0, 0), sized_by="crop"), None


def apply(op: str, image: Any, out: Any = None, **settings: Any) -> tuple[np.ndarray, Any]:
    """Op ``op`` of the table on one image: the tensor, and what the op returns beside it (the
    letterbox transform; None for the others)."""
    img = checks.image(image)
    call, extra = OPS[op].plan(img.shape[:2], **settings)
    result = resample.output(out, call)
    resample.run(img, result, call)
    return result, extra


# -- the public functions ----------------------------------------------------------------------

def letterbox(image: Any, size: Size, *, pad_value: int = 114, swap_rb: bool = True,
              scale: float = 1 / 255, mean: Sequence[float] | None = None,
              std: Sequence[float] | None = None, dtype: str = "float32", layout: str = "NCHW",
              mode: str = "cv2", out: np.ndarray | None = None
              ) -> tuple[np.ndarray, LetterboxTransform]:
    """Aspect-preserving resize into ``size`` with constant padding, as one (1, 3, H, W) tensor
    (NCHW) or (1, H, W, 3) (NHWC); the transform maps boxes back to the image."""
    return apply("letterbox", image, out, size=size, pad_value=pad_value, swap_rb=swap_rb, scale=scale,
                 mean=mean, std=std, dtype=dtype, layout=layout, mode=mode)


def resize(image: Any, size: Size, *, swap_rb: bool = True, scale: float = 1 / 255,
           mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
           dtype: str = "float32", layout: str = "NCHW", mode: str = "cv2",
           out: np.ndarray | None = None) -> np.ndarray:
    """Resize to exactly ``size`` (aspect ratio not kept: ``cv2.resize(img, (w, h))``), as one
    (1, 3, H, W) tensor (NCHW) or (1, H, W, 3) (NHWC)."""
    return apply("resize", image, out, size=size, swap_rb=swap_rb, scale=scale, mean=mean, std=std,
                 dtype=dtype, layout=layout, mode=mode)[0]


def resize_crop(image: Any, resize: int, crop: Size, *, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, scale: float = 1 / 255, swap_rb: bool = True,
                dtype: str = "float32", layout: str = "NCHW", mode: str = "pil",
                out: np.ndarray | None = None) -> np.ndarray:
    """Resize the shorter side to ``resize`` (torchvision's rule), then take the centre ``crop``
    — computing only the pixels inside the crop."""
    return apply("resize_crop", image, out, resize=resize, crop=crop, mean=mean, std=std, scale=scale,
                 swap_rb=swap_rb, dtype=dtype, layout=layout, mode=mode)[0]


# -- the table ---------------------------------------------------------------------------------

#: The settings every op takes (checked by ``resample.settings``).
COMMON_SETTINGS: tuple[str, ...] = resample.Settings._fields


@dataclass(frozen=True)
class Op:
    """One preprocessing op, as the functions, ``batch`` and ``Pipeline`` see it."""

    name: str
    function: Callable[..., Any]  # the public function
    plan: Callable[..., tuple[CoreCall, Any]]  # (image h, w) + settings -> the core's call, extra
    params: Mapping[str, Callable[[Any, str], Any]]  # its own settings -> their check
    required: tuple[str, ...]  # the params without a default
    mode: str  # the default mode
    description: str

    @property
    def settings(self) -> tuple[str, ...]:
        """Every keyword it takes besides the image and ``out``."""
        return (*self.params, *COMMON_SETTINGS)


OPS: dict[str, Op] = {op.name: op for op in (
    Op("letterbox", letterbox, _plan_letterbox, {"size": checks.size, "pad_value": checks.level},
       ("size",), "cv2", "aspect-preserving resize into size, padded with pad_value (YOLO-style)"),
    Op("resize", resize, _plan_resize, {"size": checks.size}, ("size",), "cv2",
       "resize to exactly size, aspect ratio not kept"),
    Op("resize_crop", resize_crop, _plan_resize_crop, {"resize": checks.side, "crop": checks.size},
       ("resize", "crop"), "pil", "shorter side to resize, then the centre crop (torchvision's rule)"),
)}
_BY_FUNCTION = {op.function: op for op in OPS.values()}


def find(op: Any, name: str = "op") -> Op | None:
    """The table's entry for ``op`` (its name or its function); None for a user's function."""
    if isinstance(op, str):
        if op not in OPS:
            raise PreprocessError(f"{name} must be one of {', '.join(map(repr, OPS))} or a function, "
                                  f"got {op!r}")
        return OPS[op]
    try:
        entry = _BY_FUNCTION.get(op)
    except TypeError:  # unhashable
        entry = None
    if entry is None and not callable(op):
        raise PreprocessError(f"{name} must be one of {', '.join(map(repr, OPS))} or a function, got "
                              f"{type(op).__name__}")
    return entry
