"""What a ``Batcher``'s thread does with a hand-over, on the engine: one merged run split back by
rows, or requests run one after the other — each request's result or error, and its seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ..engine import Engine

log = logging.getLogger("deploykit.serve")

Result = dict[str, np.ndarray]
Outcome = dict[str, np.ndarray] | BaseException


class Job(Protocol):
    """One queued request as the runner needs it."""

    feeds: Mapping[str, Any]
    outputs: Any
    key: Any  # None: runs alone
    rows: int


class Runner:
    """Runs hand-overs on ``engine``; ``inputs`` are the names merged along the first axis."""

    def __init__(self, engine: Engine, inputs: Sequence[str], name: str) -> None:
        self.engine, self.inputs, self.name = engine, list(inputs), name
        self._warned_split = False

    def __call__(self, batch: Sequence[Job]) -> tuple[list[Outcome], list[float]]:
        """A merged batch (one run, its time for every request), or a group run one by one."""
        if batch[0].key is None:
            outcomes, times = [], []
            for job in batch:
                start = time.perf_counter()
                outcomes.append(self.alone(job))
                times.append(time.perf_counter() - start)
            return outcomes, times
        start = time.perf_counter()
        merged: list[Outcome] | None = None
        if len(batch) > 1:
            try:
                merged = self.merged(batch)
            except Exception as e:  # find who is at fault: each request alone
                log.debug("a batch of %d requests failed (%s); running them one by one", len(batch), e)
        if merged is None:
            merged = [self.alone(job) for job in batch]
        return merged, [time.perf_counter() - start] * len(batch)

    def alone(self, job: Job) -> Outcome:
        try:
            return self.engine.run(job.feeds, job.outputs)
        except Exception as e:
            return e

    def merged(self, batch: Sequence[Job]) -> list[Outcome] | None:
        """The batch as one run, split back along the first axis; None when an output does not
        have the batch's rows first (then each request runs alone)."""
        feeds = {name: np.concatenate([job.feeds[name] for job in batch]) for name in self.inputs}
        result = self.engine.run(feeds, batch[0].outputs)
        total = sum(job.rows for job in batch)
        for name, a in result.items():
            if a.ndim == 0 or a.shape[0] != total:
                if not self._warned_split:
                    self._warned_split = True
                    log.warning("%s: output %r of a batch of %d rows has shape %s: its first dimension "
                                "is not the batch; such batches run request by request",
                                self.name, name, total, a.shape)
                return None
        outcomes: list[Outcome] = []
        start = 0
        for job in batch:
            stop = start + job.rows
            outcomes.append({k: a[start:stop] for k, a in result.items()})
            start = stop
        return outcomes


__all__ = ["Job", "Outcome", "Result", "Runner"]
