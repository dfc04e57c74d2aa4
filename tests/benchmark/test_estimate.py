"""A row's time is known before it starts: slow rows are announced (label and OverrunWarning), never
silently run for minutes. Checked on figures given here and on a real call, never on a clock."""

from __future__ import annotations

import io
import sys
import warnings

import pytest

import deploykit as dk
from deploykit.benchmark import OverrunWarning
from deploykit.benchmark.estimate import LONG_ROW_S, Cost, overrun_message, plan_row
from deploykit.benchmark.request import Budget
from deploykit.demo import MODEL_PATH
from deploykit.errors import DeployKitWarning

pytest.importorskip("onnxruntime", reason="dk.bench is checked on onnxruntime")

#: the numpy backend on det.onnx at batch 8 (issue 12): 2.8 s per call
SLOW = Cost(load_s=0.5, first_s=3.0, call_s=2.8)
FAST = Cost(load_s=0.01, first_s=0.001, call_s=1e-4)


def test_a_slow_row_is_estimated_and_labelled() -> None:
    budget = Budget(warmup=5, duration=0.2, iterations=None, min_samples=100)
    row = plan_row("numpy", 8, 2, SLOW, budget, load=True)
    assert row.calls == 100 and row.over_s == pytest.approx(100 * 2.8 - 0.2)
    assert row.seconds == pytest.approx(0.5 + 3.0 + 5 * 2 * 2.8 + 100 * 2.8)
    assert row.label == "numpy batch=8 concurrency=2 (~312 s: 100 calls at ~2.8 s)"
    message = overrun_message([row, plan_row("numpy", 1, 1, FAST, budget, load=True)], budget)
    assert message is not None
    assert message.startswith("1 of 2 rows need at least min_samples=100 calls and will run well past "
                              "duration=0.2 s: about 312 s in all (longest: numpy batch=8 concurrency=2")
    assert "Lower min_samples (p99 then rests on fewer samples), give iterations=" in message


def test_rows_within_budget_are_quiet() -> None:
    budget = Budget(warmup=5, duration=1.0, iterations=None, min_samples=100)
    rows = [plan_row("onnxruntime", b, c, FAST, budget, load=True) for b in (1, 8) for c in (1, 2)]
    assert all(r.over_s == 0 and r.label == r.name for r in rows)
    assert overrun_message(rows, budget) is None
    # exactly n calls were asked for: no budget to overrun, only a long row's estimate on its label
    exact = Budget(warmup=0, duration=1.0, iterations=10, min_samples=100)
    row = plan_row("numpy", 8, 1, SLOW, exact, load=False)
    assert row.over_s == 0 and row.seconds == pytest.approx(3.0 + 28.0) and row.seconds > LONG_ROW_S
    assert row.label == "numpy batch=8 concurrency=1 (~31.0 s)"
    assert overrun_message([row], exact) is None


def test_the_overrun_is_announced_before_the_first_row() -> None:
    """min_samples far beyond any budget: the warning comes before a row starts (as an error here,
    so nothing runs); the message gives the estimate measured on the real model."""
    calls: list[object] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", OverrunWarning)
        with pytest.raises(OverrunWarning, match=r"1 of 1 rows need at least min_samples=100000000 calls "
                                                 r"and will run well past duration=0.01 s: about .* in all"):
            dk.bench(MODEL_PATH, "onnxruntime", duration=0.01, min_samples=10**8,
                     progress=lambda *a: calls.append(a))
    assert calls == []
    assert issubclass(OverrunWarning, DeployKitWarning)


def test_progress_true_shows_rows_and_false_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    """progress=True was a TypeError ('bool' object is not callable)."""
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    dk.bench(MODEL_PATH, "onnxruntime", batch_sizes=[1, 2], iterations=3, progress=True)
    assert err.getvalue() == ("deploykit bench 1/2: onnxruntime batch=1 concurrency=1\n"
                              "deploykit bench 2/2: onnxruntime batch=2 concurrency=1\n")
    err.truncate(0)
    err.seek(0)
    dk.bench(MODEL_PATH, "onnxruntime", iterations=3, progress=False)
    dk.bench(MODEL_PATH, "onnxruntime", iterations=3)  # None: stderr is no terminal, no notebook
    assert err.getvalue() == ""


def test_a_failing_row_ends_the_bar() -> None:
    calls: list[tuple[int, int, str]] = []

    def progress(done: int, total: int, label: str) -> None:
        calls.append((done, total, label))
        if label.startswith("onnxruntime"):
            raise KeyboardInterrupt  # as a user stopping a long bench

    with pytest.raises(KeyboardInterrupt):
        dk.bench(MODEL_PATH, "onnxruntime", iterations=3, progress=progress)
    assert calls[-1] == (1, 1, "stopped")
