"""How long each row of ``dk.bench`` will take, known before it starts.

Checking the request loads every backend and runs every batch size once (twice when that first
call is slow), so each (backend, batch) comes with measured seconds for a load, a first call and a
warm call. A row's time follows: load + first call + warm-up + the timed calls, where the timed
calls last ``duration`` or, for a slow model, ``min_samples`` calls — which can be far longer
than ``duration``. Such rows are not cut short (their p99 keeps its ``min_samples`` samples):
they are announced before the first row starts, with a :class:`OverrunWarning` and an estimate on
the progress label. The estimate assumes calls do not overlap, so under concurrency it is an upper
bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DeployKitWarning, warn
from .request import Budget

#: A row estimated to take at least this many seconds shows its estimate on the progress label.
LONG_ROW_S = 5.0
#: The bench warns when the rows' timed calls overrun ``duration`` by at least this many seconds
#: in all, and the whole bench takes at least ``WARN_FACTOR`` times what it would within budget.
WARN_OVER_S = 10.0
WARN_FACTOR = 2.0


class OverrunWarning(DeployKitWarning):
    """``dk.bench`` rows will run well past ``duration`` to reach ``min_samples`` calls."""


@dataclass(frozen=True)
class Cost:
    """Seconds measured while checking one backend at one batch size, before any row."""

    load_s: float
    first_s: float
    #: a warm call (the first call again when it was fast enough not to matter)
    call_s: float


@dataclass(frozen=True)
class RowPlan:
    """One row to measure, with its estimated seconds and how far its timed calls overrun."""

    backend: str
    batch: int
    concurrency: int
    seconds: float
    #: seconds the timed calls are expected to run past ``duration`` (0 within budget)
    over_s: float
    call_s: float
    calls: int

    @property
    def name(self) -> str:
        return f"{self.backend} batch={self.batch} concurrency={self.concurrency}"

    @property
    def label(self) -> str:
        """The progress label: the row, and its estimate when it is long."""
        if self.over_s > 0 and self.seconds >= LONG_ROW_S:
            return f"{self.name} (~{_secs(self.seconds)}: {self.calls} calls at ~{_secs(self.call_s)})"
        if self.seconds >= LONG_ROW_S:
            return f"{self.name} (~{_secs(self.seconds)})"
        return self.name


def plan_row(backend: str, batch: int, concurrency: int, cost: Cost, budget: Budget,
             load: bool) -> RowPlan:
    """Estimate one row: load (unless an engine was given), first call, warm-up, timed calls."""
    if budget.iterations is not None:
        calls, timed, over = budget.iterations, budget.iterations * cost.call_s, 0.0
    else:
        calls = budget.min_samples
        timed = max(budget.duration, budget.min_samples * cost.call_s)
        over = timed - budget.duration
    seconds = (cost.load_s if load else 0.0) + cost.first_s \
        + budget.warmup * concurrency * cost.call_s + timed
    return RowPlan(backend, batch, concurrency, seconds, over, cost.call_s, calls)


def overrun_message(rows: list[RowPlan], budget: Budget) -> str | None:
    """The warning to give before the first row, or None when the budget roughly holds."""
    over = sum(r.over_s for r in rows)
    total = sum(r.seconds for r in rows)
    if over < WARN_OVER_S or total < WARN_FACTOR * (total - over):
        return None
    late = [r for r in rows if r.over_s > 0]
    worst = max(late, key=lambda r: r.seconds)
    return (f"{len(late)} of {len(rows)} rows need at least min_samples={budget.min_samples} calls and "
            f"will run well past duration={budget.duration:g} s: about {_secs(total)} in all (longest: "
            f"{worst.name}, ~{_secs(worst.seconds)} at ~{_secs(worst.call_s)} per call). Lower "
            "min_samples (p99 then rests on fewer samples), give iterations=, or bench fewer rows")


def announce_overrun(rows: list[RowPlan], budget: Budget) -> None:
    """Warn (:class:`OverrunWarning`) before measuring when the rows will overrun their budget."""
    message = overrun_message(rows, budget)
    if message is not None:
        warn(message, OverrunWarning)


def _secs(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.1f} s"
    return f"{seconds * 1e3:.3g} ms"


__all__ = ["LONG_ROW_S", "WARN_FACTOR", "WARN_OVER_S", "Cost", "OverrunWarning", "RowPlan",
           "announce_overrun", "overrun_message", "plan_row"]
