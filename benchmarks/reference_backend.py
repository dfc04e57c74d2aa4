"""deploykit's NumPy backend vs onnx.reference.ReferenceEvaluator vs onnxruntime, same inputs,
one process; and (``--threads``) the NumPy backend's BLAS thread counts against each other.

Comparison: "1t" means onnxruntime ``intra_op_num_threads=1`` and ``threads=1`` on the NumPy
backend; "all" means every CPU this process may use for both. onnx.reference is run fewer times
(it is slow) with numpy's own BLAS pool; every figure is a median.

``--threads``: the demo digits batch and the zoo's CNNs on the NumPy backend at BLAS thread
counts 1, 2, 4, ... and the usable CPUs, in alternating rounds (forward, then backward order) so that a
machine whose load drifts favours no setting; ``--busy N`` keeps N other processes spinning
meanwhile (a busy machine). Median, mean and p90 per setting, and each mean (the time a batch
job or a loaded server sees per call) over the best one.

    python benchmarks/reference_backend.py [--seconds 2] [--skip-reference]
    python benchmarks/reference_backend.py --threads [--rounds 6] [--busy 1]

Targets (issue 3): >= 50x faster than onnx.reference on the CNNs; within 3x of onnxruntime at
the same thread count on every CNN.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import deploykit as dk
from deploykit._timing import time_calls
from deploykit.backends.reference.blas import blas_pool
from deploykit.demo import MODEL_PATH as DIGITS
from deploykit.hostinfo import probe_cpu, usable_cpus
from tests import zoo

Feeds = dict[str, np.ndarray]


def inputs() -> dict[str, Feeds]:
    from sklearn.datasets import load_sample_image

    photo = np.asarray(load_sample_image("china.jpg"))

    def ocr(image: np.ndarray, h: int, w: int, det: bool = False) -> np.ndarray:
        img = zoo._resize(image, h, w).astype(np.float32) / 255.0
        mean, std = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) if det else (0.5, 0.5)
        img = (img - mean) / std
        return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)

    text = zoo._with_text(zoo._resize(photo, 320, 480))
    return {
        "rapidocr_cls": {"x": ocr(photo[60:160, 40:440], 48, 192)},
        "rapidocr_det": {"x": ocr(text, 640, 640, det=True)},
        "rapidocr_rec": {"x": ocr(text[30:140, 20:460], 48, 320)},
        "silero_vad": zoo.sample_feeds("silero_vad"),
        "oww_embedding": {"input_1": zoo.sample_feeds("oww_embedding")["input_1"][:1]},
    }


def digits_batch() -> Feeds:
    images = np.load(DIGITS.with_name("digits_test.npz"))["images"]
    return {"images": images.astype(np.float32)[:, None]}


def median_ms(fn: Callable[[], object], seconds: float, min_runs: int = 3) -> float:
    runs = time_calls(fn, warmup=1, min_seconds=seconds)
    if len(runs) < min_runs:
        runs = np.concatenate([runs, time_calls(fn, warmup=0, iterations=min_runs - len(runs))])
    return float(np.median(runs)) * 1e3


def ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare(seconds: float, skip_reference: bool) -> None:
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    cpus = usable_cpus()
    print(f"machine: {probe_cpu().model}, usable CPUs {cpus}; numpy {np.__version__} "
          f"({blas_pool().describe()}), onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    header = (f"{'model':<15}{'input':<14}{'dk numpy 1t':>13}{'ORT 1t':>13}{'ratio':>7}"
              f"{'dk numpy all':>13}{'ORT all':>13}{'ratio':>7}{'onnx.ref':>13}{'speed-up':>9}")
    print(header + "\n" + "-" * len(header))
    for key, feeds in inputs().items():
        path = zoo.path(key)
        shape = "x".join(map(str, next(iter(feeds.values())).shape))
        row = {}
        for threads in (1, cpus):
            engine = dk.load(path, backend="numpy", threads=threads)
            row[("np", threads)] = median_ms(partial(engine.run, feeds), seconds)
            row[("ort", threads)] = median_ms(partial(ort_session(path, threads).run, None, feeds), seconds)
        ref_ms = float("nan")
        if not skip_reference:
            evaluator = ReferenceEvaluator(str(path))
            t0 = time.perf_counter()
            evaluator.run(None, feeds)
            first = time.perf_counter() - t0
            ref_ms = median_ms(partial(evaluator.run, None, feeds), min(seconds, first * 2),
                               min_runs=1 if first > 5 else 3)
        np1, ort1, npn, ortn = row[("np", 1)], row[("ort", 1)], row[("np", cpus)], row[("ort", cpus)]
        print(f"{key:<15}{shape:<14}{np1:>10.2f} ms{ort1:>10.2f} ms{np1 / ort1:>7.2f}{npn:>10.2f} ms"
              f"{ortn:>10.2f} ms{npn / ortn:>7.2f}{ref_ms:>10.1f} ms{ref_ms / npn:>8.0f}x")


def _spin() -> None:
    while True:
        pass


@contextmanager
def busy(processes: int) -> Iterator[None]:
    """``processes`` other processes spinning on the CPUs for the duration."""
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(processes)]
    for p in spinners:
        p.start()
    try:
        time.sleep(0.5 if spinners else 0)
        yield
    finally:
        for p in spinners:
            p.terminate()
            p.join()


def thread_study(rounds: int, calls_per_round: int, busy_processes: int) -> None:
    cpus = usable_cpus()
    settings = sorted({*(2 ** i for i in range(cpus.bit_length()) if 2 ** i <= cpus), cpus})
    own = [lib.num_threads for lib in blas_pool().libraries]
    print(f"machine: {probe_cpu().model}, usable CPUs {cpus}; load average {os.getloadavg()[0]:.2f}; numpy "
          f"{np.__version__} ({blas_pool().describe()}, its own pool size: {own or 'unknown'}); "
          f"deploykit's default: {dk.load(DIGITS, backend='numpy').info['threads']} thread(s); "
          f"{busy_processes} spinning process(es); {rounds} alternating rounds x {calls_per_round} calls")
    models = {"digits": (DIGITS, digits_batch())}
    for key in ("rapidocr_cls", "rapidocr_det"):
        models[key] = (zoo.path(key), inputs()[key])
    header = f"{'model':<14}{'input':<12}" + "".join(
        f"{f'{n}t median':>12}{'mean':>11}{'p90':>11}" for n in settings)
    print(header + f"{'mean / best':>16}\n" + "-" * (len(header) + 16))
    with busy(busy_processes):
        for key, (path, feeds) in models.items():
            engines = {n: dk.load(path, backend="numpy", threads=n) for n in settings}
            for engine in engines.values():
                engine.run(feeds)  # warm-up
            times: dict[int, list[float]] = {n: [] for n in settings}
            for r in range(rounds):
                for n in settings if r % 2 == 0 else settings[::-1]:
                    run = partial(engines[n].run, feeds)
                    times[n] += list(time_calls(run, warmup=0, iterations=calls_per_round))
            ms = {n: np.asarray(t) * 1e3 for n, t in times.items()}
            best = min(float(t.mean()) for t in ms.values())
            shape = "x".join(map(str, next(iter(feeds.values())).shape))
            print(f"{key:<14}{shape:<12}" + "".join(
                f"{np.median(t):>9.2f} ms{t.mean():>8.2f} ms{np.percentile(t, 90):>8.2f} ms"
                for t in ms.values()) + "   " + " / ".join(f"{t.mean() / best:.2f}" for t in ms.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per cell")
    parser.add_argument("--skip-reference", action="store_true", help="skip onnx.reference")
    parser.add_argument("--threads", action="store_true", help="compare BLAS thread counts instead")
    parser.add_argument("--rounds", type=int, default=6, help="--threads: alternating rounds")
    parser.add_argument("--calls", type=int, default=5, help="--threads: calls per setting per round")
    parser.add_argument("--busy", type=int, default=0, help="--threads: spinning processes meanwhile")
    args = parser.parse_args()
    if args.threads:
        thread_study(args.rounds, args.calls, args.busy)
    else:
        compare(args.seconds, args.skip_reference)


if __name__ == "__main__":
    main()
