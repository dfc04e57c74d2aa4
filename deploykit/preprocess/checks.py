"""The argument checks of the preprocessing functions, one per kind of value: each returns the
value in the form the core takes, or raises ``PreprocessError`` naming the argument, what came and
what is accepted (never numpy's or Python's own TypeError / ValueError)."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from typing import Any

import numpy as np

from ..arguments import check_threads
from ..errors import InvalidArgument, PreprocessError

#: The longest image or output side the core takes (absurd sizes are refused before anything runs).
MAX_SIDE = 1 << 20
#: The largest tensor the preprocessing functions allocate, in bytes (1 GiB). A larger one can still
#: be written: allocate it yourself and pass it as ``out=``.
MAX_OUTPUT_BYTES = 1 << 30


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def image(value: Any, name: str = "image") -> np.ndarray:
    """A uint8 (H, W) or (H, W, C) image with C in 1/3/4, as an array the core reads forward."""
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as e:  # e.g. ragged nested lists
        raise PreprocessError(f"{name}: expected a uint8 (H, W[, C]) array, got "
                              f"{type(value).__name__} ({e})") from e
    if a.dtype != np.uint8:
        raise PreprocessError(f"{name}: expected uint8 pixels, got {a.dtype}")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise PreprocessError(f"{name}: expected (H, W) or (H, W, C) with C in 1/3/4, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise PreprocessError(f"{name}: empty ({a.shape})")
    if max(a.shape[:2]) > MAX_SIDE:
        raise PreprocessError(f"{name}: {a.shape[:2]} is over the {MAX_SIDE}-pixel side limit")
    if min(a.strides) < 0:  # e.g. a flipped view: the core reads forward only
        a = np.ascontiguousarray(a)
    return a


def size(value: Any, name: str) -> tuple[int, int]:
    """An int (a square) or (height, width), each side in 1..MAX_SIDE."""
    if type(value) is int and 0 < value <= MAX_SIDE:  # the common case, first
        return value, value
    if _is_int(value):
        pair: tuple[Any, ...] = (value, value)
    elif isinstance(value, (tuple, list)) or (isinstance(value, np.ndarray) and value.ndim == 1):
        pair = tuple(value)
    else:
        pair = ()
    if len(pair) != 2 or not all(_is_int(v) for v in pair):
        raise PreprocessError(f"{name}: expected an int or (height, width) ints, got {value!r}")
    h, w = int(pair[0]), int(pair[1])
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise PreprocessError(f"{name}: {h}x{w} is outside 1..{MAX_SIDE}")
    return h, w


def side(value: Any, name: str) -> int:
    """One positive side length, at most MAX_SIDE."""
    if type(value) is int and 0 < value <= MAX_SIDE:
        return value
    if not _is_int(value) or not 0 < value <= MAX_SIDE:
        raise PreprocessError(f"{name}: expected a positive int (at most {MAX_SIDE}), got {value!r}")
    return int(value)


def level(value: Any, name: str) -> int:
    """A uint8 pixel value, 0..255."""
    if type(value) is int and 0 <= value <= 255:
        return value
    if not _is_int(value) or not 0 <= value <= 255:
        raise PreprocessError(f"{name} must be an int in 0..255, got {value!r}")
    return int(value)


def flag(value: Any, name: str) -> bool:
    """True or False (numpy's bool included)."""
    if value is True or value is False:
        return value
    if not isinstance(value, (bool, np.bool_)):
        raise PreprocessError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def number(value: Any, name: str) -> float:
    """A finite real number."""
    if type(value) is float and math.isfinite(value):
        return value
    if not _is_real(value) or not math.isfinite(value):
        raise PreprocessError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def triple(value: Any, name: str) -> tuple[float, float, float] | None:
    """None, or three finite numbers (one per output channel)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise PreprocessError(f"{name}: expected 3 numbers (one per channel) or None, got {value!r}")
    items = list(value)
    if len(items) != 3:
        raise PreprocessError(f"{name}: expected 3 values, got {len(items)}")
    t = [number(x, name) for x in items]
    return t[0], t[1], t[2]


def choice(value: Any, name: str, choices: Collection[str]) -> str:
    """One of ``choices`` (strings)."""
    if not isinstance(value, str) or value not in choices:
        raise PreprocessError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def threads(value: Any) -> int | None:
    """None (the CPUs this process may use) or an int >= 1, bounded as everywhere in deploykit
    (``arguments.check_threads``), refused as a ``PreprocessError``."""
    try:
        return check_threads(value)
    except InvalidArgument as e:
        if isinstance(e, PreprocessError):
            raise
        raise PreprocessError(str(e)) from e


def _human(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


def allocation(shape: tuple[int, ...], dtype: np.dtype, name: str, what: str) -> None:
    """Refuse, before allocating, a tensor over ``MAX_OUTPUT_BYTES``; ``name`` is the argument that
    made it this large and ``what`` says how."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_OUTPUT_BYTES:
        raise PreprocessError(
            f"{name}: {what} gives a {shape} {dtype} tensor of {nbytes:,} bytes ({_human(nbytes)}), "
            f"over the {_human(MAX_OUTPUT_BYTES)} that preprocessing allocates; ask for less, or "
            "allocate the tensor yourself and pass it as out=")
