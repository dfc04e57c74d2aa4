"""What preallocated outputs save: ``engine.run(feeds, out={...})`` (onnxruntime writes into the
buffers through IO binding) against ``engine.run(feeds)`` (onnxruntime allocates each output) and
onnxruntime's own ``InferenceSession.run`` and ``run_with_iobinding``, in one process, alternating
rounds, medians.

    python benchmarks/preallocated_outputs.py [--rounds 7] [--calls 200]

Models: the OCR detector of the zoo (one 1x1x640x640 float32 map out of a 1x3x640x640 photo, 1.6 MB)
and a synthetic copy-bound model (y = x + 1 on float32[1, 3, 1024, 1024]: 12 MB out), where the
allocation and the first touch of a fresh output are most of the work.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import deploykit as dk
from deploykit.hostinfo import usable_cpus
from tests import zoo


def _add_one() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    one = numpy_helper.from_array(np.ones((1,), np.float32), "one")
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "add_one",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 1024, 1024])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 1024, 1024])],
                              [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _cases() -> list[tuple[str, object, dict[str, np.ndarray]]]:
    from sklearn.datasets import load_sample_image

    det = zoo.path("rapidocr_det")
    photo = np.asarray(load_sample_image("china.jpg"))[:320, :320]
    x = np.ascontiguousarray(np.tile(photo, (2, 2, 1)).transpose(2, 0, 1)[None].astype(np.float32) / 255)
    big = np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)
    return [("OCR detector 1x3x640x640", str(det), {"x": x}),
            ("add-one 1x3x1024x1024", _add_one(), {"x": big})]


def _time(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def _measure(model: object, feeds: dict[str, np.ndarray], rounds: int, calls: int) -> dict[str, float]:
    """Median ms per call of the four ways, in alternating rounds."""
    import onnxruntime as ort

    engine = dk.load(model, backend="onnxruntime")
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = engine.outputs[0].name
    shape = engine.run(feeds)[name].shape
    buf = np.empty(shape, np.float32)
    np.testing.assert_array_equal(engine.run(feeds, out={name: buf})[name], engine.run(feeds)[name])
    io = session.io_binding()

    def iobind() -> object:
        io.bind_cpu_input("x", feeds["x"])
        io.bind_output(name, "cpu", 0, np.float32, list(shape), buf.ctypes.data)
        session.run_with_iobinding(io)
        return buf

    fns = {"ORT run": lambda: session.run(None, feeds), "ORT iobind": iobind,
           "dk run": lambda: engine.run(feeds), "dk out": lambda: engine.run(feeds, out={name: buf})}
    samples: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns.items())
    for r in range(rounds):
        for k, fn in order[r % 4:] + order[:r % 4]:
            samples[k].append(_time(fn, calls))
    return {k: statistics.median(v) * 1e3 for k, v in samples.items()}


def main() -> None:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}, {usable_cpus()} usable CPUs, {args.rounds} rounds of "
          f"{args.calls} calls, medians (ms per call)\n")
    head = (f"{'model':<28}{'ORT run':>10}{'ORT iobind':>12}{'dk run':>10}{'dk run(out=)':>14}"
            f"{'out= / run':>12}")
    print(head + "\n" + "-" * len(head))
    for label, model, feeds in _cases():
        med = _measure(model, feeds, args.rounds, args.calls)
        print(f"{label:<28}{med['ORT run']:>10.3f}{med['ORT iobind']:>12.3f}{med['dk run']:>10.3f}"
              f"{med['dk out']:>14.3f}{med['dk out'] / med['dk run']:>12.3f}")


if __name__ == "__main__":
    main()
