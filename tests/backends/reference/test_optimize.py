"""Load-time rewrites of the NumPy backend: same results, caller's model untouched, applied
only where the pattern is exactly right."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import deploykit as dk
from deploykit.backends.reference import NumpyBackend, optimize
from deploykit.model import open_model


def _const(name: str, value: float) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(
        np.array(value, np.float32), name))


def _ops(model: onnx.ModelProto) -> list[str]:
    """The operators of the steps the NumPy backend compiles ``model`` to."""
    return [s.label.split("(")[0] for s in NumpyBackend(open_model(model)).graph.steps]


def _hardswish_model(extra_consumer: bool = False) -> onnx.ModelProto:
    nodes = [_const("three", 3.0), _const("zero", 0.0), _const("six", 6.0),
             helper.make_node("Add", ["x", "three"], ["a"]),
             helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
             helper.make_node("Mul", ["x", "c"], ["m"]),
             helper.make_node("Div", ["m", "six"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])]
    if extra_consumer:  # the clipped value is also an output: the chain must stay as it is
        outputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 8]))
    graph = helper.make_graph(nodes, "hs", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          ["N", 8])], outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_hardswish_chain_is_fused_and_bit_identical() -> None:
    model = _hardswish_model()
    before = model.SerializeToString()
    x = np.linspace(-8, 8, 64, dtype=np.float32).reshape(8, 8)
    fused = dk.load(model, backend="numpy")
    plain = dk.load(model, backend="numpy", optimize=False)
    assert _ops(model) == ["HardSwish"]
    np.testing.assert_array_equal(fused.run(x)["y"], plain.run(x)["y"])
    np.testing.assert_array_equal(fused.run(x)["y"], x * np.clip(x + 3, 0, 6) / 6)
    assert model.SerializeToString() == before  # the caller's model is not rewritten


def test_hardswish_not_fused_when_an_intermediate_is_used_elsewhere() -> None:
    copy = _hardswish_model(extra_consumer=True)
    assert optimize.fuse_hardswish(copy.graph) == 0


def test_conv_batchnorm_folding() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    stats = [rng.uniform(0.5, 2, 4), rng.standard_normal(4), rng.standard_normal(4),
             rng.uniform(0.5, 2, 4)]
    inits = [numpy_helper.from_array(w, "w")] + [
        numpy_helper.from_array(v.astype(np.float32), n)
        for v, n in zip(stats, ["scale", "bias", "mean", "var"])]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"],
                          epsilon=1e-3)],
        "cbn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    fused = dk.load(model, backend="numpy")
    assert _ops(model) == ["Conv"]
    plain = dk.load(model, backend="numpy", optimize=False)
    np.testing.assert_allclose(fused.run(x)["y"], plain.run(x)["y"], rtol=1e-5, atol=1e-5)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.node[1].attribute.append(helper.make_attribute("training_mode", 1))
    copy.opset_import[0].version = 15
    assert optimize.fuse_conv_batchnorm(copy.graph) == 0  # training mode is not an inference BN
