"""The NumPy backend as an adapter: what it declares, how it checks its options, and the BLAS
threads it really runs with (set per run, put back afterwards, never reported when not applied)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import deploykit as dk
from deploykit.backends.base import CPU
from deploykit.backends.reference import DEFAULT_THREADS, NumpyBackend, blas
from deploykit.backends.reference.graph import CompiledGraph
from deploykit.demo import MODEL_PATH
from deploykit.errors import DeployKitWarning
from deploykit.model import open_model
from tests.concurrency import run_in_threads


def test_declares_what_selection_and_the_probe_need() -> None:
    assert NumpyBackend.distributions == ("numpy",)
    assert NumpyBackend.device_kind == CPU
    assert NumpyBackend.priority == 90  # after every native runtime: the last resort
    assert NumpyBackend.option_names == ("fold_constants", "optimize")
    params = inspect.signature(NumpyBackend.__init__).parameters
    assert [p for p in params if p not in ("self", "source", "threads")] == list(NumpyBackend.option_names)


#: option -> bad values, each refused with an InvalidArgument naming the option and the value
BAD_OPTIONS: list[tuple[str, Any, str]] = [
    *[("fold_constants", v, r"fold_constants must be True or False, got ") for v in ("yes", 1, None, 0.0)],
    *[("optimize", v, r"optimize must be True or False, got ") for v in ("no", 0, [True])],
    *[("threads", v, r"threads must be an int >= 1 .*got ") for v in (0, -1, 1.5, True, "2")],
]


@pytest.mark.parametrize(("option", "value", "message"), BAD_OPTIONS)
def test_bad_option_values_are_refused(option: str, value: Any, message: str) -> None:
    with pytest.raises(dk.InvalidArgument, match=message + repr(value).replace("[", r"\[")):
        NumpyBackend(open_model(MODEL_PATH), **{option: value})
    with pytest.raises(dk.InvalidArgument, match=message):
        dk.load(MODEL_PATH, backend="numpy", **{option: value})


def test_numpy_bools_are_accepted() -> None:
    backend = NumpyBackend(open_model(MODEL_PATH), fold_constants=np.bool_(False), optimize=np.True_)
    assert len(backend.graph.steps) > 0


# -- the BLAS pool, on stand-ins for threadpoolctl's library controllers ---------------------------
class FakeLibrary:
    """What BlasPool uses of a threadpoolctl library controller."""

    internal_api, version = "openblas", "0.0"

    def __init__(self, threads: int, threading_layer: str = "pthreads") -> None:
        self.num_threads = threads
        self.threading_layer = threading_layer
        self.calls: list[int] = []

    def get_num_threads(self) -> int:
        return self.num_threads

    def set_num_threads(self, n: int) -> None:
        self.calls.append(n)
        self.num_threads = n


def test_pool_is_sized_for_runs_and_put_back() -> None:
    lib = FakeLibrary(4)
    pool = blas.BlasPool((lib,))
    pool.enter(1)
    assert lib.num_threads == 1
    pool.enter(2)  # a run that starts while another is in progress leaves the pool as it is
    assert lib.num_threads == 1
    pool.leave()
    assert lib.num_threads == 1
    pool.leave()
    assert lib.num_threads == 4 and lib.calls == [1, 4]
    assert pool.describe() == "openblas 0.0 (pthreads)"


def test_pool_already_at_the_size_is_not_touched() -> None:
    lib = FakeLibrary(1)
    pool = blas.BlasPool((lib,))
    pool.enter(1)
    pool.leave()
    assert lib.calls == []


def test_concurrent_runs_set_once_and_restore_after_the_last() -> None:
    lib = FakeLibrary(8)
    pool = blas.BlasPool((lib,))
    seen: list[int] = []

    def run(_: int) -> None:
        pool.enter(2)
        try:
            seen.append(lib.num_threads)
        finally:
            pool.leave()

    run_in_threads(run, 6, 50)
    assert set(seen) == {2} and lib.num_threads == 8
    assert lib.calls.count(2) == lib.calls.count(8) >= 1


def test_per_thread_pools_are_sized_by_each_thread() -> None:
    """With OpenBLAS on OpenMP each calling thread has its own pool: each run sets its own."""
    pool = blas.BlasPool((FakeLibrary(4, "openmp"),))
    states: list[int] = []
    inside = threading.Barrier(2)

    def run(_: int) -> None:
        pool.enter(1)
        inside.wait()  # both runs in progress: each thread still counts only its own
        states.append(pool._state.active)
        pool.leave()

    run_in_threads(run, 2, 1)
    assert states == [1, 1]


def test_size_in_runs_reads_back_what_the_library_really_took() -> None:
    class Stubborn(FakeLibrary):
        def set_num_threads(self, n: int) -> None:  # e.g. another thread controls OpenBLAS
            self.calls.append(n)

    assert blas.BlasPool((FakeLibrary(4),)).size_in_runs(1) == [1]
    assert blas.BlasPool((Stubborn(4),)).size_in_runs(1) == [4]


# -- the real pool (threadpoolctl installed) -------------------------------------------------------
@pytest.fixture
def real_pool() -> blas.BlasPool:
    pytest.importorskip("threadpoolctl")
    pool = blas.blas_pool()
    if pool.reason is not None:
        pytest.skip(pool.reason)
    return pool


def _threads_during_runs(monkeypatch: pytest.MonkeyPatch, pool: blas.BlasPool) -> list[int]:
    """Record the BLAS pool size whenever a compiled graph runs."""
    seen: list[int] = []
    original = CompiledGraph.run

    def recording(self: CompiledGraph, *args: Any, **kwargs: Any) -> list[Any]:
        seen.append(max(lib.num_threads for lib in pool.libraries))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CompiledGraph, "run", recording)
    return seen


@pytest.mark.parametrize("threads", [None, 1, 2])
def test_runs_get_the_threads_reported_and_numpy_keeps_its_own(
        threads: int | None, real_pool: blas.BlasPool, monkeypatch: pytest.MonkeyPatch) -> None:
    from threadpoolctl import threadpool_limits

    expected = DEFAULT_THREADS if threads is None else threads
    with threadpool_limits(limits=3, user_api="blas"):  # the user's own setting
        engine = dk.load(MODEL_PATH, backend="numpy", threads=threads)
        seen = _threads_during_runs(monkeypatch, real_pool)
        engine.run(np.zeros((2, 1, 8, 8), np.float32))
        after = [lib.num_threads for lib in real_pool.libraries]
    assert engine.info["threads"] == expected and "threads_note" not in engine.info
    assert seen == [expected]
    assert after == [3] * len(real_pool.libraries)
    assert engine.info["blas"] == real_pool.describe()


@pytest.fixture
def no_threadpoolctl() -> Iterator[None]:
    """threadpoolctl fails to import, as if not installed (the pool is found again afterwards)."""
    saved = sys.modules.get("threadpoolctl")
    sys.modules["threadpoolctl"] = None  # type: ignore[assignment]
    blas.blas_pool.cache_clear()
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["threadpoolctl"]
        else:
            sys.modules["threadpoolctl"] = saved
        blas.blas_pool.cache_clear()


@pytest.mark.usefixtures("no_threadpoolctl")
def test_without_threadpoolctl_nothing_is_claimed() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeployKitWarning)  # the default alone does not warn
        default = dk.load(MODEL_PATH, backend="numpy")
    with pytest.warns(DeployKitWarning, match=r"threads=1 is not applied: threadpoolctl is not "
                                              r"installed.*OPENBLAS_NUM_THREADS"):
        asked = dk.load(MODEL_PATH, backend="numpy", threads=1)
    for engine in (default, asked):
        assert engine.info["threads"] is None and engine.info["blas"] is None
        assert "threadpoolctl is not installed" in engine.info["threads_note"]
        assert engine.run(np.zeros((1, 1, 8, 8), np.float32))["label"].shape == (1,)


def test_threads_not_applied_when_another_thread_controls_openblas(real_pool: blas.BlasPool) -> None:
    """threadpoolctl >= 3.8 lets one thread at a time size a process-wide OpenBLAS pool."""
    from threadpoolctl import threadpool_limits

    lib = real_pool.libraries[0]
    if not hasattr(type(lib), "clear_controlling_thread") or lib.threading_layer == "openmp":
        pytest.skip("this threadpoolctl/BLAS lets any thread size the pool")
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with threadpool_limits(limits=2, user_api="blas"):
            holding.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        holding.wait(30)
        with pytest.warns(DeployKitWarning, match=r"threads=1 is not applied: asked for 1 BLAS "
                                                  r"thread\(s\), numpy's BLAS pool stays at 2"):
            engine = dk.load(MODEL_PATH, backend="numpy", threads=1)
    finally:
        done.set()
        holder.join()
    assert engine.info["threads"] == 2 and "another thread" in engine.info["threads_note"]


def test_onnx_backend_imports_nothing_above_the_backends() -> None:
    code = ("import sys, deploykit.backends.reference.onnx_backend as m; "
            "print(*sorted(n for n in sys.modules if n.startswith('deploykit.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    above = {"deploykit.engine", "deploykit.loading", "deploykit.opening", "deploykit.selection",
             "deploykit.artifacts", "deploykit.tuning", "deploykit.comparison", "deploykit.benchmark"}
    assert not above & set(loaded.stdout.split()), loaded.stdout
