"""QuantizeLinear / DequantizeLinear at opsets 10 and 13 on the numpy backend: the spec's arithmetic
(round half to even, saturation, per-axis parameters), and a QDQ model from dk.quantize computed exactly
as onnx.reference computes it (at opset 19, the first it implements)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import deploykit as dk


def qdq_model(opset: int, scale: np.ndarray, zero: np.ndarray, axis: int | None) -> onnx.ModelProto:
    """x -> QuantizeLinear -> q (an output) -> DequantizeLinear -> y."""
    inits = [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zero, "z")]
    attrs = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attrs),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **attrs)]
    elem = helper.np_dtype_to_tensor_dtype(zero.dtype)
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("q", elem, [2, 3]),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


@pytest.mark.parametrize("opset", [10, 13])
def test_per_tensor_round_half_even_and_saturation(opset: int) -> None:
    x = np.array([[0.25, 0.75, -0.25], [100.0, -100.0, 1.25]], np.float32)
    engine = dk.load(qdq_model(opset, np.array(0.5, np.float32), np.array(3, np.int8), None), backend="numpy")
    out = engine.run({"x": x})
    # x / 0.5 = 0.5, 1.5, -0.5, 200, -200, 2.5 -> rint: 0, 2, -0, 200, -200, 2 -> + 3 -> saturate to int8
    np.testing.assert_array_equal(out["q"], np.array([[3, 5, 3], [127, -128, 5]], np.int8))
    np.testing.assert_array_equal(out["y"], (out["q"].astype(np.float32) - 3) * 0.5)


def test_per_axis_at_opset_13_matches_onnx_reference() -> None:
    from onnx.reference import ReferenceEvaluator

    scale, zero = np.array([0.1, 0.2, 0.05], np.float32), np.array([128, 0, 250], np.uint8)
    model = qdq_model(13, scale, zero, axis=1)
    x = np.random.default_rng(0).normal(0, 5, (2, 3)).astype(np.float32)
    got = dk.load(model, backend="numpy").run({"x": x})
    want = ReferenceEvaluator(onnx.version_converter.convert_version(model, 19)).run(None, {"x": x})
    np.testing.assert_array_equal(got["q"], want[0])
    np.testing.assert_array_equal(got["y"], want[1])


def test_a_qdq_model_from_dk_quantize_runs_exactly_as_onnx_reference(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime.quantization", reason="onnxruntime (its quantizer) is not installed")
    from onnx.reference import ReferenceEvaluator

    from deploykit.demo import MODEL_PATH, load_test_data

    images = load_test_data()[0][:32]
    report = dk.quantize(MODEL_PATH, images, output=tmp_path / "q.onnx", min_speedup=0.0, accuracy=0.0,
                         candidates=["int8-static"])
    assert report.chosen == "int8-static"
    got = dk.load(report.path, backend="numpy").run({"images": images})
    model = onnx.version_converter.convert_version(onnx.load(str(report.path)), 19)
    values = ReferenceEvaluator(model).run(None, {"images": images})
    want = dict(zip([o.name for o in model.graph.output], values))
    np.testing.assert_array_equal(got["probabilities"], want["probabilities"])
    np.testing.assert_array_equal(got["label"], want["label"])
