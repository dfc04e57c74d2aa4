"""dk.prune: dense chains found and shrunk (the graph really gets smaller and still computes the same
function minus the removed units), gated like quantize; models it cannot prune are left alone."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("onnxruntime", reason="the gates time and check candidates on onnxruntime")

import deploykit as dk
from deploykit.convert.prune import find_chains, magnitude_pruned, pruned
from deploykit.demo import MODEL_PATH, load_test_data
from tests import models


def test_the_digits_chain_is_found_and_halved() -> None:
    proto = onnx.load(str(MODEL_PATH))
    (chain,) = find_chains(proto)
    assert (chain.first.op_type, chain.second.op_type, chain.hidden) == ("Gemm", "Gemm", 64)
    half = pruned(proto, 0.5)
    shapes = {i.name: list(i.dims) for i in half.graph.initializer}
    assert shapes["w1"] == [64, 32] and shapes["b1"] == [32] and shapes["w2"] == [32, 10]
    onnx.checker.check_model(half)
    images, labels = load_test_data()
    out = dk.load(half, backend="onnxruntime").run({"images": images})
    assert (out["label"] == labels).mean() > 0.8  # still a digit classifier, with half its units


def matmul_chain(trans_b: bool) -> onnx.ModelProto:
    """x[N,6] -> MatMul(6x8) -> Tanh -> Gemm(8 -> 3, transB) -> y: removing units with zero outgoing
    weights must not change the output at all."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(6, 8)).astype(np.float32)
    w2 = rng.normal(size=(8, 3)).astype(np.float32)
    w2[[1, 4, 6, 7]] = 0.0  # four units that contribute nothing downstream
    second = w2.T if trans_b else w2
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Tanh", ["h"], ["a"]),
             helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], transB=int(trans_b))]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(second, "w2"),
             numpy_helper.from_array(np.ones(3, np.float32), "b2")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph(nodes, "chain", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("trans_b", [False, True])
def test_units_without_outgoing_weight_go_first_and_change_nothing(trans_b: bool) -> None:
    model = matmul_chain(trans_b)
    half = pruned(model, 0.5)
    x = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    before = dk.load(model, backend="onnxruntime").run({"x": x})["y"]
    after = dk.load(half, backend="onnxruntime").run({"x": x})["y"]
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)
    assert {i.name: list(i.dims) for i in half.graph.initializer}["w1"] == [6, 4]


def test_gates_decide_and_say_why(tmp_path: Path) -> None:
    images, labels = load_test_data()
    report = dk.prune(MODEL_PATH, images[:64], output=tmp_path / "p.onnx", accuracy=0.0, max_drop=0.5,
                      min_speedup=0.0, metric=lambda o: float((o["label"] == labels[:64]).mean()))
    assert [r.name for r in report.candidates] == ["fp32", "units-25%", "units-50%", "units-75%"]
    assert report.chosen != "fp32" and (tmp_path / "p.onnx").is_file() and report.path == tmp_path / "p.onnx"
    assert "deploykit prune" in str(report) and any("64 hidden units" in n for n in report.notes)
    strict = dk.prune(MODEL_PATH, images[:64], output=tmp_path / "q.onnx", max_drop=0.0,
                      metric=lambda o: float((o["label"] == labels[:64]).mean()))
    by_name = {r.name: r for r in strict.candidates}
    assert by_name["units-75%"].reason.startswith("accuracy:") and not by_name["units-75%"].kept
    assert all(r.reason for r in strict.candidates)


def test_nothing_to_prune_keeps_the_original(tmp_path: Path) -> None:
    path = tmp_path / "add.onnx"
    onnx.save(models.dynamic_add(), str(path))
    x = np.ones((2, 3), np.float32)
    report = dk.prune(path, {"x": x, "y": x}, output=tmp_path / "p.onnx")
    assert report.chosen == "fp32" and len(report.candidates) == 1
    assert any("no chain of dense layers" in n for n in report.notes)


@pytest.mark.parametrize("fractions, match", [([0.0], "fractions"), ([1.0], "below 1"), ([], "empty"),
                                              ("half", "list of shares")])
def test_bad_fractions_are_refused(tmp_path: Path, fractions: object, match: str) -> None:
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.prune(MODEL_PATH, load_test_data()[0][:4], output=tmp_path / "p.onnx", fractions=fractions)


def test_magnitude_pruning_zeroes_the_smallest_weights_and_keeps_shapes() -> None:
    proto = onnx.load(str(MODEL_PATH))
    thinned = magnitude_pruned(proto, 0.3)
    before = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for tensor in thinned.graph.initializer:
        after, original = numpy_helper.to_array(tensor), before[tensor.name]
        assert after.shape == original.shape
        if after.ndim == 2:  # the dense weights
            zero = after == 0
            assert abs(zero.mean() - 0.3) < 0.01, tensor.name
            assert np.abs(original[zero]).max() <= np.abs(original[~zero]).min()  # the smallest went
            np.testing.assert_array_equal(after[~zero], original[~zero])
        else:  # biases are not weights of a Conv/MatMul/Gemm input 1
            np.testing.assert_array_equal(after, original)


def test_magnitude_candidates_are_compression_only_and_refused_for_speed(tmp_path: Path) -> None:
    images = load_test_data()[0]
    report = dk.prune(MODEL_PATH, images[:32], output=tmp_path / "p.onnx", fractions=[0.5],
                      magnitude=[0.3], min_speedup=1.5, accuracy=0.0)
    row = {r.name: r for r in report.candidates}["magnitude-30%"]
    assert not row.kept and "not the 1.5x asked for" in row.reason, row.reason
    assert row.size_bytes is not None and row.size_bytes > 0 and row.accuracy
    sizes = {m[1]: int(m[2]) for n in report.notes if (m := re.match(r"(\S+): .*?(\d+) KiB compressed", n))}
    assert sizes["magnitude-30%"] < sizes["fp32"], report.notes
    assert any("compression only" in n for n in report.notes)


@pytest.mark.parametrize("magnitude, match", [([1.0], "magnitude are shares"),
                                               ("0.3", "magnitude must be a list")])
def test_bad_magnitude_shares_are_refused(tmp_path: Path, magnitude: object, match: str) -> None:
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.prune(MODEL_PATH, load_test_data()[0][:4], output=tmp_path / "p.onnx", magnitude=magnitude)
