"""The one timing core: repeated calls on a monotonic clock, warm-up excluded.

``dk.bench``, the demo and backend auto-tuning all measure through :func:`measure`, so every
number deploykit prints is taken the same way: ``time.perf_counter_ns``
(monotonic, the finest clock Python has) read right before and right after each call, warm-up
calls never timed, percentiles by linear interpolation between samples.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: The clock behind every figure: monotonic, integer nanoseconds.
CLOCK: Callable[[], int] = time.perf_counter_ns
CLOCK_NAME = "time.perf_counter_ns (monotonic)"
#: Percentiles need samples above them to mean anything: p99 rests on at least one sample
#: beyond it only from 100 samples up. ``dk.bench`` collects at least this many by default.
MIN_SAMPLES_FOR_P99 = 100


@dataclass(frozen=True)
class Timing:
    """What one measurement gives: per-call latencies and the wall time they took together.

    ``latencies`` are seconds per call (every thread's calls, in no particular order); ``wall`` is
    the seconds from the first timed call's start to the last one's end, so ``throughput`` counts
    calls that overlapped in time (concurrency > 1) once each.
    """

    latencies: np.ndarray
    wall: float
    concurrency: int
    warmup: int

    @property
    def n(self) -> int:
        return int(self.latencies.size)

    @property
    def throughput(self) -> float:
        """Completed calls per second of wall time."""
        return self.n / self.wall if self.wall > 0 else float("nan")

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1e3

    def summary_ms(self) -> dict[str, float]:
        """p50/p90/p99/mean/min/max in milliseconds (linear interpolation between samples)."""
        lat = self.latencies * 1e3
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
                "mean_ms": float(lat.mean()), "min_ms": float(lat.min()), "max_ms": float(lat.max())}


def check_budget(iterations: int | None, min_seconds: float, min_iterations: int,
                 concurrency: int) -> None:
    """Refuse a measurement plan that cannot give a number (raises ``ValueError``)."""
    if iterations is not None and iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if min_seconds < 0:
        raise ValueError(f"min_seconds must be >= 0, got {min_seconds}")
    if min_iterations < 1:
        raise ValueError(f"min_iterations must be >= 1, got {min_iterations}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")


def measure(fn: Callable[[], object], *, concurrency: int = 1, warmup: int = 3,
            iterations: int | None = None, min_seconds: float = 0.0, min_iterations: int = 5,
            max_iterations: int = 1_000_000) -> Timing:
    """Time calls of ``fn`` from ``concurrency`` threads at once.

    Each thread first calls ``fn`` ``warmup`` times untimed; then all start together (a barrier)
    and call it back to back. With ``iterations`` exactly that many calls are timed (all threads
    together); otherwise calls go on until ``min_seconds`` have passed *and* ``min_iterations``
    calls are done (capped at ``max_iterations``). Concurrency 1 runs in the calling thread, so
    it measures what a plain ``perf_counter`` loop around ``fn`` would.
    """
    check_budget(iterations, min_seconds, min_iterations, concurrency)
    if concurrency == 1:
        return _measure_serial(fn, warmup, iterations, min_seconds, min_iterations, max_iterations)
    return _measure_threads(fn, concurrency, warmup, iterations, min_seconds, min_iterations,
                            max_iterations)


def _measure_serial(fn: Callable[[], object], warmup: int, iterations: int | None,
                    min_seconds: float, min_iterations: int, max_iterations: int) -> Timing:
    for _ in range(warmup):
        fn()
    clock = CLOCK
    samples: list[int] = []
    start = clock()
    deadline = start + int(min_seconds * 1e9)
    end = start
    while True:
        t0 = clock()
        fn()
        end = clock()
        samples.append(end - t0)
        n = len(samples)
        if iterations is not None:
            if n >= iterations:
                break
        elif (n >= min_iterations and end >= deadline) or n >= max_iterations:
            break
    return Timing(np.asarray(samples, dtype=np.float64) * 1e-9, (end - start) * 1e-9, 1, warmup)


def _measure_threads(fn: Callable[[], object], concurrency: int, warmup: int,
                     iterations: int | None, min_seconds: float, min_iterations: int,
                     max_iterations: int) -> Timing:
    clock = CLOCK
    per_thread: list[list[int]] = [[] for _ in range(concurrency)]
    spans: list[tuple[int, int]] = [(0, 0)] * concurrency
    errors: list[BaseException] = []
    barrier = threading.Barrier(concurrency)
    tickets = itertools.count()   # next() on itertools.count is atomic under the GIL
    finished = itertools.count(1)
    cap = iterations if iterations is not None else max_iterations
    span = int(min_seconds * 1e9)

    def worker(i: int) -> None:
        samples = per_thread[i]
        try:
            for _ in range(warmup):
                fn()
            barrier.wait()  # every thread starts timing together
            start = end = clock()
            deadline = start + span  # each thread times at least min_seconds: so does the wall
            while next(tickets) < cap:
                t0 = clock()
                fn()
                end = clock()
                samples.append(end - t0)
                done = next(finished)
                if iterations is None and done >= min_iterations and end >= deadline:
                    break
            spans[i] = (start, end)
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)
            barrier.abort()

    pool = [threading.Thread(target=worker, args=(i,), name=f"deploykit-timing-{i}")
            for i in range(concurrency)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
    samples = np.concatenate([np.asarray(s, dtype=np.float64) for s in per_thread]) * 1e-9
    wall = (max(s[1] for s in spans) - min(s[0] for s in spans)) * 1e-9
    return Timing(samples, wall, concurrency, warmup)


def time_calls(fn: Callable[[], object], *, warmup: int = 3, iterations: int | None = None,
               min_seconds: float = 0.0, max_iterations: int = 100_000) -> np.ndarray:
    """Call ``fn`` ``warmup`` times untimed, then time each call; return seconds per call.

    Runs ``iterations`` calls, or, when ``iterations`` is None, as many as fit in
    ``min_seconds`` (at least 5, at most ``max_iterations``). A shorthand for :func:`measure`
    at concurrency 1.
    """
    return measure(fn, warmup=warmup, iterations=iterations, min_seconds=min_seconds,
                   max_iterations=max_iterations).latencies
