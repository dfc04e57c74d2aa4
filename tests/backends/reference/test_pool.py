"""Pooling on the NumPy backend: the ONNX conformance cases of every pooling op, run with the
native kernels, and random configurations compared against onnxruntime."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnx.defs
import pytest
from onnx import TensorProto, helper

import deploykit as dk
from deploykit.backends.reference.registry import native_ops
from tests.backends.reference.node_cases import assert_native_and_conformant, node_cases

PREFIXES = ("test_maxpool", "test_averagepool", "test_globalaveragepool", "test_globalmaxpool",
            "test_lppool")
OPS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool")


CASES = node_cases(("averagepool", "globalaveragepool", "globalmaxpool", "lppool", "maxpool"),
                    PREFIXES)


def test_all_conformance_cases_found() -> None:
    assert len(CASES) >= 51


@pytest.mark.parametrize("name", sorted(CASES))
def test_conformance(name: str) -> None:
    assert_native_and_conformant(CASES[name])


def test_registered_versions_are_schema_versions() -> None:
    """Each pooling op is registered at every schema version ONNX defines, and at no other."""
    schemas: dict[str, set[int]] = {op: set() for op in OPS}
    for s in onnx.defs.get_all_schemas_with_history():
        if s.domain == "" and s.name in schemas:
            schemas[s.name].add(s.since_version)
    for op in OPS:
        assert {v for d, o, v in native_ops() if d == "" and o == op} == schemas[op], op


# --- random configurations against onnxruntime -------------------------------------------------

_NP_TO_ONNX: dict[type, int] = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE,
               np.float16: TensorProto.FLOAT16, np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}


def _model(node: onnx.NodeProto, shape: list[int], dtype: type, opset: int,
           n_out: int = 1) -> onnx.ModelProto:
    elem = _NP_TO_ONNX[dtype]
    outs = [helper.make_tensor_value_info(o, elem if i == 0 else TensorProto.INT64,
                                          [f"d{j}" for j in range(len(shape))])
            for i, o in enumerate(list(node.output)[:n_out])]
    graph = helper.make_graph([node], "pool", [helper.make_tensor_value_info("x", elem, shape)], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


def _window_attrs(rng: np.random.Generator, nsp: int, dilations: bool) -> dict[str, Any]:
    kernel = [int(rng.integers(1, 5)) for _ in range(nsp)]
    attrs: dict[str, Any] = {"kernel_shape": kernel,
                             "strides": [int(rng.integers(1, 4)) for _ in range(nsp)]}
    pad_mode = rng.choice(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])
    if pad_mode == "NOTSET":
        attrs["pads"] = [int(rng.integers(0, k)) for k in kernel] * 2
        if rng.random() < 0.5:
            attrs["pads"] = [int(rng.integers(0, k)) for k in kernel + kernel]
        attrs["ceil_mode"] = int(rng.integers(0, 2))
    else:
        attrs["auto_pad"] = str(pad_mode)
    if pad_mode.startswith("SAME"):
        # onnxruntime sizes dilated SAME windows wrongly (test_same_dilated_follows_the_spec),
        # and refuses (or shifts) windows when the stride exceeds the window
        attrs["strides"] = [min(s, k) for s, k in zip(attrs["strides"], kernel)]
    elif dilations and rng.random() < 0.4:
        attrs["dilations"] = [int(rng.integers(1, 3)) for _ in range(nsp)]
    return attrs


def _span(attrs: dict[str, Any]) -> list[int]:
    dil = attrs.get("dilations", [1] * len(attrs["kernel_shape"]))
    return [(k - 1) * d + 1 for k, d in zip(attrs["kernel_shape"], dil)]


def _configs(op: str, n: int, seed: int) -> list[tuple[str, dict[str, Any], list[int], type, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        nsp = int(rng.integers(1, 4))
        spatial = [int(rng.integers(4, 12 if nsp < 3 else 8)) for _ in range(nsp)]
        dtype: type = np.float32
        opset = 22
        if op == "MaxPool":
            attrs = _window_attrs(rng, nsp, dilations=True)
            dtype = [np.float32, np.float32, np.float64, np.uint8, np.int8][int(rng.integers(0, 5))]
            if dtype == np.float64:
                opset = 12
        elif op == "AveragePool":
            attrs = _window_attrs(rng, nsp, dilations=True)
            attrs["count_include_pad"] = int(rng.integers(0, 2))
        elif op == "LpPool":
            attrs = _window_attrs(rng, nsp, dilations=True)
            attrs["p"] = int(rng.integers(1, 4))
        else:  # global ops (onnxruntime has float32 kernels only, and none at version 22)
            attrs = {"p": int(rng.integers(1, 4))} if op == "GlobalLpPool" else {}
            opset = 21
        if "kernel_shape" in attrs:
            spatial = [max(n, s) for n, s in zip(spatial, _span(attrs))]
        out.append((op, attrs, [int(rng.integers(1, 3)), int(rng.integers(1, 5)), *spatial], dtype, opset))
    return out


def _input(rng: np.random.Generator, shape: list[int], dtype: type) -> np.ndarray:
    if dtype in (np.uint8, np.int8):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


RANDOM = [c for i, op in enumerate(OPS) for c in _configs(op, 40 if "Global" not in op else 8, i)]


@pytest.mark.parametrize("config", RANDOM, ids=[f"{c[0]}-{i}" for i, c in enumerate(RANDOM)])
def test_matches_onnxruntime(config: tuple[str, dict[str, Any], list[int], type, int]) -> None:
    ort = pytest.importorskip("onnxruntime")
    op, attrs, shape, dtype, opset = config
    model = _model(helper.make_node(op, ["x"], ["y"], **attrs), shape, dtype, opset)
    _compare(ort, model, _input(np.random.default_rng(len(RANDOM)), shape, dtype))


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize("seed", range(6))
def test_maxpool_indices_match_onnxruntime(seed: int, storage_order: int) -> None:
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(100 + seed)
    nsp = 2 if storage_order else int(rng.integers(1, 4))
    attrs = _window_attrs(rng, nsp, dilations=True)
    spatial = [max(int(rng.integers(4, 9)), s) for s in _span(attrs)]
    shape = [int(rng.integers(1, 3)), int(rng.integers(1, 4)), *spatial]
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], storage_order=storage_order, **attrs)
    model = _model(node, shape, np.float32, 22, n_out=2)
    x = rng.permutation(int(np.prod(shape))).reshape(shape).astype(np.float32)  # no ties
    _compare(ort, model, x)


def _compare(ort: Any, model: onnx.ModelProto, x: np.ndarray) -> None:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    want = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})
    engine = dk.load(model, backend="numpy")
    assert not engine.info["delegated_ops"]
    got = list(engine.run({"x": x}).values())
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        tol = 1e-2 if g.dtype == np.float16 else 1e-5
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def test_pooled_output_is_not_the_input() -> None:
    """A 1x1 stride-1 window is an identity: the result must still be a fresh array."""
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    model = _model(helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[1, 1]), [1, 1, 3, 4],
                   np.float32, 22)
    y = dk.load(model, backend="numpy").run({"x": x})["y"]
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "LpPool"])
def test_same_dilated_follows_the_spec(op: str) -> None:
    """auto_pad SAME sizes the output ceil(in / stride) whatever the dilation (the spec and onnx
    shape inference; onnxruntime 1.2x sizes it as if undilated), padding by the dilated span."""
    attrs: dict[str, Any] = {"kernel_shape": [3, 2], "strides": [2, 1], "dilations": [2, 3],
                             "auto_pad": "SAME_LOWER"}
    model = _model(helper.make_node(op, ["x"], ["y"], **attrs), [1, 2, 9, 7], np.float32, 22)
    inferred = onnx.shape_inference.infer_shapes(model).graph.output[0].type.tensor_type.shape
    x = np.random.default_rng(0).standard_normal((1, 2, 9, 7)).astype(np.float32)
    y = dk.load(model, backend="numpy").run({"x": x})["y"]
    assert y.shape == tuple(d.dim_value for d in inferred.dim) == (1, 2, 5, 7)
    if op == "MaxPool":  # total padding 4 rows (2 before) and 3 columns (2 before: SAME_LOWER)
        padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 1)), constant_values=-np.inf)
        want = np.max([padded[:, :, 2 * i: 2 * i + 5: 2, j: j + 4: 3] for i in range(5) for j in range(7)],
                      axis=(3, 4)).transpose(1, 2, 0).reshape(1, 2, 5, 7)
        np.testing.assert_array_equal(y, want)


def test_same_with_stride_beyond_window_pads_nothing() -> None:
    """SAME with a stride longer than the window: the negative padding is clamped to zero (as in
    TensorFlow), so windows start at the first element."""
    model = _model(helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[1], strides=[3],
                                    auto_pad="SAME_LOWER"), [1, 1, 6], np.float32, 22)
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 6)
    np.testing.assert_array_equal(dk.load(model, backend="numpy").run({"x": x})["y"], x[:, :, ::3])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_global_pools_keep_dtype(dtype: type) -> None:
    x: np.ndarray = np.random.default_rng(3).standard_normal((2, 3, 5, 4, 3)).astype(dtype)
    axes = (2, 3, 4)
    tol = 2e-3 if dtype == np.float16 else 1e-6
    for op, want in [("GlobalAveragePool", x.astype(np.float64).mean(axis=axes, keepdims=True)),
                     ("GlobalMaxPool", x.max(axis=axes, keepdims=True)),
                     ("GlobalLpPool", np.sqrt((x.astype(np.float64) ** 2).sum(axis=axes, keepdims=True)))]:
        model = _model(helper.make_node(op, ["x"], ["y"]), list(x.shape), dtype, 22)
        y = dk.load(model, backend="numpy").run({"x": x})["y"]
        assert y.dtype == dtype and y.shape == (2, 3, 1, 1, 1)
        np.testing.assert_allclose(y.astype(np.float64), want, rtol=tol, atol=tol)
