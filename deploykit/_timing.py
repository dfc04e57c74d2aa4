"""The one timing core: repeated calls on a monotonic clock, warm-up excluded.

Used by the demo now and by ``dk.bench``/auto-tuning later, so that every number deploykit
prints is measured the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def time_calls(fn: Callable[[], object], *, warmup: int = 3, iterations: int | None = None,
               min_seconds: float = 0.0, max_iterations: int = 100_000) -> np.ndarray:
    """Call ``fn`` ``warmup`` times untimed, then time each call; return seconds per call.

    Runs ``iterations`` calls, or, when ``iterations`` is None, as many as fit in
    ``min_seconds`` (at least 5, at most ``max_iterations``).
    """
    if iterations is not None and iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    samples: list[int] = []
    deadline = clock() + int(min_seconds * 1e9)
    while True:
        t0 = clock()
        fn()
        samples.append(clock() - t0)
        n = len(samples)
        if iterations is not None:
            if n >= iterations:
                break
        elif (n >= 5 and clock() >= deadline) or n >= max_iterations:
            break
    return np.asarray(samples, dtype=np.float64) * 1e-9
