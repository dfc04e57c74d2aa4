"""The data plane: which models and versions are served, whether they are ready, admission and
inference — no HTTP here (the endpoints translate), no protocol inside the Engine.

Each served version is ``instances`` Engines (threads split so that instances x threads fits the
CPUs this process may use; one thread for a model whose warm run takes under ``SMALL_RUN_S``),
loaded and warmed up (inference on made-up inputs) before it takes traffic. Inference runs off the
event loop, on the least busy instance's own thread (its ``Batcher``: a queue that merges requests
when the model's config asks for dynamic batching); a version admits at most ``max_queue`` requests
at once (in flight or waiting), beyond which ``QueueFull`` (503 + Retry-After). ``reload`` swaps
versions atomically: new ones are loaded and warm before they are published, old ones finish their
requests before their engines are closed. Counters live on the event loop's thread; loading runs in
worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import Engine
from ..errors import DeployKitError
from ..hostinfo import usable_cpus
from ..loading import load
from ..spec import TensorSpec
from ..synth import synthesize
from .batching import Batcher, BatchStats
from .metrics import Metrics
from .preprocessing import ImageInput
from .repository import ModelEntry, Repository, scan
from .status import ModelNotReady, QueueFull, UnknownModel

log = logging.getLogger("deploykit.serve")

#: Requests one instance admits at once (running or waiting) before the version answers 503.
MAX_QUEUE_PER_INSTANCE = 64
#: Why nothing is served when the models were never loaded: an ASGI app loads them at its startup,
#: which a parent app's mount (Starlette, FastAPI) does not pass on.
NOT_STARTED = ("the models are not loaded: the app's startup (ASGI lifespan) has not run; a parent app "
               "that mounts it runs it in its own lifespan: `async with app.lifespan(): yield` "
               "(docs/serving.md)")
#: A model whose warm run is shorter than this gets one intra-op thread per instance (unless its
#: config says ``threads``): on digits (20 µs a run) ORT's second thread saved nothing and its
#: spinning took ~0.3 ms of CPU per request from the event loop; a 5 ms CNN gains 1.4x from two.
SMALL_RUN_S = 0.001
#: Timed warm runs at load (stopping early once two are over ``SMALL_RUN_S``).
WARM_RUNS = 5


@dataclass
class ServedVersion:
    """One version of one model, loaded: its engines (instances), whether it takes traffic, and
    how many requests it holds."""

    name: str
    version: int
    engines: list[Engine]
    max_queue: int
    #: one per engine: its queue and thread, merging requests when the model's config asks for
    #: dynamic batching (else each request runs alone, in turn)
    batchers: list[Batcher] = field(default_factory=list)
    #: the input a preprocessing pipeline feeds from pixels (the model config's ``preprocess``)
    image: ImageInput | None = None
    ready: bool = True
    pending: int = 0
    busy: list[int] = field(default_factory=list)
    _idle: asyncio.Event | None = None

    def __post_init__(self) -> None:
        self.busy = [0] * len(self.engines)

    @property
    def engine(self) -> Engine:
        """The first instance (the specs and metadata are the same on every one)."""
        return self.engines[0]

    @property
    def inputs(self) -> list[TensorSpec]:
        """The inputs as clients send them (a preprocessed one as pixels)."""
        inputs = list(self.engine.inputs)
        return self.image.presented(inputs) if self.image is not None else inputs

    def admit(self) -> int:
        """Count one request in (``QueueFull`` when the version holds ``max_queue`` already) and
        return the least busy instance's index; ``release(index)`` when it is answered."""
        if self.pending >= self.max_queue:
            raise QueueFull(f"model {self.name!r} version {self.version} has {self.pending} requests "
                            f"queued or running (its limit); retry shortly", retry_after=1.0)
        busy = self.busy
        index = 0 if len(busy) == 1 else min(range(len(busy)), key=busy.__getitem__)
        self.pending += 1
        busy[index] += 1
        return index

    def release(self, index: int) -> None:
        self.pending -= 1
        self.busy[index] -= 1
        if self.pending == 0 and self._idle is not None:
            self._idle.set()

    async def drained(self) -> None:
        """Wait until no request runs on this version (after it stopped taking new ones)."""
        if self.pending:
            self._idle = asyncio.Event()
            await self._idle.wait()

    async def run(self, index: int, feeds: dict[str, Any],
                  outputs: list[str] | None) -> tuple[dict[str, np.ndarray], float, float]:
        """(outputs, queue seconds, compute seconds) of one request on instance ``index``."""
        if self.image is not None:
            feeds = await self.image.apply(feeds)
        result, stats = await self.batchers[index].infer_timed(feeds, outputs)
        return result, stats.queue_s, stats.compute_s

    def close(self) -> None:
        self.ready = False
        for batcher in self.batchers:
            batcher.close()
        if self.image is not None:
            self.image.close()
        for engine in self.engines:
            engine.close()


class DataPlane:
    """The models of one repository, loaded by ``load_all`` and looked up by name and version."""

    def __init__(self, repository: str | Path, *, max_queue: int | None = None,
                 metrics: Metrics | None = None, cpus: int | None = None) -> None:
        self.source = repository
        #: CPUs the instances' threads share (default: those this process may use)
        self.cpus = cpus
        self.metrics = metrics
        self.repository: Repository = scan(repository)
        self._max_queue = max_queue
        self._models: dict[str, dict[int, ServedVersion]] = {}
        self._failed: dict[str, str] = {}
        self.draining = False
        self._unloaded: set[str] = set()
        self._reconciling: asyncio.Lock | None = None  # made on the loop that first reconciles
        #: (model, version, seconds, ok) per load, for whoever keeps metrics
        self.loads: list[tuple[str, int, float, bool]] = []
        #: inferences started and finished (with a result or an error): equal once drained
        self.started = self.finished = 0
        self._loaded_once = False  # load_all has run (an app's startup runs it)

    # -- lifecycle -----------------------------------------------------------------------------
    def load_all(self) -> None:
        """Load and warm up every served version of every model; a version that fails is kept out
        (``failures`` says why) while the others serve. Models loaded already are left as they are
        (a Ray Serve replica loads before its app starts)."""
        self._loaded_once = True
        for name, entry in self.repository.models.items():
            if name in self._models:
                continue
            loaded = {v: s for v in entry.served_versions() if (s := self._load(entry, v)) is not None}
            self._models[name] = loaded

    def _load(self, entry: ModelEntry, version: int) -> ServedVersion | None:
        config = entry.config
        artifacts = [str(p) for p in entry.versions[version].artifacts]
        model: Any = artifacts[0] if len(artifacts) == 1 else artifacts
        instances = config.instances
        cpus = self.cpus or usable_cpus()
        threads = config.threads if config.threads is not None else max(1, cpus // instances)
        start = time.perf_counter()
        engines: list[Engine] = []
        image = None
        try:
            for _ in range(instances):
                engines.append(load(model, config.backend, threads=threads, **dict(config.options)))
                run_s = _warm_up(engines[-1], entry.name, version)
                if len(engines) == 1 and config.threads is None and threads > 1 and run_s is not None \
                        and run_s < SMALL_RUN_S:
                    log.info("model %s version %s: a run takes %.3f ms; one intra-op thread per instance "
                             "(a thread pool costs more than it saves at that size)", entry.name, version,
                             run_s * 1e3)
                    engines.pop().close()
                    threads = 1
                    engines.append(load(model, config.backend, threads=1, **dict(config.options)))
                    _warm_up(engines[-1], entry.name, version)
            if config.preprocess is not None:
                image = ImageInput(config.preprocess.pipeline, engines[0], config.preprocess.input)
            elif engines[0].pipeline is not None:  # a bundle's own preprocessing, into its first input
                image = ImageInput(engines[0].pipeline, engines[0], engines[0].inputs[0].name)
        except DeployKitError as e:
            for engine in engines:
                engine.close()
            self._failed[f"{entry.name}/{version}"] = str(e)
            self._observe_load(entry.name, version, time.perf_counter() - start, False)
            log.error("model %s version %s failed to load: %s", entry.name, version, e)
            return None
        self._failed.pop(f"{entry.name}/{version}", None)
        self._observe_load(entry.name, version, time.perf_counter() - start, True)
        log.info("model %s version %s ready: %d instance(s) on %s (%s), %d thread(s) each", entry.name,
                 version, instances, engines[0].backend, engines[0].device, threads)
        queue = self._max_queue if self._max_queue is not None else MAX_QUEUE_PER_INSTANCE * instances
        # one queue and thread per instance, batching or not: measured on digits at 32 clients, the
        # loop's default executor (several threads contending for one engine) gave 0.5x the throughput
        observer = self._batch_observer(entry.name, version) if config.batching is not None else None
        batchers = [Batcher(engine, config.batching, max_queue=queue, name=f"model {entry.name!r} version "
                            f"{version}", on_batch=observer) for engine in engines]
        return ServedVersion(entry.name, version, engines, queue, batchers, image)

    def _observe_load(self, name: str, version: int, seconds: float, ok: bool) -> None:
        self.loads.append((name, version, seconds, ok))
        if self.metrics is not None:
            self.metrics.observe_load(name, version, seconds, ok)

    def _batch_observer(self, name: str, version: int) -> Any:
        metrics = self.metrics
        if metrics is None:
            return None

        def observe(stats: BatchStats) -> None:
            metrics.observe_batch(name, version, stats.size)
        return observe

    async def reload(self, only: str | None = None) -> dict[str, list[int]]:
        """Scan the repository again and serve what it now says (all models, or ``only`` that one,
        which ``unload`` had taken out): new versions are loaded and warm before they are published
        (one atomic swap per model), versions no longer served stop taking requests, finish the ones
        they hold, then release their engines. Returns model -> versions served."""
        loop = asyncio.get_running_loop()
        fresh = await loop.run_in_executor(None, scan, self.source)
        if only is not None:
            if only not in fresh.models:
                raise UnknownModel(f"no model {only!r} in the repository; it has: "
                                   f"{', '.join(sorted(fresh.models)) or '(none)'}")
            self._unloaded.discard(only)
        self.repository = fresh
        names = {only} if only is not None else set(self._models) | set(fresh.models)
        await self._reconcile(fresh, names - self._unloaded)
        return {name: sorted(versions) for name, versions in self._models.items()}

    async def unload(self, name: str) -> None:
        """Stop serving model ``name`` (every version finishes its requests first) until ``reload``."""
        self._entry(name)
        self._unloaded.add(name)
        await self._reconcile(self.repository, {name})

    async def _reconcile(self, fresh: Repository, names: set[str]) -> None:
        """One reconciliation at a time (the watcher and the repository API may both ask)."""
        if self._reconciling is None:
            self._reconciling = asyncio.Lock()
        async with self._reconciling:
            await self._reconcile_now(fresh, names)

    async def _reconcile_now(self, fresh: Repository, names: set[str]) -> None:
        loop = asyncio.get_running_loop()
        retired: list[ServedVersion] = []
        for name in names:
            current = dict(self._models.get(name, {}))
            entry = None if name in self._unloaded else fresh.models.get(name)
            wanted = set(entry.served_versions()) if entry is not None else set()
            new = {}
            for version in sorted(wanted - set(current)):
                assert entry is not None
                served = await loop.run_in_executor(None, self._load, entry, version)
                if served is not None:
                    new[version] = served
            keep = {v: s for v, s in current.items() if v in wanted}
            retired += [s for v, s in current.items() if v not in wanted]
            self._models[name] = {**keep, **new}  # the swap: one assignment on the loop's thread
            if entry is None:
                self._models.pop(name, None)
        for served in retired:
            served.ready = False
        for served in retired:
            await served.drained()
            for batcher in served.batchers:
                await batcher.aclose()
            await loop.run_in_executor(None, served.close)
            if self.metrics is not None:
                self.metrics.forget(served.name, served.version)
            log.info("model %s version %s unloaded", served.name, served.version)

    def index(self) -> list[dict[str, str]]:
        """Every model version of the repository and its state (READY / UNAVAILABLE), with why."""
        rows = []
        for name, entry in sorted(self.repository.models.items()):
            served = self._models.get(name, {})
            for version in sorted(entry.versions):
                one = served.get(version)
                state = "READY" if one is not None and one.ready else "UNAVAILABLE"
                reason = "" if state == "READY" else ("unloaded" if name in self._unloaded else
                                                     self._failed.get(f"{name}/{version}", "not served"))
                rows.append({"name": name, "version": str(version), "state": state, "reason": reason})
        return rows

    def close(self) -> None:
        """Mark everything not ready and release every engine."""
        models, self._models = self._models, {}
        for versions in models.values():
            for served in versions.values():
                served.close()

    # -- state ---------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True when every served version of every model is loaded and warm (and not draining)."""
        if self.draining:
            return False
        expected = sum(len(e.served_versions()) for n, e in self.repository.models.items()
                       if n not in self._unloaded)
        loaded = [s for versions in self._models.values() for s in versions.values()]
        return len(loaded) == expected and all(s.ready for s in loaded) and bool(self.repository.models)

    @property
    def failures(self) -> dict[str, str]:
        """``name/version`` -> why it failed to load."""
        return dict(self._failed)

    def names(self) -> list[str]:
        return sorted(self.repository.models)

    def versions(self, name: str) -> list[int]:
        return sorted(self._models.get(self._entry(name).name, {}))

    def _entry(self, name: str) -> ModelEntry:
        entry = self.repository.models.get(name)
        if entry is None:
            raise UnknownModel(f"unknown model {name!r}; this server serves: "
                               f"{', '.join(self.names()) or '(none)'}")
        return entry

    def get(self, name: str, version: str | int | None = None) -> ServedVersion:
        """The served version asked for (default: the newest served), ready; else ``UnknownModel``
        (404) or ``ModelNotReady`` (503)."""
        entry = self._entry(name)
        served = self._models.get(name, {})
        if self.draining:
            raise ModelNotReady("the server is shutting down")
        if not self._loaded_once:
            raise ModelNotReady(NOT_STARTED)
        if version is None or version == "":
            ready = [v for v, s in served.items() if s.ready]
            if not ready:
                why = "; ".join(f"{k}: {v}" for k, v in self._failed.items() if k.startswith(f"{name}/"))
                raise ModelNotReady(f"model {name!r} has no version ready" + (f" ({why})" if why else ""))
            return served[max(ready)]
        number = _version_number(version)
        if number not in entry.versions and number not in served:
            raise UnknownModel(f"model {name!r} has no version {version!r}; versions: "
                               f"{', '.join(map(str, sorted(entry.versions))) or '(none)'}")
        one = served.get(number)
        if one is None or not one.ready:
            raise ModelNotReady(f"model {name!r} version {number} is not served (served: "
                                f"{', '.join(map(str, sorted(served))) or 'none'})")
        return one

    # -- inference -----------------------------------------------------------------------------
    async def infer(self, name: str, version: str | int | None, feeds: Mapping[str, Any],
                    outputs: Sequence[str] | None = None) -> Inference:
        """Run one request off the event loop on the least busy instance (through its batcher when
        the model batches): the version that served it, the outputs, the queue and compute time."""
        self.started += 1
        try:
            served = self.get(name, version)
            index = served.admit()
            try:
                wanted = list(outputs) if outputs else None
                if self.metrics is not None:
                    with self.metrics.inflight(name):
                        result, queue_s, compute_s = await served.run(index, dict(feeds), wanted)
                else:
                    result, queue_s, compute_s = await served.run(index, dict(feeds), wanted)
            finally:
                served.release(index)
        finally:
            self.finished += 1
        return Inference(served, result, queue_s, compute_s)


@dataclass(frozen=True)
class Inference:
    """One request's answer: the version that served it, its outputs, where its time went."""

    served: ServedVersion
    outputs: dict[str, np.ndarray]
    queue_s: float
    compute_s: float


def _warm_up(engine: Engine, name: str, version: int) -> float | None:
    """Inference on made-up inputs, so the first request does not pay the first call's costs; the
    fastest warm run's seconds (None when the inputs cannot be made up). The fastest, because a
    stall (another process, a GC pass) only lengthens a run: one slow run must not pick the threads."""
    try:
        feeds = synthesize(engine.inputs).feeds
        engine.run(feeds)
        times: list[float] = []
        for _ in range(WARM_RUNS):
            start = time.perf_counter()
            engine.run(feeds)
            times.append(time.perf_counter() - start)
            if sum(t > SMALL_RUN_S for t in times) == 2:  # not a small model: no need to look closer
                break
    except DeployKitError as e:  # a model whose inputs cannot be made up still serves
        log.warning("model %s version %s: warm-up skipped (%s)", name, version, e)
        return None
    return min(times)


def _version_number(version: str | int) -> int:
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise UnknownModel(f"a model version is a positive integer, got {version!r}") from None
    if number < 1:
        raise UnknownModel(f"a model version is a positive integer, got {version!r}")
    return number


__all__ = ["MAX_QUEUE_PER_INSTANCE", "DataPlane", "Inference", "ServedVersion"]
