"""The C core's resample entry seen from Python: the settings every op shares, one image's call
(what an op plans), the output tensor it writes into, and the call itself (GIL released)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..errors import PreprocessError
from . import checks, native

DTYPES: dict[str, type[np.generic]] = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}
LAYOUTS = ("NCHW", "NHWC")
MODES = ("cv2", "pil")


class Settings(NamedTuple):
    """The settings every op takes besides its geometry, checked."""

    swap_rb: bool
    scale: float
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    dtype: str
    layout: str
    mode: str


def settings(swap_rb: Any, scale: Any, mean: Any, std: Any, dtype: Any, layout: Any, mode: Any
             ) -> Settings:
    """Each setting checked, and mean/std against dtype."""
    m, s = checks.triple(mean, "mean"), checks.triple(std, "std")
    dtype = checks.choice(dtype, "dtype", DTYPES)
    if (m or s) and dtype == "uint8":
        raise PreprocessError("mean/std need a float dtype ('float32' or 'float16')")
    if s is not None and 0.0 in s:
        raise PreprocessError("std: must not contain 0")
    return Settings(checks.flag(swap_rb, "swap_rb"), checks.number(scale, "scale"), m, s, dtype,
                    checks.choice(layout, "layout", LAYOUTS), checks.choice(mode, "mode", MODES))


class CoreCall(NamedTuple):
    """One image's work for the core: the output's shape and dtype, and resample's arguments
    (computed once per plan, so that running it costs one call)."""

    shape: tuple[int, int, int, int]
    dtype: np.dtype
    settings: Settings
    sized_by: str  # the argument that sets the output's size (named if it is too large)
    args: tuple[Any, ...]  # resized, window, offset, mode, layout
    kwargs: dict[str, Any]  # swap_rb, pad, scale, mean, std

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.shape[2], self.shape[3]) if self.settings.layout == "NCHW" else self.shape[1:3]


def plan(s: Settings, out_hw: tuple[int, int], resized: tuple[int, int],
         window: tuple[int, int, int, int], offset: tuple[int, int], *, pad: int = 0,
         sized_by: str = "size") -> CoreCall:
    """The call that writes ``window`` of the image resized to ``resized`` at ``offset`` of an
    ``out_hw`` output (3 channels), padding the rest with ``pad``."""
    h, w = out_hw
    shape = (1, 3, h, w) if s.layout == "NCHW" else (1, h, w, 3)
    scale = s.scale if s.dtype != "uint8" else 1.0  # uint8 outputs are the resampled pixels
    return CoreCall(shape, np.dtype(DTYPES[s.dtype]), s, sized_by,
                    (resized, window, offset, s.mode, s.layout),
                    {"swap_rb": s.swap_rb, "pad": pad, "scale": scale, "mean": s.mean, "std": s.std})


def check_allocation(call: CoreCall) -> None:
    """Refuse the call's tensor, before allocating it, when it is over the byte limit."""
    h, w = call.out_hw
    checks.allocation(call.shape, call.dtype, call.sized_by, f"{h}x{w}")


def output(out: Any, call: CoreCall) -> np.ndarray:
    """``out`` checked against the planned shape and dtype, or a new array (within the byte limit)."""
    want = call.dtype
    if out is None:
        check_allocation(call)
        return np.empty(call.shape, want)
    if not isinstance(out, np.ndarray) or out.shape != call.shape or out.dtype != want:
        got = (getattr(out, "shape", None), getattr(out, "dtype", type(out).__name__))
        raise PreprocessError(f"out: expected a {want} array of shape {call.shape}, got {got}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise PreprocessError("out: must be C-contiguous and writable")
    return out


_resample: Callable[..., None] | None = None


def _core_resample() -> Callable[..., None]:
    """The C core's entry point, imported once."""
    global _resample
    if _resample is None:
        _resample = native.resample_entry()
    return _resample


def run(img: np.ndarray, out: np.ndarray, c: CoreCall) -> None:
    """The core on one checked image into ``out`` (a (1, ...) tensor or one 3-D slot of a batch)."""
    try:
        (_resample or _core_resample())(img, out[0] if out.ndim == 4 else out, *c.args, **c.kwargs)
    except ValueError as e:
        raise PreprocessError(str(e)) from e
