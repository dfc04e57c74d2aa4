"""How the NumPy backend's float32 results are judged against onnxruntime's."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: max |numpy - onnxruntime| <= TOLERANCE * max(|output|, 1e-6). Where float32 rounding alone
#: makes two correct runtimes differ by more (silero-vad's LSTM state: its inputs reach ~3400),
#: the bound must hold against a float64 evaluation of the model instead — the exact answer both
#: float32 results approximate — and deploykit must be no further from it than onnxruntime.
TOLERANCE = 1e-4


def scaled_error(got: np.ndarray, ref: np.ndarray) -> float:
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-6)
    return float(np.abs(got.astype(np.float64) - ref).max(initial=0.0)) / scale


def assert_agrees(got: dict[str, np.ndarray], want: dict[str, np.ndarray],
                  exact: Callable[[], dict[str, np.ndarray]]) -> None:
    """``got`` (numpy backend) vs ``want`` (onnxruntime); ``exact()`` gives float64 outputs."""
    assert list(got) == list(want)
    truth: dict[str, np.ndarray] | None = None
    for name, ref in want.items():
        assert got[name].shape == ref.shape and got[name].dtype == ref.dtype, name
        if scaled_error(got[name], ref) <= TOLERANCE:
            continue
        truth = exact() if truth is None else truth
        assert scaled_error(got[name], truth[name]) <= TOLERANCE, (name, "vs float64")
        assert scaled_error(got[name], truth[name]) <= scaled_error(ref, truth[name]), name
