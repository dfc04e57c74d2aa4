"""dk.bench and `deploykit bench` on real models and runtimes: rows, output forms, errors up front.

These tests check what is measured and how it is reported, never how fast anything is
(speed lives in benchmarks/bench_selfcheck.py). Durations are tiny to keep the suite quick.
"""

from __future__ import annotations

import base64
import csv
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import deploykit as dk
from deploykit._timing import measure, time_calls
from deploykit.benchmark import BenchPlot
from deploykit.benchmark.memory import PeakRSS
from deploykit.benchmark.result import _optional
from deploykit.demo import MODEL_PATH, load_test_data
from tests import models

pytest.importorskip("onnxruntime", reason="dk.bench is checked on onnxruntime and the numpy backend")

REQUIRED = {"backend", "batch", "concurrency", "load_ms", "first_ms", "p50_ms", "p90_ms", "p99_ms",
            "mean_ms", "throughput", "samples_per_s", "peak_rss_mb", "n"}
QUICK = {"duration": 0.02, "min_samples": 8, "warmup": 1}


@pytest.fixture(scope="module")
def digits_result() -> dk.BenchResult:
    calls: list[tuple[int, int, str]] = []
    result = dk.bench(MODEL_PATH, ["onnxruntime", "numpy"], batch_sizes=[1, 16], concurrency=[1, 2],
                      progress=lambda *a: calls.append(a), **QUICK)
    result.progress_calls = calls  # type: ignore[attr-defined]  # kept for one test below
    return result


def test_rows_and_figures(digits_result: dk.BenchResult) -> None:
    rows = digits_result.to_dicts()
    assert [(r["backend"], r["batch"], r["concurrency"]) for r in rows] == [
        (b, n, c) for b in ("onnxruntime", "numpy") for n in (1, 16) for c in (1, 2)]
    for r in rows:
        assert set(r) >= REQUIRED
        assert r["n"] >= 8 and r["load_ms"] > 0 and r["first_ms"] > 0
        assert r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["min_ms"] <= r["mean_ms"] <= r["max_ms"]
        assert r["samples_per_s"] == pytest.approx(r["throughput"] * r["batch"])
        assert r["peak_rss_mb"] is None or r["peak_rss_mb"] >= 0
        assert r["threads"] >= 1 and r["device"] == "cpu"
    ort_row = rows[0]
    assert ort_row["providers"] == ["CPUExecutionProvider"] and ort_row["runtime_version"]
    # latencies kept per row for the plot; throughput is calls over the wall time they spanned
    row = digits_result.rows[0]
    assert row.latencies.size == row.n
    assert row.throughput <= 1 / row.latencies.min() * row.concurrency
    assert digits_result.synthesized and digits_result.representative
    assert digits_result.inputs == ["images: float32[1,1,8,8]"]
    assert digits_result.progress_calls[0] == (0, 8, "onnxruntime batch=1 concurrency=1")  # type: ignore[attr-defined]
    assert digits_result.progress_calls[-1] == (8, 8, "done")  # type: ignore[attr-defined]


def test_text_html_json_csv(digits_result: dk.BenchResult, tmp_path: Path) -> None:
    text = digits_result.format()
    assert "p50 ms" in text and "samples/s" in text and text.count("\nonnxruntime ") == 4
    assert "warm-up excluded: the first call (first ms) and 1 more per thread" in text
    assert "at least 8 calls per row" in text and "note: peak MiB: peak resident memory" in text
    # min_samples=8 allows rows under 100 samples; those (and only those) are called out
    few = any(r.n < 100 for r in digits_result.rows)
    assert ("fewer than 100 samples" in text) == few
    html = digits_result._repr_html_()
    assert html.count("<tr>") == 1 + 8 and "<th>p99_ms</th>" in html
    data = json.loads(digits_result.to_json(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == data
    assert data["rows"][3]["batch"] == 16 and data["method"]["warmup"] == 1
    digits_result.to_csv(tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 8 and set(table[0]) >= REQUIRED
    assert float(table[2]["p50_ms"]) == pytest.approx(digits_result.rows[2].p50_ms)
    assert table[0]["providers"] == "CPUExecutionProvider" and table[4]["providers"] == ""


def test_to_pandas(digits_result: dk.BenchResult) -> None:
    pd = pytest.importorskip("pandas", reason="to_pandas needs pandas (the 'bench' extra)")
    df = digits_result.to_pandas()
    assert isinstance(df, pd.DataFrame) and df.shape[0] == 8
    assert df.loc[3, "batch"] == 16 and set(df.columns) >= REQUIRED


def test_plot_renders_a_png(digits_result: dk.BenchResult, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="plot needs matplotlib (the 'bench' extra)")
    from PIL import Image

    fig = digits_result.plot()
    out = tmp_path / "bench.png"
    fig.savefig(out, dpi=60)  # the Figure renders with the Agg canvas; no display needed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as img:
        assert img.size == (11 * 60, int(4.2 * 60))
        pixels = np.asarray(img.convert("L"))
    assert pixels.std() > 10  # something was drawn, not a blank canvas
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][:2] == [
        "onnxruntime b=1 c=1", "onnxruntime b=1 c=2"]
    assert len(fig.axes[1].get_lines()) == 4  # one throughput line per (backend, concurrency)


def test_plot_shows_itself_in_a_notebook(digits_result: dk.BenchResult) -> None:
    """Jupyter shows an object through its _repr_*_ hooks: a bare Figure made without pyplot has
    none that work without %matplotlib inline, the BenchPlot has a PNG and an <img>."""
    pytest.importorskip("matplotlib", reason="plot needs matplotlib (the 'bench' extra)")
    from matplotlib.figure import Figure

    plot = digits_result.plot()
    assert isinstance(plot, BenchPlot) and isinstance(plot.figure, Figure)
    assert plot._repr_png_().startswith(b"\x89PNG\r\n\x1a\n")
    html = plot._repr_html_()
    assert html.startswith("<img src='data:image/png;base64,") and "alt='digits.onnx'" in html
    bundle = plot._repr_mimebundle_()
    assert set(bundle) == {"image/png", "text/html", "text/plain"}
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert repr(plot).startswith("<deploykit BenchPlot digits.onnx: .figure is the matplotlib Figure")
    with pytest.raises(AttributeError):
        plot._repr_svg_()  # type: ignore[attr-defined]  # the Figure's private hooks are not passed on


def test_rows_show_themselves(digits_result: dk.BenchResult) -> None:
    row = digits_result.rows[0]
    assert repr(row).startswith("<deploykit BenchRow onnxruntime b=1 c=1: p50 ")
    html = row._repr_html_()
    assert html.count("<tr>") == 2 and "<th>p50_ms</th>" in html
    assert repr(digits_result).startswith("<deploykit.BenchResult ")


def test_missing_optional_dependency_says_what_to_install() -> None:
    with pytest.raises(ImportError, match=r"needs no_such_module_x.*pip install 'deploykit\[bench\]'"):
        _optional("no_such_module_x", "plot()")


def test_all_backends_and_exact_iterations() -> None:
    result = dk.bench(MODEL_PATH, "all", concurrency=[1, 2], iterations=12, warmup=0)
    names = {r.backend for r in result.rows}
    assert {"onnxruntime", "numpy"} <= names
    assert all(r.n == 12 for r in result.rows)
    for name, why in result.skipped.items():
        assert name not in names and why


def test_given_inputs_are_tiled_to_each_batch() -> None:
    images, _ = load_test_data()
    result = dk.bench(MODEL_PATH, "onnxruntime", inputs={"images": images[:3]}, batch_sizes=[2, 8],
                      **QUICK)
    assert not result.synthesized and result.inputs == ["images: float32[2,1,8,8]"]
    assert [r.batch for r in result.rows] == [2, 8]
    assert any("repeated or cut" in n for n in result.notes)
    # a bare array for a one-input model; its own first dimension is the batch
    assert dk.bench(MODEL_PATH, inputs=images[:5], **QUICK).rows[0].batch == 5


def test_engine_given() -> None:
    with dk.load(MODEL_PATH, backend="numpy") as engine:
        result = dk.bench(engine, concurrency=[2], **QUICK)
        assert result.rows[0].backend == "numpy" and result.rows[0].load_ms is None
        assert "not measured (engine given)" in result.method["load"]
        assert not engine.closed  # the caller's engine is left open
        with pytest.raises(dk.InvalidArgument, match="an Engine runs on its own backend"):
            dk.bench(engine, "onnxruntime", **QUICK)
        with pytest.raises(dk.InvalidArgument, match="an Engine given keeps its own"):
            dk.bench(engine, threads=1, **QUICK)
    with pytest.raises(dk.InvalidArgument, match="is closed"):
        dk.bench(engine, **QUICK)


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"backends": "warp"}, dk.UnknownBackend, "unknown backend 'warp'"),
    ({"duration": 0}, dk.InvalidArgument, "duration must be a number > 0, got 0"),
    ({"duration": float("nan")}, dk.InvalidArgument, "duration must be"),
    ({"duration": 1, "iterations": 5}, dk.InvalidArgument, "give duration or iterations, not both"),
    ({"iterations": 0}, dk.InvalidArgument, "iterations must be an int >= 1"),
    ({"concurrency": [1, 0]}, dk.InvalidArgument, "concurrency must be an int >= 1 or a non-empty list"),
    ({"batch_sizes": []}, dk.InvalidArgument, "batch_sizes must be an int >= 1 or a non-empty list"),
    ({"warmup": -1}, dk.InvalidArgument, "warmup must be an int >= 0"),
    ({"shapes": {"images": (1, 1, 9, 8)}}, dk.InvalidArgument,
     r"shapes\['images'\]: \(1, 1, 9, 8\) does not fit input 'images' float32\[N,1,8,8\]: dimension 2 "
     r"must be 8"),
    ({"inputs": {"images": np.zeros((1, 1, 8, 9), np.float32)}}, dk.InputMismatch,
     r"onnxruntime rejects the inputs at batch 1 \(images: float32\[1,1,8,9\]\).*Nothing was measured"),
    ({"options": {"numpy": {}}}, dk.InvalidArgument, "options given for 'numpy', which is not benched"),
])
def test_bad_requests_fail_before_measuring(kwargs: dict, error: type[Exception], pattern: str) -> None:
    calls: list[object] = []
    kwargs = {"backends": "onnxruntime", **kwargs}
    with pytest.raises(error, match=pattern):
        dk.bench(MODEL_PATH, progress=lambda *a: calls.append(a), **kwargs)
    assert calls == []  # no row was started


@pytest.mark.parametrize("backends", ["onnxruntime", None])
def test_options_reach_the_backend(backends: str | None) -> None:
    """Per-backend load options go to dk.load (an unknown one is refused there, before timing),
    also when "auto" picks the backend they name."""
    if backends is None and dk.load(MODEL_PATH).backend != "onnxruntime":
        pytest.skip("auto picks another backend here")
    with pytest.raises(dk.InvalidArgument, match=r"options\['ort'\]: backend 'onnxruntime' takes no "
                                                 r"option\(s\) no_such_option; its options: providers"):
        dk.bench(MODEL_PATH, backends, options={"ort": {"no_such_option": 1}}, **QUICK)
    ok = dk.bench(MODEL_PATH, backends, threads=1, options={"onnxruntime": {
        "graph_optimization_level": "basic", "providers": ["CPUExecutionProvider"]}}, **QUICK)
    assert ok.rows[0].threads == 1 and ok.rows[0].providers == ["CPUExecutionProvider"]


def test_runtime_rejection_is_found_before_measuring(tmp_path: Path) -> None:
    """x[N,6] reshaped to a made-up ``shape`` input: the runtime refuses it in the trial run."""
    calls: list[object] = []
    with pytest.raises(dk.InputMismatch, match=r"rejects the inputs at batch 1.*give the sizes and "
                                               r"values it needs"):
        dk.bench(models.reshape_to(), "onnxruntime", value_ranges={"shape": (5, 6)},
                 progress=lambda *a: calls.append(a), **QUICK)
    assert calls == []
    feeds = {"x": np.ones((2, 6), np.float32), "shape": np.array([3, 4], np.int64)}
    ok = dk.bench(models.reshape_to(), "onnxruntime", inputs=feeds, batch_sizes=[2], **QUICK)
    assert ok.rows[0].n >= 8 and ok.inputs == ["x: float32[2,6]", "shape: int64[2]"]


def test_fixed_batch_model_refuses_other_batch_sizes() -> None:
    with pytest.raises(dk.InvalidArgument, match=r"batch_sizes \[1, 8\]: the model fixes the batch "
                                                  r"\(first\) dimension to 1 \(x: float32\[1,3,4,4\]\)"):
        dk.bench(models.fixed_image(), batch_sizes=[1, 8], **QUICK)
    result = dk.bench(models.fixed_image(), **QUICK)
    assert [r.batch for r in result.rows] == [1]


def test_timing_core_counts_overlapping_calls_once() -> None:
    """Two threads sleeping 20 ms per call: every latency is >= 20 ms, and the wall time is about
    half the summed latencies (the calls overlapped), so throughput counts concurrency. (20 ms, not
    5: a thread scheduled late on a loaded 2-core machine must not eat the margin.)"""
    serial = measure(lambda: time.sleep(0.005), warmup=0, iterations=10)
    assert serial.n == 10 and serial.latencies.min() >= 0.005
    assert serial.wall >= serial.latencies.sum()
    both = measure(lambda: time.sleep(0.02), concurrency=2, warmup=1, iterations=20)
    assert both.n == 20 and both.latencies.min() >= 0.02 and both.concurrency == 2
    assert both.wall < 0.8 * both.latencies.sum()
    assert both.throughput == pytest.approx(20 / both.wall)
    timed = measure(lambda: None, concurrency=2, warmup=0, min_seconds=0.01, min_iterations=50)
    assert timed.n >= 50 and timed.wall >= 0.01
    assert time_calls(lambda: None, iterations=7).shape == (7,)  # the older API, same core


def test_timing_core_reraises_a_thread_error() -> None:
    def boom() -> None:
        raise RuntimeError("from a worker")

    with pytest.raises(RuntimeError, match="from a worker"):
        measure(boom, concurrency=2, warmup=0, iterations=4)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS is read from /proc")
def test_peak_rss_sees_a_short_spike() -> None:
    with PeakRSS() as mem:
        block = np.ones(64 << 17)  # 64 MiB of float64, touched
        del block
    assert mem.method in ("VmHWM", "sampled")
    if mem.method == "VmHWM":  # the kernel's high-water mark misses nothing
        assert mem.peak_mib is not None and 60 < mem.peak_mib < 200
    with PeakRSS() as quiet:
        pass
    assert quiet.peak_mib is not None and quiet.peak_mib < 8


@pytest.mark.zoo
def test_real_detector_with_threads_and_concurrency(zoo_path: Callable[[str], Path]) -> None:
    result = dk.bench(zoo_path("rapidocr_det"), "onnxruntime", concurrency=[1, 2], threads=1,
                      dims={"p2o.DynamicDimension.1": 64, "p2o.DynamicDimension.2": 64}, **QUICK)
    assert [(r.threads, r.concurrency) for r in result.rows] == [(1, 1), (1, 2)]
    assert result.representative and result.inputs == ["x: float32[1,3,64,64]"]
    # a delta can be 0 when the allocator reuses memory freed earlier in this process
    # (the measuring itself is checked by test_peak_rss_sees_a_short_spike)
    assert all(r.peak_rss_mb is None or r.peak_rss_mb >= 0 for r in result.rows)


