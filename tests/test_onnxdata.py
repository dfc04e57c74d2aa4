"""ONNX tensors that declare more than they hold are refused before any runtime reads them (issue 16):
inline data short of the dims, no data at all, external data past the file or without a length but
too short, sparse tensors whose dense size is absurd — each a ModelLoadError naming the tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import deploykit as dk


def _model(weight: TensorProto | None = None, sparse: onnx.SparseTensorProto | None = None,
           node: onnx.NodeProto | None = None) -> onnx.ModelProto:
    graph = helper.make_graph([node or helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                              [weight] if weight is not None else [],
                              sparse_initializer=[sparse] if sparse is not None else None)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_tensor_with_no_data_for_its_dims_is_refused() -> None:
    empty = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 34])
    with pytest.raises(dk.ModelLoadError, match=r"tensor 'w' declares 17179869184 elements .* but holds 0"):
        dk.load(_model(empty), check=False)


def test_external_data_without_a_length_must_cover_the_dims(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(bytes(16))
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 30],
                         data_location=TensorProto.EXTERNAL)
    weight.external_data.add(key="location", value="w.bin")
    onnx.save(_model(weight), str(tmp_path / "m.onnx"))
    with pytest.raises(dk.ModelLoadError, match=r"external data 'w\.bin' bytes 0\.\.4294967296 lie past"):
        dk.load(tmp_path / "m.onnx", check=False)


def test_a_sparse_tensor_s_dense_size_is_bounded() -> None:
    values = numpy_helper.from_array(np.ones(2, np.float32), "s")
    indices = numpy_helper.from_array(np.array([0, 1], np.int64), "s_idx")
    huge = helper.make_sparse_tensor(values, indices, [1 << 21, 1 << 21])
    with pytest.raises(dk.ModelLoadError, match=r"tensor 's' declares 4398046511104 elements"):
        dk.load(_model(sparse=huge), backend="numpy", check=False)
    constant = helper.make_node("Constant", [], ["c"], sparse_value=huge)
    with pytest.raises(dk.ModelLoadError, match=r"declares 4398046511104 elements"):
        dk.load(_model(node=constant), check=False)


def test_honest_tensors_still_load() -> None:
    weight = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    model = _model(weight, node=helper.make_node("Add", ["x", "w"], ["y"]))
    out = dk.load(model, backend="numpy").run({"x": np.ones(4, np.float32)})["y"]
    np.testing.assert_array_equal(out, [1, 2, 3, 4])
