"""The C preprocessing core (``_core``), loaded in one place: its resample entry point for the ops,
and whether it loaded and which SIMD path it took for the hardware probe."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ..errors import PreprocessError


class CoreStatus(NamedTuple):
    """Whether the C core loaded, the SIMD path it dispatched to, or why it did not load."""

    loaded: bool
    simd: str | None
    error: str | None = None


def status() -> CoreStatus:
    """The core's state, importing it if need be (never raises)."""
    try:
        from ._core import SIMD
    except ImportError as e:
        return CoreStatus(False, None, str(e))
    return CoreStatus(True, str(SIMD))


def resample_entry() -> Callable[..., None]:
    """The core's ``resample``; ``PreprocessError`` when the core is not built."""
    try:
        from ._core import resample
    except ImportError as e:  # pragma: no cover - the build always compiles it
        raise PreprocessError(f"the C preprocessing core is not built ({e}); reinstall deploykit "
                              "from source with a C compiler") from e
    return resample


__all__ = ["CoreStatus", "resample_entry", "status"]
