"""Made-up inputs: shapes from specs and maps, values that keep the model valid, honest flags."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import deploykit as dk
from deploykit.spec import TensorSpec
from deploykit.synth import (
    DEFAULT_BATCH,
    DEFAULT_DIM,
    MadeUpArgs,
    batch_dims,
    check_made_up,
    index_ranges,
    resolve_shapes,
    synthesize,
    value_dependent_ops,
)
from tests import models

ort = pytest.importorskip("onnxruntime", reason="synthesized inputs are checked by running them")

F32 = np.dtype(np.float32)


def spec(name: str, shape: tuple | None, dtype: object = F32, kind: str = "tensor") -> TensorSpec:
    return TensorSpec(name, shape, np.dtype(dtype), kind)  # type: ignore[arg-type]


def embedding(vocab: int = 50) -> onnx.ModelProto:
    """ids[N,S] (int64) -> Gather from a [vocab, 4] table -> ReduceSum: token ids must stay < vocab."""
    table = numpy_helper.from_array(np.arange(vocab * 4, dtype=np.float32).reshape(vocab, 4), "table")
    nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"]),
             helper.make_node("ReduceSum", ["emb"], ["y"], keepdims=0)]
    return models._model(nodes, [models.vi("ids", TensorProto.INT64, ["N", "S"])],
                         [models.vi("y", TensorProto.FLOAT, [])], initializers=[table])


def top_k() -> onnx.ModelProto:
    """TopK over x[N,8]: a value-dependent operator."""
    k = numpy_helper.from_array(np.array([3], np.int64), "k")
    return models._model([helper.make_node("TopK", ["x", "k"], ["v", "i"])],
                         [models.vi("x", TensorProto.FLOAT, ["N", 8])],
                         [models.vi("v", TensorProto.FLOAT, ["N", 3]),
                          models.vi("i", TensorProto.INT64, ["N", 3])], initializers=[k])


def test_batch_dims() -> None:
    assert batch_dims([spec("x", ("N", 3)), spec("y", ("N", 3))]) == (True, None)
    assert batch_dims([spec("x", (1, 16, 96))]) == (False, 1)
    assert batch_dims([spec("x", (None, 3)), spec("k", ())]) == (True, None)
    assert batch_dims([spec("k", ())]) == (False, None)


def test_shapes_batch_symbols_and_defaults() -> None:
    specs = [spec("x", ("N", 3, "H", None)), spec("y", ("N", "H"))]
    shapes, notes = resolve_shapes(specs, batch=8)
    assert shapes == {"x": (8, 3, DEFAULT_DIM, DEFAULT_DIM), "y": (8, DEFAULT_DIM)}
    assert len(notes) == 2 and "'H'" in notes[0] and "dimension 3 of input 'x'" in notes[1]
    shapes, notes = resolve_shapes(specs, dims={"H": 32}, shapes={"x": (2, 3, 32, 40)})
    assert shapes == {"x": (2, 3, 32, 40), "y": (2, 32)} and notes == []
    shapes, _ = resolve_shapes(specs, batch=4, shapes={"x": (2, 3, 32, 40)})
    assert shapes["x"] == (4, 3, 32, 40)  # the row's batch wins over the given first dimension
    assert resolve_shapes([spec("x", (None, 2))])[0] == {"x": (DEFAULT_BATCH, 2)}


@pytest.mark.parametrize("kwargs, pattern", [
    ({"shapes": {"x": (1, 4, 5)}},
     r"shapes\['x'\]: \(1, 4, 5\) does not fit input 'x' float32\[N,3,H,W\] \(rank 4\)"),
    ({"shapes": {"x": (1, 4, 5, 5)}}, r"shapes\['x'\]: .*: dimension 1 must be 3"),
    ({"shapes": {"nope": (1,)}}, "shapes names 'nope', which the model has no input of; its inputs: x"),
    ({"dims": {"H": 0}}, r"dims\['H'\] must be an int >= 1, got 0"),
    ({"dims": {"seq": 4}}, r"dims names 'seq', which no input shape of the model has; its named "
                           r"dimensions: 'N' \(x\), 'H' \(x\), 'W' \(x\)"),
    ({"batch": 0}, "batch must be an int >= 1, got 0"),
])
def test_shape_errors(kwargs: dict, pattern: str) -> None:
    with pytest.raises(dk.InvalidArgument, match=pattern):
        resolve_shapes([spec("x", ("N", 3, "H", "W"))], **kwargs)


def test_unknown_rank_needs_a_shape() -> None:
    with pytest.raises(dk.InputMismatch, match="declares no rank; give its shape"):
        resolve_shapes([spec("x", None)])
    assert resolve_shapes([spec("x", None)], shapes={"x": (2, 5)})[0] == {"x": (2, 5)}


def test_dtypes_ranges_and_flags() -> None:
    model = models.many_io()
    specs = dk.load(model).inputs
    made = synthesize(specs, batch=3, value_ranges={"a": (-5.0, -4.0), "j": 7}, proto=model)
    f = made.feeds
    assert {k: (v.dtype, v.shape) for k, v in f.items()} == {
        "a": (F32, (3, 4)), "b": (F32, (3, 4)), "i": (np.dtype(np.int64), (3, 4)),
        "j": (np.dtype(np.int64), (3, 4)), "flag": (np.dtype(bool), (3, 4))}
    assert f["a"].min() >= -5 and f["a"].max() < -4
    assert f["b"].min() >= 0 and f["b"].max() < 1
    assert (f["j"] == 7).all() and set(np.unique(f["i"])) <= {0, 1}
    # 'i' had no range from anywhere: flagged, with the way out named
    assert not made.representative
    assert any("'i'" in n and "value_ranges" in n for n in made.notes)
    # the same seed gives the same data; the values feed the real model without complaint
    again = synthesize(specs, batch=3, value_ranges={"a": (-5.0, -4.0), "j": 7}, proto=model)
    np.testing.assert_array_equal(again.feeds["b"], f["b"])
    assert dk.load(model).run(f)["prod"].tolist() == (f["i"] * 7).tolist()


def test_float16_uint8_and_strings_run() -> None:
    engine = dk.load(models.uint8_and_half())
    made = synthesize(engine.inputs, batch=2, value_ranges={"u": (0, 256)}, proto=models.uint8_and_half())
    assert made.feeds["h"].dtype == np.float16 and made.feeds["u"].dtype == np.uint8
    assert made.representative
    assert engine.run(made.feeds)["out"].shape == (2, 2)
    strings = synthesize(dk.load(models.strings()).inputs, proto=models.strings())
    assert strings.feeds["s"].dtype == object and not strings.representative
    assert "placeholder text" in strings.notes[0]


def test_token_ids_stay_inside_the_vocabulary() -> None:
    model = embedding(vocab=50)
    assert index_ranges(model) == {"ids": (0, 50)}
    engine = dk.load(model)
    made = synthesize(engine.inputs, batch=4, dims={"S": 512}, proto=model, seed=3)
    ids = made.feeds["ids"]
    assert ids.shape == (4, 512) and ids.min() >= 0 and ids.max() < 50
    assert ids.max() > 40  # the whole vocabulary is used, not just 0/1
    assert made.representative and made.notes == []
    np.testing.assert_allclose(engine.run(made.feeds)["y"],
                               (np.arange(200, dtype=np.float32).reshape(50, 4)[ids]).sum(),
                               rtol=1e-5)
    with pytest.raises(dk.InvalidArgument, match=r"value_ranges\['ids'\]: range \(5, 5\) is empty"):
        synthesize(engine.inputs, value_ranges={"ids": (5, 5)}, proto=model)
    with pytest.raises(dk.InvalidArgument, match="value_ranges names 'nope', which the model has no "
                                                 "input of; its inputs: ids"):
        synthesize(engine.inputs, value_ranges={"nope": (0, 1)}, proto=model)


def test_value_dependent_ops_are_flagged() -> None:
    model = top_k()
    assert value_dependent_ops(model) == ["TopK"]
    made = synthesize(dk.load(model).inputs, proto=model)
    assert not made.representative and "TopK" in made.notes[0]
    no_graph = synthesize(dk.load(model).inputs)
    assert not no_graph.representative and "not inspected" in no_graph.notes[0]


def test_non_tensor_inputs_are_refused() -> None:
    with pytest.raises(dk.InputMismatch, match="cannot make up sequence input 's'; pass real inputs"):
        synthesize([spec("s", None, object, kind="sequence")])


SPECS = [spec("x", ("N", 3, "H", "W")), spec("ids", ("N", "S"), np.int64), spec("u", ("N",), np.uint8),
         spec("flag", ("N",), bool), spec("s", ("N",), object)]
#: (shapes, dims, value_ranges) -> the message; the types are checked without specs too.
BAD_TYPES = [
    ({"shapes": [(1, 3, 8, 8)]}, r"shapes must be a dict input name -> shape"),
    ({"shapes": {"x": "abc"}}, r"shapes\['x'\] must be a sequence of ints >= 1, e\.g\. \(1, 3, 224, "
                               r"224\), got 'abc'"),
    ({"shapes": {"x": (1, 0, 8, 8)}}, r"shapes\['x'\] must be a sequence of ints >= 1"),
    ({"shapes": {"x": (1, 3.0, 8, 8)}}, r"shapes\['x'\] must be a sequence of ints >= 1"),
    ({"shapes": {1: (1,)}}, r"shapes must be a dict input name -> shape"),
    ({"dims": ["S"]}, r"dims must be a dict dimension symbol -> size"),
    ({"dims": {"S": True}}, r"dims\['S'\] must be an int >= 1, got True"),
    ({"dims": {"S": "4"}}, r"dims\['S'\] must be an int >= 1, got '4'"),
    ({"value_ranges": 5}, r"value_ranges must be a dict input name -> \(low, high\) or a constant"),
    ({"value_ranges": {"x": "x"}}, r"value_ranges\['x'\] must be \(low, high\) or one number, got 'x'"),
    ({"value_ranges": {"x": (0, 1, 2)}}, r"value_ranges\['x'\] must be \(low, high\) or one number"),
    ({"value_ranges": {"x": float("nan")}}, r"value_ranges\['x'\] must be \(low, high\) or one number"),
    ({"value_ranges": {"x": (1.0, 0.5)}}, r"value_ranges\['x'\]: range \(1\.0, 0\.5\) is empty"),
]
#: ... and the checks that need the model's input specs.
BAD_FOR_MODEL = [
    ({"shapes": {"y": (1,)}}, r"shapes names 'y', which the model has no input of; its inputs: x, ids"),
    ({"shapes": {"x": (1, 4, 8, 8)}}, r"shapes\['x'\]: \(1, 4, 8, 8\) does not fit input 'x' "
                                      r"float32\[N,3,H,W\]: dimension 1 must be 3"),
    ({"dims": {"T": 4}}, r"dims names 'T', which no input shape of the model has; its named "
                         r"dimensions: 'N' \(x\), 'H' \(x\), 'W' \(x\), 'S' \(ids\)"),
    ({"value_ranges": {"y": 1}}, r"value_ranges names 'y', which the model has no input of"),
    ({"value_ranges": {"ids": (0.5, 10)}}, r"value_ranges\['ids'\]: input 'ids' is int64; give "
                                           r"integers, got \(0\.5, 10\)"),
    ({"value_ranges": {"u": (0, 257)}}, r"value_ranges\['u'\]: input 'u' is uint8; \(0, 257\) does not "
                                        r"fit it \(0 to 255, high exclusive\)"),
    ({"value_ranges": {"u": -1}}, r"value_ranges\['u'\]: input 'u' is uint8; -1 does not fit it"),
    ({"value_ranges": {"flag": (0, 1)}}, r"value_ranges\['flag'\]: input 'flag' is bool; a \(low, high\) "
                                         r"range needs an int or float input"),
    ({"value_ranges": {"flag": 2}}, r"value_ranges\['flag'\]: input 'flag' is bool; give 0 or 1"),
    ({"value_ranges": {"s": 1}}, r"value_ranges\['s'\]: input 's' is .*; only numeric inputs take a value"),
    ({"value_ranges": {"x": (0, 1e308)}}, r"value_ranges\['x'\]: input 'x' is float32; \(0, 1e\+308\) does "
                                          r"not fit it"),
]


@pytest.mark.parametrize("kwargs, pattern", BAD_TYPES + BAD_FOR_MODEL)
def test_check_made_up_names_the_argument_and_entry(kwargs: dict, pattern: str) -> None:
    with pytest.raises(dk.InvalidArgument, match=pattern):
        check_made_up(SPECS[:2] if "its inputs: x, ids" in pattern else SPECS, **kwargs)
    if (kwargs, pattern) in BAD_TYPES:  # found before the model is opened
        with pytest.raises(dk.InvalidArgument, match=pattern):
            check_made_up(None, **kwargs)
    else:
        check_made_up(None, **kwargs)


def test_the_batch_size_is_not_given_twice() -> None:
    """With a batch size, ``dims`` naming the batch symbol would be ignored: refused instead."""
    with pytest.raises(dk.InvalidArgument, match=r"dims\['N'\]: 'N' is the batch \(first\) dimension of "
                                                 r"input 'x', set by the batch size \(batch_sizes=\); do not "
                                                 r"give it in dims"):
        resolve_shapes([spec("x", ("N", 3))], batch=2, dims={"N": 4})
    assert resolve_shapes([spec("x", ("N", 3))], dims={"N": 4})[0] == {"x": (4, 3)}  # no batch: dims sets it


def test_huge_made_up_inputs_are_refused_before_allocating() -> None:
    with pytest.raises(dk.InvalidArgument, match=r"made-up inputs of 23841\.9 GiB \(x: \[99999999999, 1, 8, "
                                                 r"8\]\) are more than deploykit makes up \(4 GiB\); give "
                                                 r"smaller shapes=, dims= or batch sizes"):
        synthesize([spec("x", ("N", 1, 8, 8))], batch=99_999_999_999)
    with pytest.raises(dk.InvalidArgument, match="made-up inputs of"):
        synthesize([spec("x", ("N", "S"))], dims={"S": 10**12})


def test_check_made_up_normalises() -> None:
    assert check_made_up(None) == MadeUpArgs(None, None, None)
    got = check_made_up(SPECS, shapes={"x": [np.int64(2), 3, 4, 5]}, dims={"S": np.int32(7)},
                        value_ranges={"ids": [0, 10], "u": 3, "flag": 1, "x": (-1.5, 1.5)})
    assert got == MadeUpArgs({"x": (2, 3, 4, 5)}, {"S": 7}, {"ids": (0, 10), "u": 3, "flag": 1,
                                                              "x": (-1.5, 1.5)})
    assert type(got.shapes["x"][0]) is int and type(got.dims["S"]) is int  # type: ignore[index]
    check_made_up([spec("x", None)], shapes={"x": (1, 2, 3)})  # unknown rank: any shape fits


@pytest.mark.zoo
def test_real_detector_runs_on_synthesized_inputs(zoo_path: Callable[[str], Path]) -> None:
    path = zoo_path("rapidocr_det")
    engine = dk.load(path, backend="onnxruntime")
    made = synthesize(engine.inputs, batch=1, dims={"p2o.DynamicDimension.1": 96,
                                                     "p2o.DynamicDimension.2": 128},
                      proto=onnx.load(str(path)))
    assert made.feeds["x"].shape == (1, 3, 96, 128) and made.representative
    out = engine.run(made.feeds)["sigmoid_0.tmp_0"]
    assert out.shape == (1, 1, 96, 128) and np.isfinite(out).all()
