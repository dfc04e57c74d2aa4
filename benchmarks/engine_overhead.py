"""What deploykit adds per call over onnxruntime's InferenceSession.run, called directly.

Same model file, same session settings (intra-op threads, inter-op 1, full graph optimisation),
same inputs, same process. Calls are timed in interleaved rounds (raw, deploykit, raw, ...) so
that machine noise hits both alike; the table shows medians over all calls and the difference.

    python benchmarks/engine_overhead.py [--rounds 15] [--calls 400] [--threads 1]
Target (issue 2): at most 5 us added per call on the tiny wake-word head.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import deploykit as dk
from deploykit._timing import time_calls
from deploykit.probe import usable_cpus
from tests import zoo

MODELS = [("oww_hey_jarvis", "wake-word MLP head"), ("rapidocr_cls", "rapidocr cls CNN, 2x3x48x192")]


def photo() -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return np.asarray(load_sample_image("china.jpg"))


def measure(key: str, rounds: int, calls: int, threads: int) -> tuple[float, float]:
    import onnxruntime as ort

    path = zoo.path(key)
    feeds = zoo.sample_feeds(key, photo() if key.startswith("rapidocr") else None)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 4
    session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    engine = dk.load(path, backend="onnxruntime", threads=threads)
    np.testing.assert_array_equal(engine.run(feeds)[engine.outputs[0].name],
                                  session.run(None, feeds)[0])
    raw, ours = [], []
    for _ in range(rounds):
        raw.append(time_calls(lambda: session.run(None, feeds), warmup=20, iterations=calls))
        ours.append(time_calls(lambda: engine.run(feeds), warmup=20, iterations=calls))
    return float(np.median(np.concatenate(raw))), float(np.median(np.concatenate(ours)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import onnxruntime as ort

    print(f"machine: {platform.machine()} {platform.processor() or ''}, usable CPUs "
          f"{usable_cpus()}; python {platform.python_version()}, numpy {np.__version__}, "
          f"onnxruntime {ort.__version__}, deploykit {dk.__version__}")
    print(f"intra-op threads {args.threads}; {args.rounds} rounds x {args.calls} calls each, "
          "interleaved; medians over all calls\n")
    header = f"{'model':<34}{'InferenceSession.run':>22}{'deploykit Engine.run':>22}" \
             f"{'added':>11}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for key, label in MODELS:
        raw, ours = measure(key, args.rounds, args.calls, args.threads)
        print(f"{label:<34}{raw * 1e6:>19.1f} us{ours * 1e6:>19.1f} us"
              f"{(ours - raw) * 1e6:>8.1f} us{ours / raw:>8.3f}")


if __name__ == "__main__":
    main()
