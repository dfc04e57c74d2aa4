"""The NumPy backend on every real model of the zoo: agreement with onnxruntime, determinism,
thread safety, and load-time refusal of what it cannot run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import deploykit as dk
from deploykit.backends.reference import NumpyBackend
from deploykit.model import open_model
from tests import models, zoo
from tests.backends.reference.oracle import assert_agrees
from tests.concurrency import run_in_threads


@pytest.mark.parametrize("key", zoo.ONNX_MODELS)
def test_zoo_model_agrees_with_onnxruntime(key: str, zoo_path, photo: np.ndarray) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is the oracle here")
    path = zoo_path(key)
    feeds = zoo.sample_feeds(key, photo)
    expected = dk.load(path, backend="onnxruntime", threads=1).run(feeds)
    got = dk.load(path, backend="numpy").run(feeds)
    assert_agrees(got, expected, lambda: _float64_outputs(path, feeds))


def _float64_outputs(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnx

    model = models.to_float64(onnx.load(path))
    feeds64 = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in feeds.items()}
    return dk.load(model, backend="numpy", check=False).run(feeds64)


@pytest.mark.parametrize("key", ["rapidocr_cls", "silero_vad", "oww_embedding"])
def test_hot_operators_are_native(key: str, zoo_path) -> None:
    engine = dk.load(zoo_path(key), backend="numpy")
    assert engine.info["delegated_ops"] == []


def test_deterministic_across_runs_and_threads(zoo_path, photo: np.ndarray) -> None:
    feeds = zoo.sample_feeds("rapidocr_cls", photo)
    engine = dk.load(zoo_path("rapidocr_cls"), backend="numpy")
    first = engine.run(feeds)
    results = [out for outs in run_in_threads(lambda i: engine.run(feeds), 4, 3) for out in outs]
    assert len(results) == 12
    for out in [engine.run(feeds), *results]:
        for name, value in first.items():
            assert np.array_equal(out[name], value)  # bit-identical


def test_every_unsupported_op_is_listed_at_load_time() -> None:
    model = models.unknown_op()
    node = helper.make_node("AlsoMissing", ["y"], ["z"], domain="example.custom")
    model.graph.node.append(node)
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N"]))
    with pytest.raises(dk.ModelLoadError, match=r"does not support: example.custom::AlsoMissing "
                                                r"\(opset 1.*example.custom::NoSuchOp \(opset 1"):
        dk.load(model, backend="numpy", check=False)


def test_future_opset_is_refused() -> None:
    with pytest.raises(dk.ModelLoadError, match=r"does not know opset 99 of ai.onnx"):
        dk.load(models.future_opset(99), backend="numpy", check=False)


def test_runtime_failure_names_the_node() -> None:
    engine = dk.load(models.reshape_to(), backend="numpy")
    with pytest.raises(dk.BackendError, match=r"node Reshape\(y\): ValueError"):
        engine.run({"x": np.zeros((2, 6), np.float32), "shape": np.array([5, 5])})


def test_intermediates_are_freed_after_last_use() -> None:
    graph = NumpyBackend(open_model(models.many_io())).graph
    freed = {s for step in graph.steps for s in step.free}
    inputs_read = {s for step in graph.steps for s in step.inputs if s >= 0}
    assert inputs_read - set(graph.output_slots) <= freed
    assert not freed & set(graph.output_slots)


def test_subgraph_reads_outer_scope() -> None:
    """An If branch reading a tensor of the enclosing graph (as silero-vad's branches do)."""
    then_g = helper.make_graph([helper.make_node("Add", ["x", "bias"], ["r"])], "then", [],
                               [helper.make_tensor_value_info("r", TensorProto.FLOAT, [2])])
    else_g = helper.make_graph([helper.make_node("Sub", ["x", "bias"], ["r2"])], "else", [],
                               [helper.make_tensor_value_info("r2", TensorProto.FLOAT, [2])])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x0", "two"], ["x"]),
         helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
        "outer",
        [helper.make_tensor_value_info("x0", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("bias", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=[helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    engine = dk.load(model, backend="numpy")
    x0, bias = np.array([1, 2], np.float32), np.array([10, 20], np.float32)
    np.testing.assert_array_equal(engine.run({"x0": x0, "c": True, "bias": bias})["y"], [12, 24])
    np.testing.assert_array_equal(engine.run({"x0": x0, "c": False, "bias": bias})["y"], [-8, -16])
