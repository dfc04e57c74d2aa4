"""Fuzzing the C entry point: any geometry, any parameters — a result or a ValueError, never a
crash or an out-of-bounds access (run under ASan/UBSan by `make sanitize`)."""

from __future__ import annotations

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis (dev extra) drives the fuzzing")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from deploykit.preprocess import _core  # noqa: E402

EXAMPLES = int(os.environ.get("DEPLOYKIT_FUZZ_EXAMPLES", "300"))
# mostly small values, sometimes extreme ones (overflow of window arithmetic, absurd sizes)
small = st.one_of(st.integers(min_value=-3, max_value=40),
                  st.sampled_from([-2**31, -2**20 - 1, 2**20, 2**20 + 1, 2**31 - 1]))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(h=st.integers(0, 24), w=st.integers(0, 24), c=st.sampled_from([1, 2, 3, 4, 5]),
       oc=st.sampled_from([1, 2, 3]), oh=st.integers(0, 30), ow=st.integers(0, 30),
       rh=small, rw=small, wy=small, wx=small, wh=small, ww=small, top=small, left=small,
       mode=st.sampled_from(["cv2", "pil", "x"]), layout=st.sampled_from(["NCHW", "NHWC", "?"]),
       dtype=st.sampled_from([np.float32, np.float16, np.uint8, np.float64]), pad=st.integers(-5, 300),
       normalize=st.booleans(), swap=st.booleans(), transposed=st.booleans())
def test_resample_never_crashes(h: int, w: int, c: int, oc: int, oh: int, ow: int, rh: int,
                                rw: int, wy: int, wx: int, wh: int, ww: int, top: int, left: int,
                                mode: str, layout: str, dtype: type, pad: int, normalize: bool,
                                swap: bool, transposed: bool) -> None:
    src = np.arange(h * w * c, dtype=np.uint8).reshape(h, w, c)
    if transposed:
        src = src.transpose(1, 0, 2)  # strided, non-contiguous source
    shape = (oc, oh, ow) if layout == "NCHW" else (oh, ow, oc)
    out = np.zeros(shape, dtype)
    kwargs = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)} if normalize else {}
    try:
        _core.resample(src, out, (rh, rw), (wy, wx, wh, ww), (top, left), mode, layout,
                       swap_rb=swap, pad=pad, scale=1 / 255, **kwargs)
    except ValueError:
        return
    # accepted: the window fits everywhere, and values are finite
    assert wy >= 0 and wy + wh <= rh and wx >= 0 and wx + ww <= rw
    if out.dtype.kind == "f":
        assert np.isfinite(out).all()
