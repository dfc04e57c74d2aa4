"""The dynamic batcher on real engines: results split back exactly, incompatible requests never
share a batch, backpressure, faults kept to the request at fault, no wait at low load, batches under
load, and a close that drains."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import deploykit as dk
from deploykit.demo import MODEL_PATH, load_test_data
from deploykit.serve.batching import Batcher, BatcherClosed, BatchStats, QueueFull, RequestStats
from deploykit.serve.repository import Batching
from tests import models

T = TypeVar("T")
BACKENDS = ["numpy", "onnxruntime"]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def graph(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
          outputs: list[onnx.ValueInfoProto], initializers: list[onnx.TensorProto] | None = None,
          ) -> onnx.ModelProto:
    model = helper.make_model(helper.make_graph(nodes, "batching", inputs, outputs, initializer=initializers),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def varlen() -> onnx.ModelProto:
    """y[N,L] = 2x + 1 and s[N] = max over L, for x float32[N,L]: rows of different L never mix.
    (A max, not a sum: onnxruntime's ReduceSum adds in another order for another batch size.)"""
    two, one = (numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("two", 2), ("one", 1)))
    nodes = [helper.make_node("Mul", ["x", "two"], ["x2"]), helper.make_node("Add", ["x2", "one"], ["y"]),
             helper.make_node("ReduceMax", ["x"], ["s"], axes=[1], keepdims=0)]
    return graph(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "L"])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "L"]),
                  helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N"])], [two, one])


def lookup() -> onnx.ModelProto:
    """y[N,3] = table[idx]: an index outside the 10-row table fails inside the runtime."""
    table = numpy_helper.from_array(np.arange(30, dtype=np.float32).reshape(10, 3), "table")
    return graph([helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)],
                 [helper.make_tensor_value_info("idx", TensorProto.INT64, ["N"])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [table])


class Recorder:
    """Wraps an engine's ``run`` to record every call the batcher makes (feeds' shapes, outputs,
    and how many ran at once) — the engine itself still runs them."""

    def __init__(self, engine: dk.Engine) -> None:
        self.engine, self.calls, self.running, self.most = engine, [], 0, 0
        self._run, self._lock = engine.run, threading.Lock()
        engine.run = self  # type: ignore[method-assign]

    def __call__(self, feeds: Any, outputs: Any = None) -> dict[str, np.ndarray]:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.calls.append(({k: (v.shape, v.dtype) for k, v in feeds.items() if hasattr(v, "shape")},
                               outputs))
        try:
            return self._run(feeds, outputs)
        finally:
            with self._lock:
                self.running -= 1


def digits(backend: str) -> dk.Engine:
    return dk.load(str(MODEL_PATH), backend=backend)


def images(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.random((n, 1, 8, 8), dtype=np.float32) * 16).astype(np.float32)


async def together(batcher: Batcher, requests: list[tuple[dict[str, Any], Any]]) -> list[Any]:
    """Submit every request in one tick (so that all but the first queue behind it)."""
    return await asyncio.gather(*(batcher.infer_timed(f, o) for f, o in requests), return_exceptions=True)


# -- what can be batched ---------------------------------------------------------------------------
def test_can_batch_says_why() -> None:
    assert Batcher.can_batch(digits("numpy"))[0]
    assert Batcher.can_batch(dk.load(models.many_io(), backend="numpy"))[0]
    for model, why in ((models.fixed_image(), r"first dimension is fixed \(1\)"),
                       (models.scalar_input(), "'k' is a scalar"),
                       (models.reshape_to(), r"input shape: int64\[2\]: its first dimension is fixed")):
        ok, reason = Batcher.can_batch(dk.load(model, backend="numpy"))
        assert not ok and re.search(why, reason), reason
    with pytest.raises(dk.InvalidArgument, match=r"cannot be batched: .* serve it without batching"):
        Batcher(dk.load(models.fixed_image(), backend="numpy"), Batching(4))
    Batcher(dk.load(models.fixed_image(), backend="numpy"), None).close()  # unbatched: fine


@pytest.mark.parametrize("bad, pattern", [
    (Batching(0), "max_batch_size must be"),
    (Batching(4, -1.0), "max_queue_delay_ms must be"),
    (Batching(4, 0.0, (8,)), r"preferred_batch_sizes \[8\] must all be <= max_batch_size \(4\)"),
])
def test_bad_configs_are_refused(bad: Batching, pattern: str) -> None:
    with pytest.raises(dk.InvalidArgument, match=pattern):
        Batcher(digits("numpy"), bad)
    with pytest.raises(dk.InvalidArgument, match="max_queue must be"):
        Batcher(digits("numpy"), Batching(4), max_queue=0)


# -- exactness -------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_results_split_back_exactly_on_digits(backend: str, rng: np.random.Generator) -> None:
    engine = digits(backend)
    requests = [{"images": images(rng, int(n))} for n in rng.integers(1, 5, 40)]
    alone = [engine.run(f) for f in requests]
    batcher = Batcher(engine, Batching(16))
    got = run(together(batcher, [(f, None) for f in requests]))
    assert max(stats.batch_requests for _, stats in got) > 1  # batches did form
    for (result, stats), expected, feeds in zip(got, alone, requests):
        assert isinstance(stats, RequestStats) and stats.batch_size <= 16
        assert list(result) == ["probabilities", "label"]
        assert result["probabilities"].shape == (len(feeds["images"]), 10)
        np.testing.assert_array_equal(result["label"], expected["label"])
        if backend == "onnxruntime":  # its kernels do not depend on the batch: bit-identical
            np.testing.assert_array_equal(result["probabilities"], expected["probabilities"])
        else:  # numpy's BLAS takes another kernel for 1 row (gemv) than for many (gemm)
            np.testing.assert_allclose(result["probabilities"], expected["probabilities"], rtol=1e-5,
                                       atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bit_identical_on_models_built_in_code(backend: str, rng: np.random.Generator) -> None:
    engine = dk.load(models.many_io(), backend=backend)
    requests = []
    for n in rng.integers(1, 4, 30):
        shape = (int(n), 4)
        requests.append({"a": rng.standard_normal(shape, np.float32),
                         "b": rng.standard_normal(shape, np.float32),
                         "i": rng.integers(-100, 100, shape), "j": rng.integers(-100, 100, shape),
                         "flag": rng.random(shape) < 0.5})
    outputs = [None, ["picked32", "sum"]] * 15
    alone = [engine.run(f, o) for f, o in zip(requests, outputs)]
    got = run(together(Batcher(engine, Batching(32)), list(zip(requests, outputs))))
    assert max(stats.batch_requests for _, stats in got) > 1
    for (result, _), expected in zip(got, alone):
        assert list(result) == list(expected)  # the outputs asked for, in the order asked
        for name in expected:
            assert result[name].dtype == expected[name].dtype
            np.testing.assert_array_equal(result[name], expected[name])


# -- what shares a batch ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_different_shapes_dtypes_and_outputs_never_share_a_batch(backend: str,
                                                                 rng: np.random.Generator) -> None:
    engine = dk.load(varlen(), backend=backend)
    requests: list[tuple[dict[str, Any], Any]] = []
    for k in range(36):
        length = (3, 5)[k % 2]
        x = rng.standard_normal((1 + k % 3, length)).astype(np.float64 if k % 9 == 0 else np.float32)
        requests.append(({"x": x}, ["s"] if k % 4 == 1 else None))
    alone = [engine.run(f, o) for f, o in requests]
    recorder, batches = Recorder(engine), []
    got = run(together(Batcher(engine, Batching(64), on_batch=batches.append), requests))
    for (result, _), expected in zip(got, alone):
        assert list(result) == list(expected)
        for name in expected:
            np.testing.assert_array_equal(result[name], expected[name])
    merged = [c for c in recorder.calls if c[0]["x"][0][0] > 3]  # more rows than any one request
    assert merged, "no batch formed"
    # every call the engine saw holds one length, one dtype (float64 ones ran alone) and one outputs list
    assert len(recorder.calls) < len(requests)
    for feeds, _ in recorder.calls:
        (rows, length), dtype = feeds["x"]
        assert length in (3, 5)
        if dtype == np.float64:
            assert rows <= 3
    # one engine call per batch: no batch was mixed, failed to merge and was run request by request
    assert len(recorder.calls) == len(batches)


def test_a_request_over_max_batch_size_runs_alone(rng: np.random.Generator) -> None:
    engine = digits("onnxruntime")
    requests = [{"images": images(rng, n)} for n in (1, 6, 1, 1, 9, 2, 1)]
    recorder = Recorder(engine)
    got = run(together(Batcher(engine, Batching(4)), [(f, None) for f in requests]))
    rows = sorted(feeds["images"][0][0] for feeds, _ in recorder.calls)
    assert 6 in rows and 9 in rows and max(r for r in rows if r not in (6, 9)) <= 4
    for (result, stats), feeds in zip(got, requests):
        n = len(feeds["images"])
        assert result["label"].shape == (n,)
        if n > 4:
            assert (stats.batch_size, stats.batch_requests) == (n, 1)


def test_preferred_batch_sizes_cut_batches(rng: np.random.Generator) -> None:
    engine = digits("onnxruntime")
    sizes: list[int] = []
    batcher = Batcher(engine, Batching(8, 0.0, (4,)), on_batch=lambda s: sizes.append(s.size))
    requests = [({"images": images(rng, 1)}, None) for _ in range(13)]
    got = run(together(batcher, requests))
    assert all(not isinstance(g, BaseException) for g in got)
    assert sizes[0] == 1 and sizes[1:] == [4, 4, 4]  # the first ran at once; 12 queued behind it


# -- backpressure and faults -----------------------------------------------------------------------
def test_queue_full_is_backpressure(rng: np.random.Generator) -> None:
    engine = digits("onnxruntime")
    batcher = Batcher(engine, Batching(4), max_queue=3, name="model 'digits' version 1")
    got = run(together(batcher, [({"images": images(rng, 1)}, None) for _ in range(12)]))
    full = [g for g in got if isinstance(g, QueueFull)]
    assert len(full) == 12 - 1 - 3  # one ran at once, three queued
    assert all(isinstance(e, dk.DeployKitError) and isinstance(e, RuntimeError) for e in full)
    assert all(e.retry_after > 0 for e in full)
    assert str(full[0]).startswith("model 'digits' version 1: 3 requests queued, the limit (max_queue) is 3")
    assert sum(isinstance(g, tuple) for g in got) == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bad_request_fails_alone(backend: str) -> None:
    engine = dk.load(lookup(), backend=backend)
    good = [{"idx": np.array([k % 10, (k + 3) % 10], np.int64)} for k in range(12)]
    bad_index = {"idx": np.array([1, 42], np.int64)}  # passes every check; fails in the runtime
    bad_rank = {"idx": np.array([[1, 2]], np.int64)}  # Engine's own check: InputMismatch
    converted = {"idx": np.array([4, 5], np.int32)}  # another dtype: runs alone, converted
    feeds = [*good[:5], bad_index, *good[5:9], bad_rank, converted, *good[9:]]
    recorder = Recorder(engine)
    got = run(together(Batcher(engine, Batching(32)), [(f, None) for f in feeds]))
    table = np.arange(30, dtype=np.float32).reshape(10, 3)
    for f, g in zip(feeds, got):
        if f is bad_index:
            assert isinstance(g, dk.BackendError), g
        elif f is bad_rank:
            assert isinstance(g, dk.InputMismatch) and "expected rank 1" in str(g)
        else:
            assert isinstance(g, tuple), g
            np.testing.assert_array_equal(g[0]["y"], table[f["idx"]])
    assert any(feeds_["idx"][0][0] > 2 for feeds_, _ in recorder.calls)  # the bad one was in a batch


# -- adaptivity ------------------------------------------------------------------------------------
def test_no_wait_at_low_load(rng: np.random.Generator) -> None:
    """One client with max_queue_delay_ms=500 never waits its delay; after a burst, at most one
    request pays it (the wait that brought nothing resets the estimate)."""
    engine = digits("onnxruntime")
    batcher = Batcher(engine, Batching(32, 500.0))
    x = {"images": images(rng, 1)}

    async def sequential(n: int) -> list[float]:
        took = []
        for _ in range(n):
            start = time.perf_counter()
            await batcher.infer(x)
            took.append(time.perf_counter() - start)
        return took

    async def scenario() -> tuple[list[float], list[float]]:
        first = await sequential(20)
        await asyncio.gather(*(batcher.infer(x) for _ in range(32)))  # a burst raises the estimate
        after = await sequential(10)
        await batcher.aclose()
        return first, after

    first, after = run(scenario())
    assert max(first) < 0.25, first  # far below the 500 ms delay
    assert sum(t > 0.25 for t in after) <= 1, after


@pytest.mark.parametrize("delay_ms", [0.0, 5.0])
def test_batches_form_under_concurrent_load(delay_ms: float, rng: np.random.Generator) -> None:
    engine = digits("onnxruntime")
    batches: list[BatchStats] = []
    batcher = Batcher(engine, Batching(32, delay_ms), on_batch=batches.append)
    data, _ = load_test_data()
    expected = engine.run({"images": data[:64]})["label"]

    async def client(c: int) -> None:
        for k in range(6):
            i = (c * 7 + k) % 64
            out = await batcher.infer({"images": data[i:i + 1]}, ["label"])
            assert out["label"][0] == expected[i]

    async def scenario() -> None:
        await asyncio.gather(*(client(c) for c in range(32)))
        await batcher.aclose()

    run(scenario())
    assert sum(b.requests for b in batches) == 32 * 6
    assert sum(b.size > 1 for b in batches) >= 1
    assert max(b.size for b in batches) <= 32
    assert all(len(b.queue_s) == b.requests and b.compute_s >= 0 for b in batches)


def test_concurrent_batches_are_bounded(rng: np.random.Generator) -> None:
    engine = digits("numpy")
    recorder = Recorder(engine)
    batcher = Batcher(engine, Batching(2), max_concurrent=2)
    got = run(together(batcher, [({"images": images(rng, 200)}, None) for _ in range(3)]
                       + [({"images": images(rng, 1)}, None) for _ in range(30)]))
    assert all(isinstance(g, tuple) for g in got)
    assert recorder.most <= 2


# -- lifecycle -------------------------------------------------------------------------------------
def test_close_drains_what_is_queued(rng: np.random.Generator) -> None:
    engine = digits("onnxruntime")
    batcher = Batcher(engine, Batching(4), max_queue=100)
    requests = [{"images": images(rng, 1)} for _ in range(30)]

    async def scenario() -> tuple[list[Any], BaseException | None]:
        tasks = [asyncio.ensure_future(batcher.infer(f)) for f in requests]
        await asyncio.sleep(0)  # every request submitted; most of them queued
        closing = asyncio.ensure_future(batcher.aclose())
        await asyncio.sleep(0)
        late: BaseException | None = None
        try:
            await batcher.infer(requests[0])
        except BatcherClosed as e:
            late = e
        await closing
        return [t.result() for t in tasks], late

    results, late = run(scenario())
    assert len(results) == 30 and all(r["label"].shape == (1,) for r in results)
    assert isinstance(late, dk.EngineClosed) and "no longer taking requests" in str(late)
    batcher.close()  # again, from outside any loop: harmless
    assert "(closed)" in repr(batcher)


def test_unbatched_mode_and_a_failing_callback(caplog: pytest.LogCaptureFixture) -> None:
    engine = dk.load(models.scalar_input(), backend="numpy")

    def broken(stats: BatchStats) -> None:
        raise RuntimeError("metrics down")

    batcher = Batcher(engine, None, on_batch=broken)
    feeds = {"x": np.arange(3, dtype=np.float32), "k": np.array(2, np.int64)}
    got = run(together(batcher, [(feeds, None)] * 5))
    assert all(g[1].batch_requests == 1 for g in got)
    np.testing.assert_array_equal(got[0][0]["y"], np.array([0, 2, 4], np.float32))
    assert "on_batch callback failed" in caplog.text


def test_errors_inside_run_keep_engine_messages() -> None:
    engine = digits("numpy")

    async def scenario() -> None:
        batcher = Batcher(engine, Batching(8))
        with pytest.raises(dk.InputMismatch, match="unknown output"):
            await batcher.infer({"images": np.zeros((1, 1, 8, 8), np.float32)}, ["nope"])
        with pytest.raises(dk.InputMismatch, match="missing input"):
            await batcher.infer({"x": np.zeros((1, 1, 8, 8), np.float32)})
        out = await batcher.infer(np.zeros((2, 1, 8, 8), np.float64))  # a bare array, converted
        assert out["label"].shape == (2,)
        await batcher.aclose()

    run(scenario())



def test_cancelled_requests_leave_the_queue(rng: np.random.Generator) -> None:
    engine = digits("onnxruntime")
    batcher = Batcher(engine, Batching(8), max_queue=50)

    async def scenario() -> list[Any]:
        tasks = [asyncio.ensure_future(batcher.infer({"images": images(rng, 1)})) for _ in range(20)]
        await asyncio.sleep(0)  # all submitted: one running, the rest queued
        for t in tasks[5:15]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert batcher.queued == 0 and batcher.retry_after > 0
        await asyncio.to_thread(batcher.close)  # close from another thread: the loop is woken
        await batcher.aclose()
        return done

    done = run(scenario())
    assert sum(isinstance(d, asyncio.CancelledError) for d in done) == 10
    assert sum(isinstance(d, dict) for d in done) == 10


@pytest.mark.parametrize("backend", BACKENDS)
def test_requests_that_run_alone_are_handed_over_together_and_answered_each(backend: str,
                                                                          rng: np.random.Generator) -> None:
    """Unbatched, 64 requests queued at once: each runs alone (its own engine call, its own result,
    its own compute time); a failing one fails alone."""
    engine = dk.load(lookup(), backend=backend)
    recorder = Recorder(engine)
    batcher = Batcher(engine, None)
    good = [{"idx": np.array([i % 10, (i + 3) % 10], np.int64)} for i in range(63)]
    bad = {"idx": np.array([99], np.int64)}
    requests = [(f, None) for f in good[:30]] + [(bad, None)] + [(f, None) for f in good[30:]]

    async def both() -> list[Any]:
        await batcher.infer_timed(good[0])  # a first run measures the model
        return await together(batcher, requests)

    got = run(both())
    assert len(recorder.calls) == 1 + 64  # one engine call per request, none merged
    for (feeds, _), result in zip(requests, got):
        if feeds is bad:
            assert isinstance(result, Exception)
            continue
        outputs, stats = result
        want = np.arange(30, dtype=np.float32).reshape(10, 3)[feeds["idx"]]
        np.testing.assert_array_equal(outputs["y"], want)
        assert stats.batch_requests == 1 and stats.batch_size == 1 and stats.compute_s > 0
