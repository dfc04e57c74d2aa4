"""Dynamic batching in front of one Engine: concurrent requests merged along the first (batch) axis,
run off the event loop, and split back exactly — no HTTP here.

A ``Batcher`` holds a bounded queue (``max_queue`` requests; ``QueueFull`` beyond it, with a
``retry_after`` estimate) and runs at most ``max_concurrent`` batches at once on its own threads
(``Engine.run`` is thread-safe; an engine whose runtime is not serialises them itself).

The waiting rule — batching must cost nothing at low load:

1. A batch is what is *already queued*: the oldest request, then the later ones with the same key
   (non-batch shapes, requested outputs; dtypes must be exactly the model's), FIFO, up to
   ``max_batch_size`` rows — cut at the largest ``preferred_batch_sizes`` entry it can reach exactly.
2. Whenever a slot is free it runs at once. While every slot is busy (a batch is computing) the
   queue fills by itself: this is where batches form, and it adds no delay.
3. It waits for more — at most until the oldest request has waited ``max_queue_delay_ms`` — only
   when the delay is > 0 *and* requests have been overlapping: each arrival records how many rows
   it found in the batcher (queued or running), and the waiting needs that moving average >= 1.
   It stops waiting as soon as the batch reaches its target (about that average + 1 rows, or the
   preferred size below it, never above ``max_batch_size``). A wait that brought nothing resets
   the average, so once load goes away at most one request pays a delay. A lone client never
   finds anyone else in the batcher, so its requests never wait.

A request that cannot share a batch — a model without a batch dimension (``batching=None``), feeds
needing conversion (wrong dtype, lists, ...), wrong names/ranks/fixed dims, inputs disagreeing on
their row count, no rows, more rows than ``max_batch_size`` — runs alone through ``Engine.run``,
which converts it or raises the error it raises in-process. Queued requests that run alone go to the
thread together when their measured run times fit ``GROUP_BUDGET_S`` (one hand-over, each still its
own run, each answered with its own result). A merged batch that fails is run again
request by request, so only the request at fault fails.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..arguments import check_number
from ..engine import Engine, Feeds, feeds_from
from ..errors import EngineClosed, InvalidArgument
from .batchrun import Result, Runner
from .repository import Batching
from .status import QueueFull

log = logging.getLogger("deploykit.serve")

#: Weight of the newest arrival in the moving average of rows found in the batcher.
LOAD_SMOOTHING = 0.2
#: Weight of the newest batch in the moving average of batch compute time (for ``retry_after``).
COMPUTE_SMOOTHING = 0.2
#: Requests that run alone (no batching, or not batchable) are handed to the thread in groups whose
#: expected compute stays within this budget (one hand-over instead of one each: a hand-over costs
#: 0.1–0.3 ms of two thread wake-ups on the development VM, 5x a digits run), at most ``GROUP_MAX``.
GROUP_BUDGET_S = 0.001
GROUP_MAX = 64


class BatcherClosed(EngineClosed):
    """A request came after ``close()``: the batcher takes no more (an ``EngineClosed``)."""


@dataclass(frozen=True)
class RequestStats:
    """What one request went through: time queued, time its batch computed, and that batch."""

    queue_s: float
    compute_s: float
    batch_size: int  # rows in the batch that ran it
    batch_requests: int  # requests in that batch


@dataclass(frozen=True)
class BatchStats:
    """One batch run: its rows, its requests, each request's queue time, its compute time."""

    size: int
    requests: int
    queue_s: tuple[float, ...]
    compute_s: float


#: (requested outputs, non-batch shape of each input): requests share a batch only with equal keys.
Key = tuple[Any, ...]


@dataclass(eq=False)
class _Request:
    feeds: Mapping[str, Any]
    outputs: Any
    key: Key | None  # None: runs alone
    rows: int
    future: asyncio.Future[tuple[Result, RequestStats]]
    arrived: float
    queue_s: float = 0.0


class Batcher:
    """A bounded queue and dynamic batching in front of ``engine`` (see the module's rule).

    ``batching=None`` runs every request alone, still bounded by ``max_queue`` and
    ``max_concurrent``. ``on_batch`` is called on the event loop after every batch (metrics); an
    error it raises is logged, never given to a request. The engine stays the caller's to close.
    ``max_concurrent`` batches run at once, each on a thread of the batcher's own (default 1: the
    runtime's own threads already use the cores; raise it for engines with several instances or
    runtimes that do not parallelise one run).
    """

    def __init__(self, engine: Engine, batching: Batching | None, *, max_queue: int = 1024,
                 max_concurrent: int = 1, on_batch: Callable[[BatchStats], None] | None = None,
                 name: str | None = None) -> None:
        self.engine = engine
        #: How messages name the model (default: the engine's source), e.g. "model 'digits' version 2".
        self.name = name or engine.source.label
        self.batching = batching
        self.max_queue: int = check_number(max_queue, "max_queue", minimum=1, integer=True)
        self.max_concurrent: int = check_number(max_concurrent, "max_concurrent", minimum=1, integer=True)
        self._on_batch = on_batch
        self._max_rows, self._delay_s, self._preferred = _check_batching(batching)
        if batching is not None:
            ok, why = self.can_batch(engine)
            if not ok:
                raise InvalidArgument(f"{self.name} cannot be batched: {why}; serve it "
                                      "without batching (batching=None)")
        # per input: (name, dtype, rank, ((axis, fixed size), ...)), for the batchability check
        self._specs = [(s.name, s.dtype, s.rank or 0,
                        tuple((i, d) for i, d in enumerate(s.shape or ()) if isinstance(d, int)))
                       for s in engine.inputs]
        self._output_set = frozenset(s.name for s in engine.outputs)
        self._executor = ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="deploykit-batch")
        self._queue: deque[_Request] = deque()
        self._rows_by_key: dict[Key, int] = {}
        self._queued_rows = 0
        self._running_rows = 0
        self._load = 0.0  # moving average of rows an arrival finds in the batcher
        self._batch_s = 0.0  # moving average of batch compute time
        self._alone_s = 0.0  # moving average of one request's run when requests run alone
        self._closing = False
        self._runner = Runner(engine, [name for name, *_ in self._specs], self.name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.max_concurrent)
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def can_batch(engine: Engine) -> tuple[bool, str]:
        """Whether every input and output of ``engine`` has a dynamic first (batch) dimension, one
        and the same for the inputs; the reason when not."""
        named: set[str] = set()
        for kind, specs in (("input", engine.inputs), ("output", engine.outputs)):
            for s in specs:
                if s.kind != "tensor" or s.shape is None or not s.shape:
                    what = s.kind if s.kind != "tensor" else "of no declared rank" if s.shape is None \
                        else "a scalar"
                    return False, f"{kind} {s.name!r} is {what}, not a tensor with a batch dimension"
                if isinstance(s.shape[0], int):
                    return False, (f"{kind} {s}: its first dimension is fixed ({s.shape[0]}), not a batch "
                                   "dimension")
                if kind == "input" and isinstance(s.shape[0], str):
                    named.add(s.shape[0])
        if len(named) > 1:
            return False, (f"the inputs' first dimensions are named differently "
                           f"({', '.join(sorted(named))}): not one batch dimension")
        return True, "every input and output has a dynamic first dimension"

    # -- requests ------------------------------------------------------------------------------
    async def infer(self, feeds: Feeds, outputs: Sequence[str] | str | None = None) -> Result:
        """Run one request, batched with others where it can be: ``Engine.run``'s arguments,
        results and errors, plus ``QueueFull`` and ``BatcherClosed``."""
        result, _ = await self.infer_timed(feeds, outputs)
        return result

    async def infer_timed(self, feeds: Feeds, outputs: Sequence[str] | str | None = None,
                          ) -> tuple[Result, RequestStats]:
        """``infer``, and what the request went through (queue time, compute time, batch)."""
        if self._closing:
            raise BatcherClosed(f"{self.name}: no longer taking requests (shutting down or unloading); "
                                "retry on another version or server")
        loop = self._bind()
        if len(self._queue) >= self.max_queue:
            raise QueueFull(f"{self.name}: {len(self._queue)} requests queued, the limit "
                            f"(max_queue) is {self.max_queue}; retry later", self.retry_after)
        feeds = feeds_from(feeds, self.engine.inputs)
        key, rows = self._key(feeds, outputs)
        self._load += LOAD_SMOOTHING * (self._queued_rows + self._running_rows - self._load)
        request = _Request(feeds, outputs, key, rows, loop.create_future(), time.perf_counter())
        if not self._queue and not self._slots.locked() and (self._delay_s <= 0 or self._load < 1):
            await self._slots.acquire()  # free: returns without suspending; nothing to batch with
            await self._execute([request])
        else:
            self._enqueue(request)
        return await request.future

    @property
    def retry_after(self) -> float:
        """Seconds until the queue has likely room again (from the recent batch compute time)."""
        batches = math.ceil((self._queued_rows + 1) / self._max_rows) / self.max_concurrent
        return round(max(0.001, self._batch_s * batches), 3)

    @property
    def queued(self) -> int:
        """Requests waiting in the queue."""
        return len(self._queue)

    def _key(self, feeds: Mapping[str, Any], outputs: Any) -> tuple[Key | None, int]:
        """The batching key and row count of a request; key None when it must run alone."""
        if self.batching is None or len(feeds) != len(self._specs):
            return None, 1
        if outputs is not None:
            outputs = (outputs,) if isinstance(outputs, str) else tuple(outputs) \
                if isinstance(outputs, Sequence) else outputs
            if not isinstance(outputs, tuple) or not outputs or \
                    not all(isinstance(n, str) and n in self._output_set for n in outputs):
                return None, 1  # Engine.run says what is wrong
        rows, shapes = -1, []
        for name, dtype, rank, fixed in self._specs:
            a = feeds.get(name)
            if type(a) is not np.ndarray or a.dtype != dtype or a.ndim != rank:
                return None, 1
            shape = a.shape
            if rows >= 0 and shape[0] != rows:
                return None, 1
            for i, d in fixed:
                if shape[i] != d:
                    return None, 1
            rows = shape[0]
            shapes.append(shape[1:])
        if rows < 1 or rows > self._max_rows:
            return None, max(rows, 1)
        return (outputs, tuple(shapes)), rows

    def _enqueue(self, request: _Request) -> None:
        self._queue.append(request)
        self._count(request, +1)
        self._wake.set()

    def _count(self, request: _Request, sign: int) -> None:
        self._queued_rows += sign * request.rows
        if request.key is not None:
            left = self._rows_by_key.get(request.key, 0) + sign * request.rows
            if left:
                self._rows_by_key[request.key] = left
            else:  # a key per shape seen would pile up otherwise (e.g. sequence lengths)
                del self._rows_by_key[request.key]

    # -- the worker ----------------------------------------------------------------------------
    def _bind(self) -> asyncio.AbstractEventLoop:
        """The running loop, the worker started on it on first use."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                raise InvalidArgument("a Batcher serves one event loop; this one was started on another")
            self._loop, self._wake = loop, asyncio.Event()
            self._slots = asyncio.Semaphore(self.max_concurrent)
            self._queue.clear()
            self._rows_by_key.clear()
            self._queued_rows = self._running_rows = 0
            self._worker = loop.create_task(self._work())
        return loop

    async def _work(self) -> None:
        """Form batches and start them, one per free slot, until closed and drained."""
        try:
            while self._queue or not self._closing:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._slots.acquire()
                started = False
                try:
                    await self._gather()
                    batch = self._take()
                    if batch:
                        task = asyncio.get_running_loop().create_task(self._execute(batch))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                        started = True
                finally:
                    if not started:
                        self._slots.release()
            for _ in range(self.max_concurrent):  # every running batch has finished
                await self._slots.acquire()
        except BaseException as e:
            while self._queue:
                request = self._queue.popleft()
                if not request.future.done():
                    request.future.set_exception(
                        BatcherClosed("the batcher stopped before running this request")
                        if isinstance(e, asyncio.CancelledError) else e)
            raise
        finally:
            self._executor.shutdown(wait=False)

    async def _gather(self) -> None:
        """Wait for more requests when that pays (rule 3 of the module's docstring)."""
        if self._delay_s <= 0:
            return
        while not self._closing and self._queue:
            head = self._queue[0]
            if head.future.done() or head.key is None:
                return
            have = self._rows_by_key.get(head.key, 0)
            if have >= self._target(head.rows) or self._load < 1:
                return
            remaining = head.arrived + self._delay_s - time.perf_counter()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                if self._rows_by_key.get(head.key, 0) <= have:
                    self._load = 0.0  # waited for nothing: the load is gone
                return

    def _target(self, rows: int) -> int:
        """The rows worth waiting for: about as many as arrivals have been finding in the batcher."""
        expected = min(self._max_rows, max(rows, math.ceil(self._load) + 1))
        if self._preferred:
            below = [p for p in self._preferred if p <= expected]
            expected = max(below) if below else min(self._preferred)
        return expected

    def _take(self) -> list[_Request]:
        """The next batch: the oldest live request and the compatible ones after it (rule 1)."""
        queue, rest = self._queue, deque[_Request]()
        while queue and queue[0].future.done():
            self._count(queue.popleft(), -1)
        if not queue:
            return []
        head = queue.popleft()
        self._count(head, -1)
        batch, rows = [head], head.rows
        if head.key is None:  # runs alone: with the ones after it that do too, one hand-over for all
            while queue and queue[0].key is None and len(batch) < GROUP_MAX \
                    and 0 < self._alone_s * (len(batch) + 1) <= GROUP_BUDGET_S:
                request = queue.popleft()
                self._count(request, -1)
                if not request.future.done():
                    batch.append(request)
            rest.extend(queue)
            self._queue = rest
            return batch
        while queue and rows < self._max_rows:
            request = queue.popleft()
            if request.future.done():
                self._count(request, -1)
            elif request.key == head.key and rows + request.rows <= self._max_rows:
                batch.append(request)
                rows += request.rows
                self._count(request, -1)
            else:
                rest.append(request)
        rest.extend(queue)
        if self._preferred and len(batch) > 1 and rows not in self._preferred:
            cuts = [i for i, total in enumerate(np.cumsum([r.rows for r in batch]), 1)
                    if int(total) in self._preferred]
            if cuts:
                for request in reversed(batch[cuts[-1]:]):
                    rest.appendleft(request)
                    self._count(request, +1)
                batch = batch[:cuts[-1]]
        self._queue = rest
        return batch

    async def _execute(self, batch: list[_Request]) -> None:
        """Run one batch — or a group of requests that each run alone — on the executor (the slot
        is already held; released here) and answer each request."""
        now = time.perf_counter()
        for request in batch:
            request.queue_s = now - request.arrived
        rows = sum(r.rows for r in batch)
        merged = batch[0].key is not None
        self._running_rows += rows
        try:
            loop = asyncio.get_running_loop()
            outcomes, times = await loop.run_in_executor(self._executor, self._runner, batch)
        except asyncio.CancelledError:
            for request in batch:
                request.future.cancel()
            raise
        except Exception as e:  # the executor refused (shut down): nothing ran
            outcomes, times = [e] * len(batch), [0.0] * len(batch)
        finally:
            self._running_rows -= rows
            self._slots.release()
        per_run = times[0] if merged else sum(times) / len(times)
        self._batch_s += COMPUTE_SMOOTHING * (per_run - self._batch_s)
        if not merged:
            self._alone_s += COMPUTE_SMOOTHING * (per_run - self._alone_s)
        for request, outcome, seconds in zip(batch, outcomes, times):
            if request.future.done():
                continue
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            elif merged:
                request.future.set_result((outcome, RequestStats(request.queue_s, seconds, rows, len(batch))))
            else:
                request.future.set_result((outcome, RequestStats(request.queue_s, seconds, request.rows, 1)))
        if self._on_batch is not None:
            ran = [BatchStats(rows, len(batch), tuple(r.queue_s for r in batch), times[0])] if merged else \
                [BatchStats(r.rows, 1, (r.queue_s,), t) for r, t in zip(batch, times)]
            for stats in ran:
                try:
                    self._on_batch(stats)
                except Exception:
                    log.exception("on_batch callback failed")

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop taking requests; those queued still run (``aclose`` waits for them). Safe from any
        thread."""
        self._closing = True
        loop = self._loop
        if loop is None or loop.is_closed():
            self._executor.shutdown(wait=False)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def aclose(self) -> None:
        """``close``, then wait until every queued and running request has its answer."""
        self.close()
        if self._worker is not None and self._loop is asyncio.get_running_loop():
            await asyncio.shield(self._worker)

    def __repr__(self) -> str:
        how = "unbatched" if self.batching is None else (
            f"max_batch_size={self._max_rows}, max_queue_delay_ms={self._delay_s * 1000:g}"
            + (f", preferred={list(self._preferred)}" if self._preferred else ""))
        state = " (closed)" if self._closing else ""
        return (f"<deploykit Batcher{state} {self.name}: {how}, max_queue={self.max_queue}, "
                f"max_concurrent={self.max_concurrent}, {len(self._queue)} queued>")


def _check_batching(batching: Batching | None) -> tuple[int, float, frozenset[int]]:
    """(max rows, delay in seconds, preferred sizes) of a config; ``InvalidArgument`` for bad ones."""
    if batching is None:
        return 1, 0.0, frozenset()
    rows = check_number(batching.max_batch_size, "batching.max_batch_size", minimum=1, integer=True)
    delay = check_number(batching.max_queue_delay_ms, "batching.max_queue_delay_ms", minimum=0)
    preferred = frozenset(check_number(p, "batching.preferred_batch_sizes", minimum=1, integer=True)
                          for p in batching.preferred_batch_sizes)
    if any(p > rows for p in preferred):
        raise InvalidArgument(f"batching.preferred_batch_sizes {sorted(preferred)} must all be <= "
                              f"max_batch_size ({rows})")
    return int(rows), float(delay) / 1000, preferred


__all__ = ["BatchStats", "Batcher", "BatcherClosed", "QueueFull", "RequestStats"]
