"""numpy's BLAS thread pool, sized for the NumPy backend's runs and put back afterwards.

The NumPy backend's only multi-threaded work is numpy's BLAS (the matrix products inside Conv,
Gemm, MatMul, the RNNs); everything else runs on the calling thread. numpy cannot size that pool;
``threadpoolctl`` can (an optional dependency: without it the backend cannot size the pool, nor
read it, and says so). A BLAS pool belongs to the process (to each calling thread with an OpenMP
build), so the size is set when a run starts and what was there is put back when the last run in
progress ends: numpy code outside deploykit keeps its own setting. When engines that ask for
different sizes run at the same moment, the first one's size holds until all have finished.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any


class _Shared:
    """Runs in progress and the sizes to put back, for a pool the whole process shares."""

    active = 0
    saved: list[int] | None = None


class _PerThread(_Shared, threading.local):
    """The same, for a pool each calling thread has (OpenBLAS on OpenMP)."""


class BlasPool:
    """The BLAS libraries numpy uses, as threadpoolctl controls them; ``reason`` says why the pool
    cannot be sized (None when it can)."""

    def __init__(self, libraries: tuple[Any, ...], reason: str | None = None) -> None:
        self.libraries = libraries
        self.reason = reason
        per_thread = any(getattr(lib, "threading_layer", "") == "openmp" for lib in libraries)
        self._state: _Shared = _PerThread() if per_thread else _Shared()
        self._lock = threading.Lock()
        # threadpoolctl >= 3.8 lets one thread at a time size a process-wide OpenBLAS pool (the
        # first to try, for as long as it lives); the role is given back after each change so
        # that the next run may start on any thread.
        self._releases = [getattr(type(lib), "clear_controlling_thread", None) for lib in libraries]

    def describe(self) -> str | None:
        """E.g. ``"openblas 0.3.31 (pthreads)"``; None when no library is controlled."""
        if not self.libraries:
            return None
        return ", ".join(f"{lib.internal_api} {lib.version or '(version unknown)'}"
                         + (f" ({lib.threading_layer})" if getattr(lib, "threading_layer", None) else "")
                         for lib in self.libraries)

    def enter(self, size: int) -> None:
        """A run starts that wants ``size`` threads: the first run in progress sets the pool."""
        with self._lock:
            state = self._state
            if state.active == 0 and self.libraries:
                current = [lib.get_num_threads() for lib in self.libraries]
                if current != [size] * len(current):
                    self._set([size] * len(current))
                    state.saved = current
            state.active += 1

    def leave(self) -> None:
        """A run ended: the last run in progress puts back the sizes the pool had before."""
        with self._lock:
            state = self._state
            state.active -= 1
            if state.active == 0 and state.saved is not None:
                self._set(state.saved)
                state.saved = None

    def size_in_runs(self, size: int) -> list[int]:
        """The pool sizes a run that asks for ``size`` really gets: set, read back, put back. While
        another run is in progress the pool is left alone and ``size`` assumed (the first run's
        size holds until it ends)."""
        with self._lock:
            if self._state.active:
                return [size] * len(self.libraries)
        self.enter(size)
        try:
            return [int(lib.get_num_threads()) for lib in self.libraries]
        finally:
            self.leave()

    def _set(self, sizes: list[int]) -> None:
        for lib, n, release in zip(self.libraries, sizes, self._releases):
            lib.set_num_threads(n)
            if release is not None:
                release()


@lru_cache(maxsize=1)
def blas_pool() -> BlasPool:
    """The process's BLAS pool (found once: numpy's BLAS library is loaded with numpy)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return BlasPool((), "threadpoolctl is not installed (pip install threadpoolctl)")
    libraries = tuple(ThreadpoolController().select(user_api="blas").lib_controllers)
    if not libraries:
        return BlasPool((), "threadpoolctl finds no BLAS library it can size in this process")
    return BlasPool(libraries)
