"""What `deploykit serve`'s metrics cost a request, beside prometheus_client used the usual way.

One request's bookkeeping as the server does it: the in-flight gauge up and down, one count by
outcome, and three latency histograms (total, queued, computing) under the model / version /
protocol labels. deploykit's ``Metrics`` against the same series written with prometheus_client's
labelled ``Counter``, ``Histogram`` and ``Gauge`` (``.labels(...).observe``), as a hand-written
server does. Both in one process, rounds alternating, the median of each round's per-request time.

    python benchmarks/metrics_overhead.py [--rounds 15] [--requests 20000]
Target: a few microseconds a request, no more than prometheus_client's own (it runs on every
request, on the event loop's thread).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import prometheus_client

from deploykit.hostinfo import probe_cpu
from deploykit.serve.metrics import LATENCY_BUCKETS, Metrics


def deploykit_request() -> Callable[[], None]:
    m = Metrics(process=False)

    def request() -> None:
        with m.inflight("digits"):
            m.observe_request("digits", 1, "kserve", "ok", 0.0004, 0.00005, 0.0002)
    return request


def prometheus_request() -> Callable[[], None]:
    registry = prometheus_client.CollectorRegistry()
    labels = ["model", "version", "protocol"]
    requests = prometheus_client.Counter("requests", "requests", [*labels, "outcome"], registry=registry)
    total, queue, compute = (prometheus_client.Histogram(name, name, labels, buckets=LATENCY_BUCKETS,
                                                         registry=registry)
                             for name in ("total", "queue", "compute"))
    inflight = prometheus_client.Gauge("inflight", "inflight", ["model"], registry=registry)

    def request() -> None:
        with inflight.labels("digits").track_inprogress():
            requests.labels("digits", "1", "kserve", "ok").inc()
            total.labels("digits", "1", "kserve").observe(0.0004)
            queue.labels("digits", "1", "kserve").observe(0.00005)
            compute.labels("digits", "1", "kserve").observe(0.0002)
    return request


def per_request(request: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        request()
    return (time.perf_counter() - start) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--requests", type=int, default=20000)
    args = ap.parse_args()
    cpu = probe_cpu()
    print(f"machine: {cpu.model}, {cpu.logical_cores} CPUs, Python {platform.python_version()}, "
          f"prometheus_client {importlib.metadata.version('prometheus_client')}")
    variants = {"deploykit Metrics": deploykit_request(), "prometheus_client": prometheus_request()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            times[name].append(per_request(variants[name], args.requests))
    base = statistics.median(times["prometheus_client"])
    print(f"\n{args.rounds} rounds of {args.requests} requests, median µs a request (range):")
    print("| variant | µs / request | range | x prometheus_client time |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1e6:.2f} | {min(values) * 1e6:.2f}-{max(values) * 1e6:.2f} | "
              f"{median / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
