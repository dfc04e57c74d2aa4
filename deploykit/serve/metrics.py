"""Prometheus metrics of one server: requests by outcome, latency (queue, compute, total), batch sizes,
requests in flight, model loads.

Each ``Metrics`` has its own registry (never prometheus_client's global one), so several apps and the
tests live in one process. The hot path is plain counters under one uncontended lock per label set,
cached on first use; the Prometheus families are built only when ``/metrics`` is scraped. That costs
about 1 µs a request, where prometheus_client's own Counter and Histograms cost about 5.

A ``MetricsSink`` added with ``add_sink`` is fed the same observations, under the same capped labels:
on Ray Serve, Ray's own metrics, so that one scrape counts every replica (``integrations/rayserve``).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ..errors import InvalidArgument

#: The ``outcome`` label: ``ok``, ``client_error`` (4xx), ``server_error`` (5xx), ``rejected`` (the
#: server declined to run it: queue full, not ready).
OUTCOMES = ("ok", "client_error", "server_error", "rejected")
#: Latency buckets in seconds, 0.1 ms .. 10 s.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)
#: Distinct label sets kept per family; past it, new ones are counted under ``OVERFLOW`` so that
#: names a client makes up cannot grow memory or the scrape without bound.
MAX_LABEL_SETS = 1000
OVERFLOW = "_other"

_OUTCOME_INDEX = {name: i for i, name in enumerate(OUTCOMES)}
_REQUEST_LABELS = ["model", "version", "protocol"]


def outcome_of(status: int) -> str:
    """The ``outcome`` for an HTTP status: < 400 ok; 429 and 503 rejected; other 4xx client_error;
    other 5xx server_error (500 backend failure, 504 deadline)."""
    if status < 400:
        return "ok"
    if status in (429, 503):
        return "rejected"
    return "client_error" if status < 500 else "server_error"


class _Histogram:
    """Bucket counts (not cumulative) and the sum; the owner holds the lock."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds, self.counts, self.total = bounds, [0] * (len(bounds) + 1), 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le is inclusive: value <= bound
        self.total += value

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` pairs ending at ``+Inf``, and the sum."""
        buckets, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            running += count
            buckets.append((floatToGoString(bound), float(running)))
        return buckets, self.total


class _RequestSeries:
    """Everything one (model, version, protocol) records per request."""

    __slots__ = ("compute", "labels", "lock", "outcomes", "queue", "total")

    def __init__(self, labels: list[str]) -> None:
        self.labels, self.lock = labels, threading.Lock()
        self.outcomes = [0] * len(OUTCOMES)
        self.total, self.queue, self.compute = (_Histogram(LATENCY_BUCKETS) for _ in range(3))


class _InFlight:
    """``with metrics.inflight(model):`` — one per model, reentrant, shared by every request."""

    __slots__ = ("count", "lock")

    def __init__(self) -> None:
        self.count, self.lock = 0, threading.Lock()

    def __enter__(self) -> None:
        with self.lock:
            self.count += 1

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.count -= 1


class MetricsSink(Protocol):
    """Another metrics system fed what ``Metrics`` records, labels as recorded (capped at
    ``MAX_LABEL_SETS``): requests by (model, version, protocol), batches and loads by (model, version)."""

    def request(self, labels: Sequence[str], outcome: str, total_s: float, queue_s: float | None,
                compute_s: float | None) -> None: ...

    def batch(self, labels: Sequence[str], size: int) -> None: ...

    def load(self, labels: Sequence[str], seconds: float, ok: bool) -> None: ...


class Metrics:
    """The server's metrics over its own ``registry``; ``process=True`` adds prometheus_client's
    process collector (CPU seconds, resident memory, open files) to it."""

    def __init__(self, *, namespace: str = "deploykit", process: bool = True) -> None:
        self.namespace = namespace
        self.registry = CollectorRegistry(auto_describe=False)
        self._requests: dict[Hashable, _RequestSeries] = {}
        self._batches: dict[Hashable, tuple[list[str], _Histogram]] = {}
        self._inflight: dict[str, _InFlight] = {}
        self._load_seconds: dict[tuple[str, str], float] = {}
        self._load_failures: dict[str, int] = {}
        self._lock = threading.Lock()  # guards the dicts' growth, the load figures and batches
        self._sinks: list[MetricsSink] = []
        self.registry.register(_Families(self))
        if process:
            ProcessCollector(registry=self.registry)

    # -- the hot path ----------------------------------------------------------------------------
    def observe_request(self, model: str, version: str | int, protocol: str, outcome: str, total_s: float,
                        queue_s: float | None = None, compute_s: float | None = None) -> None:
        """Count one request by ``outcome`` (see ``OUTCOMES``, ``outcome_of``) with its latencies in
        seconds: total, and where known the time queued and the time computing."""
        series = self._requests.get((model, version, protocol))
        if series is None:
            series = self._new_request_series(model, version, protocol)
        index = _OUTCOME_INDEX.get(outcome)
        if index is None:
            raise InvalidArgument(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        with series.lock:
            series.outcomes[index] += 1
            series.total.observe(total_s)
            if queue_s is not None:
                series.queue.observe(queue_s)
            if compute_s is not None:
                series.compute.observe(compute_s)
        for sink in self._sinks:
            sink.request(series.labels, outcome, total_s, queue_s, compute_s)

    def observe_batch(self, model: str, version: str | int, size: int) -> None:
        """One batch of ``size`` requests (or rows) run together."""
        entry = self._batches.get((model, version))
        with self._lock:
            if entry is None:
                entry = self._batches.get((model, version)) or self._new_entry(
                    self._batches, (model, version), lambda labels: (labels, _Histogram(BATCH_BUCKETS)),
                    [model, str(version)])
            entry[1].observe(size)
        for sink in self._sinks:
            sink.batch(entry[0], size)

    def inflight(self, model: str) -> _InFlight:
        """A context manager counting ``model``'s requests in flight (``with metrics.inflight(m):``)."""
        gauge = self._inflight.get(model)
        if gauge is None:
            with self._lock:
                gauge = self._inflight.get(model) or self._new_entry(
                    self._inflight, model, lambda _: _InFlight(), [model])
        return gauge

    # -- lifecycle -------------------------------------------------------------------------------
    def observe_load(self, model: str, version: str | int, seconds: float, ok: bool) -> None:
        """A load (with warm-up) of ``model`` ``version`` that took ``seconds``: its time when it
        succeeded, one more failure of ``model`` when not."""
        with self._lock:
            if ok:
                self._load_seconds[(model, str(version))] = seconds
            else:
                self._load_failures[model] = self._load_failures.get(model, 0) + 1
        for sink in self._sinks:
            sink.load([model, str(version)], seconds, ok)

    def add_sink(self, sink: MetricsSink) -> None:
        """Feed ``sink`` every observation from now on (an error it raises reaches the caller: a
        sink must not raise)."""
        self._sinks.append(sink)

    def forget(self, model: str, version: str | int) -> None:
        """Drop the series of an unloaded ``version`` so that hot swaps do not pile them up."""
        label = str(version)
        with self._lock:
            for table in (self._requests, self._batches):
                for key in [k for k in table if isinstance(k, tuple) and k[0] == model
                            and str(k[1]) == label]:
                    del table[key]
            self._load_seconds.pop((model, label), None)

    # -- exposition ------------------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The Prometheus text exposition (``CONTENT_TYPE_LATEST``) of every family."""
        return generate_latest(self.registry)

    # -- helpers ---------------------------------------------------------------------------------
    def _new_request_series(self, model: str, version: str | int, protocol: str) -> _RequestSeries:
        with self._lock:
            key = (model, version, protocol)
            return self._requests.get(key) or self._new_entry(
                self._requests, key, _RequestSeries, [model, str(version), protocol])

    def _new_entry(self, table: dict[Any, Any], key: Hashable, make: Any, labels: list[str]) -> Any:
        """Add ``make(labels)`` under ``key`` (lock held); past ``MAX_LABEL_SETS``, the overflow entry."""
        if len(table) >= MAX_LABEL_SETS:
            key = (OVERFLOW,) * len(labels) if isinstance(key, tuple) else OVERFLOW
            labels = [OVERFLOW] * len(labels)
            if key in table:
                return table[key]
        entry = table[key] = make(labels)
        return entry

    def _families(self) -> Iterator[Metric]:
        """Every family, from a snapshot taken under the locks."""
        ns = self.namespace
        requests = CounterMetricFamily(f"{ns}_requests", "Requests by model, version, protocol and "
                                       "outcome.", labels=[*_REQUEST_LABELS, "outcome"])
        latency = {part: HistogramMetricFamily(f"{ns}_request_{part}_seconds", doc, labels=_REQUEST_LABELS)
                   for part, doc in (("duration", "Request latency, from the first byte read to the "
                                                  "answer, in seconds."),
                                     ("queue", "Time a request waited for its model, in seconds."),
                                     ("compute", "Time a request's inference ran, in seconds."))}
        with self._lock:
            every = list(self._requests.values())
        for series in every:
            with series.lock:
                outcomes = list(series.outcomes)
                snaps = {"duration": series.total.snapshot(), "queue": series.queue.snapshot(),
                         "compute": series.compute.snapshot()}
            for outcome, count in zip(OUTCOMES, outcomes):
                requests.add_metric([*series.labels, outcome], count)
            for part, (buckets, total) in snaps.items():
                latency[part].add_metric(series.labels, buckets, total)
        yield requests
        yield from latency.values()
        batch = HistogramMetricFamily(f"{ns}_batch_size", "Requests run together in one batch.",
                                      labels=["model", "version"])
        inflight = GaugeMetricFamily(f"{ns}_requests_in_flight", "Requests being answered, by model.",
                                     labels=["model"])
        loads = GaugeMetricFamily(f"{ns}_model_load_seconds", "Time the last load (with warm-up) of "
                                  "each served version took, in seconds.", labels=["model", "version"])
        failures = CounterMetricFamily(f"{ns}_model_load_failures", "Model loads that failed.",
                                       labels=["model"])
        with self._lock:
            batches = [(labels, *histogram.snapshot()) for labels, histogram in self._batches.values()]
            gauges = [(model, gauge.count) for model, gauge in self._inflight.items()]
            load_seconds, load_failures = dict(self._load_seconds), dict(self._load_failures)
        for labels, buckets, total in batches:
            batch.add_metric(labels, buckets, total)
        for model, count in gauges:
            inflight.add_metric([model], count)
        for (model, version), seconds in load_seconds.items():
            loads.add_metric([model, version], seconds)
        for model, count in load_failures.items():
            failures.add_metric([model], count)
        yield from (batch, inflight, loads, failures)


class _Families(Collector):
    """The registry's view of one ``Metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics._families())


#: The exposition's Content-Type.
CONTENT_TYPE = CONTENT_TYPE_LATEST

__all__ = ["BATCH_BUCKETS", "CONTENT_TYPE", "LATENCY_BUCKETS", "MAX_LABEL_SETS", "OUTCOMES", "OVERFLOW",
           "Metrics", "MetricsSink", "outcome_of"]
