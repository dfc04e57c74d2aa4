"""Conv and ConvTranspose on the NumPy backend: the ONNX conformance cases run with the native
kernels, and many configurations (1D/2D/3D, groups, depthwise, dilations, strides, asymmetric
pads, every auto_pad, bias or not, weights constant or fed) compared against onnxruntime and
onnx.reference."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import deploykit as dk
from tests.backends.reference.node_cases import assert_native_and_conformant, node_cases
from tests.concurrency import run_in_threads

try:
    import onnxruntime as ort
except ImportError:  # the onnx.reference comparisons still run
    ort = None

_DTYPES = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE, np.float16: TensorProto.FLOAT16}


CASES = {name: case for name, case in node_cases(("conv", "convtranspose"), ("test_",)).items()
         if case.model.graph.node[0].op_type in ("Conv", "ConvTranspose")}


def test_all_conformance_cases_found() -> None:
    assert len(CASES) >= 17
    assert {n for n in CASES if n.startswith(("test_conv", "test_convtranspose"))} >= {
        "test_conv_with_autopad_same", "test_convtranspose_autopad_same", "test_convtranspose_3d"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_conformance(name: str) -> None:
    assert_native_and_conformant(CASES[name])


# -- configurations against onnxruntime and onnx.reference ---------------------------------------

def _model(op: str, x_shape: tuple[int, ...], w: np.ndarray, b: np.ndarray | None, attrs: dict[str, Any],
           const: bool, opset: int = 22) -> onnx.ModelProto:
    t = _DTYPES[w.dtype.type]
    names = ["x", "w"] + (["b"] if b is not None else [])
    inputs = [helper.make_tensor_value_info("x", t, x_shape)]
    inits = []
    for name, value in zip(names[1:], (w, b)):
        if const:
            inits.append(numpy_helper.from_array(value, name))
        else:
            inputs.append(helper.make_tensor_value_info(name, t, value.shape))
    node = helper.make_node(op, names, ["y"], **attrs)
    output = helper.make_tensor_value_info("y", t, [None] * len(x_shape))
    graph = helper.make_graph([node], "g", inputs, [output], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _check(op: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any], bias: bool,
           const: bool, dtype: type = np.float32, use_ort: bool = True, use_ref: bool = True,
           opset: int = 22) -> None:
    rng = np.random.default_rng(zlib.crc32(repr((op, x_shape, w_shape, attrs)).encode()))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    m_out = w_shape[0] if op == "Conv" else w_shape[1] * attrs.get("group", 1)
    b = rng.standard_normal(m_out).astype(dtype) if bias else None
    model = _model(op, x_shape, w, b, attrs, const, opset)
    feeds = {"x": x} if const else {"x": x, "w": w, **({"b": b} if bias else {})}
    engine = dk.load(model, backend="numpy")
    assert not any("Conv" in d for d in engine.info["delegated_ops"]), engine.info
    got = engine.run(feeds)["y"]
    assert got.dtype == dtype
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}
    use_ort = use_ort and ort is not None and dtype == np.float32
    if not (use_ort or use_ref):
        pytest.skip("no oracle for this case without onnxruntime")
    if use_ort:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        want = sess.run(None, feeds)[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, **tol)
    if use_ref:
        want = ReferenceEvaluator(model).run(None, feeds)[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, **tol)


CONV = [  # x shape, w shape, attributes
    ((1, 3, 48, 96), (16, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((2, 8, 9, 11), (12, 8, 1, 1), {}),  # 1x1: one matmul
    ((1, 16, 7, 10), (24, 16, 1, 1), {"strides": [2, 3]}),  # strided 1x1
    ((1, 32, 5, 6), (8, 32, 1, 1), {}),  # 1x1 projection (bias added, not folded)
    ((1, 4, 6, 6), (6, 4, 1, 1), {"pads": [1, 0, 0, 1]}),  # padded 1x1
    ((2, 12, 9, 8), (12, 1, 3, 3), {"group": 12, "pads": [1, 1, 1, 1]}),  # depthwise
    ((1, 10, 12, 13), (10, 1, 5, 5), {"group": 10, "pads": [2, 2, 2, 2], "strides": [2, 1]}),
    ((1, 6, 11, 9), (6, 1, 3, 3), {"group": 6, "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 6, 10, 9), (12, 1, 3, 3), {"group": 6, "pads": [0, 1, 2, 1]}),  # depth multiplier 2
    ((2, 8, 10, 7), (6, 4, 3, 2), {"group": 2, "dilations": [2, 1], "pads": [2, 0, 1, 1]}),
    ((1, 6, 13, 12), (9, 2, 3, 3), {"group": 3, "strides": [3, 2], "pads": [0, 2, 1, 0]}),
    ((1, 4, 9, 9), (5, 4, 3, 3), {"dilations": [2, 3], "pads": [2, 3, 2, 3]}),
    ((1, 3, 10, 11), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER"}),
    ((1, 3, 10, 11), (4, 3, 4, 2), {"auto_pad": "SAME_LOWER", "strides": [3, 2]}),
    ((1, 3, 10, 11), (4, 3, 4, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 3, 10, 11), (4, 3, 3, 3), {"auto_pad": "VALID", "strides": [2, 1]}),
    ((1, 3, 10, 11), (4, 3, 3, 3), {"auto_pad": "NOTSET", "pads": [0, 0, 2, 2], "kernel_shape": [3, 3]}),
    ((1, 2, 5, 5), (3, 2, 5, 5), {}),  # kernel as large as the input
    ((3, 4, 17), (6, 4, 3), {"pads": [1, 2], "strides": [2]}),  # 1D
    ((1, 8, 20), (8, 1, 5), {"group": 8, "dilations": [2], "pads": [4, 4]}),  # 1D depthwise
    ((1, 4, 15), (5, 4, 1), {"strides": [3]}),
    ((1, 3, 6, 7, 5), (4, 3, 3, 2, 3), {"pads": [1, 0, 1, 1, 1, 0], "strides": [1, 2, 2]}),  # 3D
    ((1, 4, 5, 6, 7), (4, 1, 3, 3, 3), {"group": 4, "auto_pad": "SAME_LOWER"}),  # 3D depthwise
    ((2, 4, 6, 5, 4), (6, 2, 2, 2, 2), {"group": 2, "dilations": [2, 1, 2]}),
]


@pytest.mark.parametrize("const", [True, False], ids=["const-w", "fed-w"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(("x_shape", "w_shape", "attrs"), CONV, ids=[str(i) for i in range(len(CONV))])
def test_conv(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any], bias: bool,
              const: bool) -> None:
    _check("Conv", x_shape, w_shape, attrs, bias, const)


@pytest.mark.parametrize("index", range(0, len(CONV), 3))
def test_conv_float64(index: int) -> None:
    _check("Conv", *CONV[index], True, True, dtype=np.float64)  # onnxruntime has no double Conv


@pytest.mark.parametrize("opset", [10, 11, 21, 22])
def test_conv_every_schema_version_is_native(opset: int) -> None:
    _check("Conv", (1, 4, 7, 6), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}, True, True, opset=opset)
    _check("ConvTranspose", (1, 2, 4, 3), (2, 3, 3, 3), {"strides": [2, 2]}, True, True, opset=opset)


def test_conv_same_with_dilations() -> None:  # onnxruntime refuses SAME_* with dilations
    for mode in ("SAME_UPPER", "SAME_LOWER"):
        attrs = {"auto_pad": mode, "dilations": [2, 3], "strides": [2, 1]}
        _check("Conv", (1, 3, 9, 10), (4, 3, 3, 2), attrs, True, True, use_ort=False)


def _random_conv(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]:
    nsp = int(rng.choice([1, 2, 2, 2, 3]))
    group = int(rng.choice([1, 1, 2, 3]))
    cg, mg = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    if rng.random() < 0.3:
        cg, mg = 1, 1  # depthwise
    k = [int(v) for v in rng.integers(1, 4, nsp)]
    d = [int(v) for v in rng.integers(1, 3, nsp)]
    s = [int(v) for v in rng.integers(1, 4, nsp)]
    attrs: dict[str, Any] = {"group": group, "strides": s, "dilations": d}
    mode = str(rng.choice(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if mode == "NOTSET":
        attrs["pads"] = [int(v) for v in rng.integers(0, 3, 2 * nsp)]
    else:
        attrs["auto_pad"] = mode
        attrs["dilations"] = [1] * nsp  # onnxruntime refuses SAME_* with dilations
    sp = [int(rng.integers((ki - 1) * di + 1, (ki - 1) * di + 8)) for ki, di in zip(k, attrs["dilations"])]
    return (int(rng.integers(1, 3)), cg * group, *sp), (mg * group, cg, *k), attrs


RANDOM = [_random_conv(np.random.default_rng(seed)) for seed in range(30)]


@pytest.mark.parametrize("seed", range(len(RANDOM)))
def test_conv_random(seed: int) -> None:
    x_shape, w_shape, attrs = RANDOM[seed]
    _check("Conv", x_shape, w_shape, attrs, bias=seed % 2 == 0, const=seed % 3 != 0)


def test_float16_is_computed_in_float32_and_returned_as_float16() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 9, 9)).astype(np.float16)
    w = (rng.standard_normal((8, 1, 3, 3)) * 0.3).astype(np.float16)
    b = rng.standard_normal(8).astype(np.float16)
    attrs = {"group": 8, "pads": [1] * 4}
    y = dk.load(_model("Conv", x.shape, w, b, attrs, True), backend="numpy").run({"x": x})["y"]
    f32 = _model("Conv", x.shape, w.astype(np.float32), b.astype(np.float32), attrs, True)
    want = dk.load(f32, backend="numpy").run({"x": x.astype(np.float32)})["y"]
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float32), want, rtol=2e-3, atol=2e-3)


def test_non_contiguous_input_and_chained_convs() -> None:
    """A Transpose feeding a 1x1 conv (a strided view at run time) and a conv chain."""
    rng = np.random.default_rng(1)
    w1 = numpy_helper.from_array(rng.standard_normal((16, 6, 1, 1)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 1, 3, 3)).astype(np.float32), "w2")
    w3 = numpy_helper.from_array(rng.standard_normal((4, 16, 1, 1)).astype(np.float32), "w3")
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w1", "b1"], ["c1"]),
             helper.make_node("Conv", ["c1", "w2"], ["c2"], group=16, pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Conv", ["c2", "w3"], ["y"])]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 9, 10, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
                              initializer=[w1, b1, w2, w3])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((2, 9, 10, 6)).astype(np.float32)
    got = dk.load(model, backend="numpy").run({"x": x})["y"]
    np.testing.assert_allclose(got, ReferenceEvaluator(model).run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)
    if ort is not None:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(got, sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_threads_share_an_engine() -> None:
    """Work buffers are per thread: concurrent runs of one engine give each its own answer."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((24, 1, 5, 5)).astype(np.float32)
    engine = dk.load(_model("Conv", (1, 24, 20, 20), w, None, {"group": 24, "pads": [2] * 4}, True),
                     backend="numpy")
    xs = [rng.standard_normal((1, 24, 20, 20)).astype(np.float32) for _ in range(4)]
    wants = [engine.run({"x": x})["y"] for x in xs]
    runs = run_in_threads(lambda i: engine.run({"x": xs[i]})["y"], 4, 20)
    for i, outs in enumerate(runs):
        assert len(outs) == 20
        assert all(np.array_equal(out, wants[i]) for out in outs), f"thread {i}"


# -- ConvTranspose -----------------------------------------------------------------------------

TRANSPOSE = [  # x shape, w shape (C, M/group, *k), attributes
    ((1, 3, 5, 4), (3, 4, 3, 3), {}),
    ((2, 4, 4, 5), (4, 3, 2, 2), {"strides": [2, 2]}),
    ((1, 4, 4, 5), (4, 2, 3, 3), {"group": 2, "strides": [2, 3], "pads": [1, 0, 2, 1]}),
    ((1, 6, 3, 4), (6, 1, 3, 3), {"group": 6, "strides": [2, 2], "pads": [1, 1, 1, 1]}),  # depthwise
    ((1, 2, 4, 4), (2, 3, 3, 2), {"dilations": [2, 3], "strides": [2, 1]}),
    ((1, 2, 4, 4), (2, 3, 3, 3), {"strides": [3, 2], "output_padding": [2, 1]}),
    ((1, 2, 4, 3), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [8, 6]}),
    ((1, 2, 4, 3), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [8, 6], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 3, 4), (2, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 3, 4), (2, 3, 3, 3), {"strides": [2, 3], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 3, 4), (2, 3, 3, 3), {"strides": [2, 1], "auto_pad": "VALID"}),
    ((1, 3, 7), (3, 2, 4), {"strides": [3], "pads": [1, 2]}),  # 1D
    ((1, 2, 3, 4, 2), (2, 2, 2, 3, 2), {"strides": [2, 1, 2], "pads": [0, 1, 0, 1, 0, 1]}),  # 3D
    ((1, 4, 3, 3, 3), (4, 1, 3, 3, 3), {"group": 2, "strides": [2, 2, 2], "output_padding": [1, 0, 1]}),
    # stride == kernel: the kernel positions tile the output
    ((2, 3, 5), (3, 2, 3), {"strides": [3]}),
    ((1, 2, 4, 4), (2, 3, 2, 2), {"strides": [2, 2], "pads": [1, 0, 0, 1]}),
    ((1, 4, 3, 2, 3), (4, 1, 2, 2, 2), {"group": 2, "strides": [2, 2, 2]}),
    ((1, 2, 3, 3), (2, 2, 2, 2), {"strides": [2, 2], "output_padding": [1, 0]}),
]


@pytest.mark.parametrize("const", [True, False], ids=["const-w", "fed-w"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(("x_shape", "w_shape", "attrs"), TRANSPOSE,
                         ids=[str(i) for i in range(len(TRANSPOSE))])
def test_conv_transpose(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any],
                        bias: bool, const: bool) -> None:
    use_ref = _reference_runs_transpose(w_shape, attrs)
    _check("ConvTranspose", x_shape, w_shape, attrs, bias, const, use_ref=use_ref)


def _reference_runs_transpose(w_shape: tuple[int, ...], attrs: dict[str, Any]) -> bool:
    """onnx.reference fails output_shape with NOTSET padding, and groups (it writes one output
    channel per group, gives every group the whole bias, or fails to reshape the weights);
    onnxruntime is the oracle there."""
    return not ("output_shape" in attrs and "auto_pad" not in attrs) and attrs.get("group", 1) == 1


@pytest.mark.parametrize("index", range(0, len(TRANSPOSE), 2))
def test_conv_transpose_float64(index: int) -> None:
    x_shape, w_shape, attrs = TRANSPOSE[index]
    if not _reference_runs_transpose(w_shape, attrs):
        pytest.skip("no float64 oracle: onnx.reference cannot run it, onnxruntime has no double kernel")
    _check("ConvTranspose", x_shape, w_shape, attrs, True, True, dtype=np.float64, use_ort=False)


@pytest.mark.parametrize("attrs", [
    {"pads": [1, 1, 1, 1]},
    {"pads": [1, 1, 1, 1], "strides": [2, 2]},
    {"pads": [2, 1, 0, 2], "dilations": [2, 1]},
])
@pytest.mark.parametrize("bias", [False, True])
def test_large_single_group_conv_is_tiled_by_output_rows(attrs: dict[str, Any], bias: bool) -> None:
    """Columns over 4 MB are built a band of output rows at a time (rapidocr det's 3x3 convs).
    Sums of 288 products: compared with onnxruntime to 1e-5 of the output's scale."""
    if ort is None:
        pytest.skip("onnxruntime is the oracle here")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 32, 200, 160)).astype(np.float32)  # columns: 9-37 MB
    w = rng.standard_normal((8, 32, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32) if bias else None
    model = _model("Conv", x.shape, w, b, attrs, True, 22)
    got = dk.load(model, backend="numpy").run({"x": x})["y"]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))
