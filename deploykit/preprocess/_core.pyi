"""Type stubs of the C preprocessing core (deploykit/preprocess/_core.c: the binding; core.h: the layout)."""

from typing import Any

SIMD: str  # the instruction-set target chosen at import: "avx2" or "generic"

def resample(
    src: Any,
    out: Any,
    resized: tuple[int, int],
    window: tuple[int, int, int, int],
    offset: tuple[int, int],
    mode: str,
    layout: str,
    swap_rb: bool = ...,
    pad: int = ...,
    scale: float = ...,
    mean: tuple[float, float, float] | None = ...,
    std: tuple[float, float, float] | None = ...,
) -> None: ...
