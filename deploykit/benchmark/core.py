"""``dk.bench``: measure a model on backends x batch sizes x concurrency levels, the same way on each.

Four steps, each a function below: check the request (:mod:`.request`); prepare — every backend
loads the model once and runs every batch size once, so anything wrong (numbers, names, batch
sizes the model cannot take, inputs a backend rejects) is found before the first timed call, and
each row's time is known (:mod:`.estimate`); measure the rows; assemble the result.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .. import backends as registry
from .._timing import CLOCK, CLOCK_NAME, MIN_SAMPLES_FOR_P99, Timing, measure
from ..engine import Engine
from ..errors import DeployKitError, InputMismatch
from ..hardware import usable_cpus
from ..loading import load
from ..model import ModelLike
from ..progress import ProgressFn
from ..synth import ValueRange, check_made_up
from .estimate import Cost, RowPlan, announce_overrun, plan_row
from .feeds import Feeds, batch_sizes, describe, make_feeds
from .memory import PeakRSS
from .request import DEFAULT_DURATION, Budget, Request, check_request
from .result import BenchResult, BenchRow


def bench(
    model: ModelLike | Engine,
    backends: str | Sequence[str] | None = None,
    *,
    batch_sizes: int | Sequence[int] | None = None,
    concurrency: int | Sequence[int] = 1,
    duration: float | None = None,
    iterations: int | None = None,
    warmup: int = 5,
    min_samples: int = MIN_SAMPLES_FOR_P99,
    inputs: Mapping[str, Any] | np.ndarray | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    value_ranges: Mapping[str, ValueRange] | None = None,
    threads: int | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    progress: bool | ProgressFn | None = None,
) -> BenchResult:
    """Latency percentiles, throughput, load and first-call time and peak memory of ``model``.

    ``model``: a path/bytes/``onnx.ModelProto`` (loaded afresh for every row, so each row has its
    own cold start), or a loaded :class:`~deploykit.Engine` (measured as it is; no load time).
    ``backends``: a name, a list, ``"all"`` (every installed backend that loads the format) or
    None (the one ``backend="auto"`` picks). ``batch_sizes`` need a dynamic first dimension.
    ``concurrency``: threads calling ``run`` on one engine at once. Each row times calls for
    ``duration`` seconds (default 1) and at least ``min_samples`` calls, or exactly
    ``iterations`` calls; rows that will run well past ``duration`` are announced before the first
    row (``OverrunWarning``). ``inputs`` are used as given (tiled or cut along the first axis for
    other batch sizes); without them inputs are made up (see :mod:`deploykit.synth`: ``shapes``,
    ``dims``, ``value_ranges``, ``seed``). ``threads`` and per-backend ``options`` go to
    ``dk.load``. ``progress``: None (a bar on a terminal or in a notebook), True, False, or a
    ``progress(done, total, label)`` callable. See docs/bench.md for what each figure means.
    """
    request = check_request(model, backends, batch_sizes=batch_sizes, concurrency=concurrency,
                            duration=duration, iterations=iterations, warmup=warmup,
                            min_samples=min_samples, inputs=inputs, shapes=shapes, dims=dims,
                            value_ranges=value_ranges, threads=threads, options=options, seed=seed,
                            progress=progress)
    prepared = _prepare(request)
    announce_overrun(prepared.rows, request.budget)
    rows, memory = _measure_rows(request, prepared)
    return _result(request, prepared, rows, memory)


# -- prepare: load, fit the inputs, run once, estimate ---------------------------------------
@dataclass
class _Prepared:
    """What the checks found: the backends as loaded, the feeds, the rows and their estimates."""

    backends: list[str]
    options: dict[str, dict[str, Any]]
    feeds: Feeds
    rows: list[RowPlan]
    notes: list[str]


def _prepare(request: Request) -> _Prepared:
    """Every backend loads the model and runs every batch once; nothing is timed for the result."""
    engines: list[Engine] = []
    load_s: dict[str, float] = {}
    try:
        names, options, notes = _load_engines(request, engines, load_s)
        specs = engines[0].inputs
        check_made_up(specs, request.shapes, request.dims, request.value_ranges)
        batches = batch_sizes(specs, request.batch_sizes, request.inputs, request.shapes)
        feeds = make_feeds(specs, batches, request.inputs, request.shapes, request.dims,
                           request.value_ranges, request.source, request.seed)
        costs = {(e.backend, b): _trial(e, feeds.by_batch[b], b, feeds.synthesized, request.budget,
                                        load_s.get(e.backend, 0.0))
                 for e in engines for b in batches}
    finally:
        for engine in engines:
            if engine is not request.engine:
                engine.close()
    rows = [plan_row(name, b, c, costs[name, b], request.budget, request.engine is None)
            for name in names for b in batches for c in request.concurrency]
    return _Prepared(names, options, feeds, rows, notes)


def _load_engines(request: Request, engines: list[Engine],
                  load_s: dict[str, float]) -> tuple[list[str], dict[str, dict[str, Any]], list[str]]:
    """Load each backend once (appended to ``engines``, timed into ``load_s``); resolve "auto" to
    what it picks. Returns the backend names, their load options and notes."""
    if request.engine is not None:
        engines.append(request.engine)
        return list(request.backends), {}, []
    assert request.model is not None
    options = dict(request.options)
    names = list(request.backends)
    for name in names:
        engines.append(_timed_load(request, name, options.get(name, {}), load_s))
    notes: list[str] = []
    if names == ["auto"]:  # what auto picked is what gets measured, with its options
        picked = engines[0].backend
        plan = engines[0].plan
        chosen = plan.chosen if plan is not None else None
        load_s[picked] = load_s.pop("auto")
        if options.get(picked):
            engines.pop().close()
            engines.append(_timed_load(request, picked, options[picked], load_s))
        elif chosen is not None:  # the rows reload by name: keep what auto's candidate ran with
            own = registry.backend_class(picked).candidate_options(chosen)
            if own:
                options[picked] = own
        unused = sorted(set(request.options) - {picked})
        if unused:
            notes.append(f"options for {', '.join(unused)} unused: backend='auto' picked {picked}")
        names = [picked]
    return names, options, notes


def _timed_load(request: Request, name: str, options: Mapping[str, Any], load_s: dict[str, float]) -> Engine:
    assert request.model is not None
    t0 = CLOCK()
    engine = load(request.model, backend=name, threads=request.threads, **options)
    load_s[name] = (CLOCK() - t0) * 1e-9
    return engine


def _trial(engine: Engine, feeds: Mapping[str, Any], batch: int, synthesized: bool, budget: Budget,
           load_s: float) -> Cost:
    """Run once (twice when the first call is too slow to ignore); a rejection becomes one clear
    InputMismatch naming backend, batch and shapes. Returns the seconds measured."""
    try:
        first = _timed_call(engine, feeds)
        call = first
        if budget.iterations is None and first * budget.min_samples > budget.duration:
            call = min(first, _timed_call(engine, feeds))  # a warm call, for the row's estimate
    except DeployKitError as e:
        shapes = ", ".join(f"{k}: {describe(v)}" for k, v in feeds.items())
        hint = ("give the sizes and values it needs (shapes=, dims=, value_ranges=) or real "
                "inputs (inputs=)" if synthesized else "check the inputs given")
        raise InputMismatch(f"{engine.backend} rejects the inputs at batch {batch} ({shapes}): {e}. "
                            f"Nothing was measured; {hint}") from e
    return Cost(load_s, first, call)


def _timed_call(engine: Engine, feeds: Mapping[str, Any]) -> float:
    t0 = CLOCK()
    engine.run(dict(feeds))
    return (CLOCK() - t0) * 1e-9


# -- measure ----------------------------------------------------------------------------------
def _measure_rows(request: Request, prepared: _Prepared) -> tuple[list[BenchRow], str]:
    """Each planned row in turn, announced to the progress callback (with its estimate) first."""
    progress = request.progress
    total = len(prepared.rows)
    rows: list[BenchRow] = []
    memory = "unavailable"
    try:
        for i, plan in enumerate(prepared.rows):
            if progress is not None:
                progress(i, total, plan.label)
            row, memory = _measure_row(request, plan, prepared.feeds.by_batch[plan.batch],
                                       prepared.options.get(plan.backend, {}))
            rows.append(row)
    except BaseException:
        if progress is not None:
            progress(total, total, "stopped")
        raise
    if progress is not None:
        progress(total, total, "done")
    return rows, memory


def _measure_row(request: Request, plan: RowPlan, feeds: Mapping[str, Any],
                 options: Mapping[str, Any]) -> tuple[BenchRow, str]:
    """Fresh load (unless an engine was given), first call, then the timed calls; one row."""
    gc.collect()
    feeds = dict(feeds)
    budget = request.budget
    with PeakRSS() as mem:
        load_ms = None
        if request.engine is None:
            assert request.model is not None
            t0 = CLOCK()
            engine = load(request.model, backend=plan.backend, threads=request.threads, **options)
            load_ms = (CLOCK() - t0) * 1e-6
        else:
            engine = request.engine
        try:
            t0 = CLOCK()
            engine.run(feeds)
            first_ms = (CLOCK() - t0) * 1e-6
            timing: Timing = measure(partial(engine.run, feeds), concurrency=plan.concurrency,
                                     warmup=budget.warmup, iterations=budget.iterations,
                                     min_seconds=budget.duration, min_iterations=budget.min_samples)
            info = engine.info
        finally:
            if request.engine is None:
                engine.close()
    providers = info.get("providers")
    row = BenchRow(
        backend=engine.backend, batch=plan.batch, concurrency=plan.concurrency, load_ms=load_ms,
        first_ms=first_ms, **timing.summary_ms(), throughput=timing.throughput,
        samples_per_s=timing.throughput * plan.batch, peak_rss_mb=mem.peak_mib, n=timing.n,
        device=engine.device, threads=info.get("threads"),
        providers=list(providers) if providers else None,
        runtime_version=info.get("version"), latencies=timing.latencies, timed_s=timing.wall)
    return row, mem.method


# -- assemble ---------------------------------------------------------------------------------
def _result(request: Request, prepared: _Prepared, rows: list[BenchRow], memory: str) -> BenchResult:
    budget = request.budget
    feeds = prepared.feeds
    notes = [*feeds.notes, *prepared.notes, *_caveats(rows, budget, request.concurrency)]
    given = request.engine is not None
    method = {"clock": CLOCK_NAME, "warmup": budget.warmup, "min_samples": budget.min_samples,
              "duration_s": None if budget.iterations is not None else budget.duration,
              "iterations": budget.iterations, "budget": budget.describe(),
              "percentiles": "linear interpolation between samples (numpy.percentile)",
              "load": "not measured (engine given)" if given else
                      "wall time of dk.load (parse, check, runtime session) with the runtime already "
                      "imported",
              "memory": _memory_text(memory, given)}
    return BenchResult(model=request.source.label, rows=rows, method=method, inputs=feeds.described,
                       synthesized=feeds.synthesized, representative=feeds.representative,
                       notes=notes, skipped=dict(request.skipped))


def _caveats(rows: list[BenchRow], budget: Budget, levels: list[int]) -> list[str]:
    notes = []
    few = [r for r in rows if r.n < MIN_SAMPLES_FOR_P99]
    if few:
        notes.append(f"{len(few)} row(s) have fewer than {MIN_SAMPLES_FOR_P99} samples (min n="
                     f"{min(r.n for r in few)}): their p99 is close to the max")
    long = [r for r in rows if budget.iterations is None and r.timed_s is not None
            and r.timed_s > 2 * budget.duration and r.timed_s - budget.duration > 1]
    if long:
        worst = max(long, key=lambda r: r.timed_s or 0.0)
        notes.append(f"{len(long)} row(s) timed calls well past duration={budget.duration:g} s to reach "
                     f"min_samples={budget.min_samples} calls (longest: {worst.label}, "
                     f"{worst.timed_s:.1f} s)")
    if max(levels) > 1:
        serial = sorted({r.backend for r in rows if not registry.backend_class(r.backend).thread_safe})
        if serial:
            notes.append(f"{', '.join(serial)} run one call at a time (not thread-safe): "
                         "concurrency > 1 queues calls, it cannot raise throughput")
        cpus = usable_cpus()
        busy = sorted({r.label for r in rows if r.concurrency * (r.threads or 1) > cpus})
        if busy:
            notes.append(f"concurrency x threads exceeds the {cpus} usable CPUs in: "
                         f"{'; '.join(busy)} (threads compete for cores)")
    return notes


def _memory_text(method: str, engine_given: bool) -> str:
    start = "the first call" if engine_given else "loading"
    if method == "VmHWM":
        return (f"peak resident memory of the whole process during the row (load, first call, "
                f"timed calls) minus the RSS just before {start}; the kernel's high-water mark "
                "(VmHWM, reset through /proc/self/clear_refs), so no spike is missed")
    if method == "sampled":
        return (f"peak resident memory of the process minus the RSS before {start}, sampled every "
                "5 ms (the kernel's high-water mark could not be reset): short spikes may be missed")
    return "not measured: needs Linux /proc"


__all__ = ["DEFAULT_DURATION", "bench"]
