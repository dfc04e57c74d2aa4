"""The NumPy backend's LSTM, GRU and RNN: ONNX conformance cases, random models against
onnxruntime, and the real silero-vad model (LSTMs inside If branches)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import deploykit as dk
from tests.backends.reference.node_cases import assert_native_and_conformant, node_cases

OPS = ("LSTM", "GRU", "RNN")
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _delegated(engine: Any, op: str) -> list[str]:
    return [d for d in engine.info["delegated_ops"] if d.split("::")[-1].split("-")[0] == op]


# --------------------------------------------------------------------------- ONNX conformance


CASES = list(node_cases(("lstm", "gru", "rnn"),
                        ("test_lstm", "test_gru", "test_rnn", "test_simple_rnn")).values())


def test_conformance_cases_found() -> None:
    assert len(CASES) >= 18
    assert {c.model.graph.node[0].op_type for c in CASES if c.model is not None} <= set(OPS)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnx_conformance(case: Any) -> None:
    assert_native_and_conformant(case)


# --------------------------------------------------------------------------- against onnxruntime

ModelFactory = Callable[[int], tuple[onnx.ModelProto, dict[str, np.ndarray]]]


def _make(op: str, attrs: dict[str, Any], *, steps: int = 6, batch: int = 4, n_in: int = 3,
          hidden: int = 5, opset: int = 22, bias: bool = True, lens: list[int] | None = None,
          init: bool = False, peep: bool = False, outs: tuple[str, ...] = ("Y", "Y_h", "Y_c"),
          const_w: bool = True, dtype: type = np.float32, scale: float = 0.6,
          seed: int = 0) -> ModelFactory:
    """A factory layout -> (single-node model, feeds) sharing one set of random arrays, so the
    layout=1 model can be checked against onnxruntime (which only runs layout=0) on its twin."""
    rng = np.random.default_rng(seed)
    nd = 2 if attrs.get("direction") == "bidirectional" else 1
    g = GATES[op]
    feeds: dict[str, np.ndarray] = {"X": rng.standard_normal((steps, batch, n_in)).astype(dtype)}
    arrs: dict[str, np.ndarray] = {"W": (rng.standard_normal((nd, g * hidden, n_in)) * scale).astype(dtype),
            "R": (rng.standard_normal((nd, g * hidden, hidden)) * scale).astype(dtype)}
    inputs = ["X", "W", "R", "B" if bias else "", "L" if lens is not None else "", "h0" if init else ""]
    if bias:
        arrs["B"] = (rng.standard_normal((nd, 2 * g * hidden)) * 0.3).astype(dtype)
    if lens is not None:
        feeds["L"] = np.array(lens, np.int32)
    if init:
        feeds["h0"] = rng.standard_normal((nd, batch, hidden)).astype(dtype)
    if op == "LSTM":
        inputs += ["c0" if init else "", "P" if peep else ""]
        if init:
            feeds["c0"] = rng.standard_normal((nd, batch, hidden)).astype(dtype)
        if peep:
            arrs["P"] = (rng.standard_normal((nd, 3 * hidden)) * 0.5).astype(dtype)
    else:
        outs = tuple(o if o != "Y_c" else "" for o in outs)
    while not inputs[-1]:
        inputs.pop()
    outputs = list(outs)
    while not outputs[-1]:
        outputs.pop()
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))

    def build(layout: int) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
        f = {k: np.ascontiguousarray(v.swapaxes(0, 1)) if layout and k in ("X", "h0", "c0") else v
             for k, v in feeds.items()}
        node = helper.make_node(op, inputs, outputs, hidden_size=hidden,
                                **(dict(attrs, layout=layout) if layout else attrs))
        inits = []
        if const_w:
            inits = [numpy_helper.from_array(v, k) for k, v in arrs.items()]
        else:
            f.update(arrs)
        g_in = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                for k, v in f.items()]
        g_out = [helper.make_tensor_value_info(o, elem, [f"{o}_{i}" for i in range(4 if o == "Y" else 3)])
                 for o in outputs if o]
        graph = helper.make_graph([node], "g", g_in, g_out, inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8 if opset < 21 else 10
        return model, f

    return build


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _numpy(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    engine = dk.load(model, backend="numpy")
    op = model.graph.node[0].op_type
    assert not _delegated(engine, op), engine.info["delegated_ops"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow (or other) warnings
        return engine.run(feeds)


def _check_vs_ort(build: ModelFactory, layout: int = 0) -> None:
    ref = _ort(*build(0))
    got = _numpy(*build(layout))
    assert set(got) == set(ref)
    for name, want in ref.items():
        value = got[name]
        if layout:  # back to layout 0: Y [batch, seq, dirs, hidden], Y_h/Y_c [batch, dirs, hidden]
            value = value.transpose(1, 2, 0, 3) if name == "Y" else value.swapaxes(0, 1)
        assert value.dtype == want.dtype and value.shape == want.shape, name
        np.testing.assert_allclose(value, want, rtol=1e-4, atol=1e-5, err_msg=name)


_DIRS: tuple[dict[str, Any], ...] = ({}, {"direction": "reverse"}, {"direction": "bidirectional"})
_VARIANTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
for _op in OPS:
    for _lbr in ((0, 1) if _op == "GRU" else (None,)):
        _base = {} if _lbr is None else {"linear_before_reset": _lbr}
        for _d in _DIRS:
            _a = {**_base, **_d}
            _VARIANTS += [
                (_op, _a, {}),
                (_op, _a, {"lens": [6, 3, 0, 1], "init": True}),
                (_op, {**_a, "clip": 0.6}, {"init": True, "peep": True}),
                (_op, _a, {"layout": 1, "lens": [2, 6, 5, 1], "init": True, "peep": True}),
            ]
    _VARIANTS += [
        (_op, {"direction": "bidirectional"}, {"opset": 7, "lens": [6, 2, 4, 5], "init": True}),
        (_op, {"direction": "bidirectional"}, {"opset": 14, "init": True, "peep": True}),
        (_op, {}, {"const_w": False, "bias": False, "lens": [6, 6, 6, 6]}),
        (_op, {"direction": "bidirectional"}, {"outs": ("", "Y_h"), "lens": [1, 5, 3, 2]}),
        (_op, {}, {"outs": ("Y",), "batch": 1, "steps": 1}),
    ]
_VARIANTS += [
    ("LSTM", {"input_forget": 1}, {"init": True}),
    ("LSTM", {"input_forget": 1, "direction": "bidirectional"}, {"init": True, "peep": True}),
    ("LSTM", {"activations": ["HardSigmoid", "LeakyRelu", "ScaledTanh"], "activation_alpha": [0.3, 0.2, 1.4],
              "activation_beta": [0.4, 0.8]}, {"init": True, "peep": True}),
    ("LSTM", {"direction": "bidirectional", "activations": ["Sigmoid", "Tanh", "Tanh", "HardSigmoid", "Relu",
                                                            "Elu"],
              "activation_alpha": [0.3, 0.7], "activation_beta": [0.6]}, {"init": True}),
    ("GRU", {"activations": ["Sigmoid", "Softsign"], "linear_before_reset": 1}, {"init": True}),
    ("GRU", {"activations": ["HardSigmoid", "Affine"], "activation_alpha": [0.25, 0.5],
             "activation_beta": [0.45, 0.1]}, {}),
    ("RNN", {"activations": ["Relu"]}, {}),
    ("RNN", {"activations": ["Softplus"]}, {"init": True}),
    ("RNN", {"activations": ["ThresholdedRelu"], "activation_alpha": [0.2]}, {}),
    ("RNN", {"direction": "bidirectional", "activations": ["LeakyRelu", "Elu"],
             "activation_alpha": [0.2, 0.5]}, {"init": True}),
    ("RNN", {"direction": "bidirectional", "activations": ["Tanh", "LeakyRelu"]}, {}),  # default alpha
    ("RNN", {"activations": ["Sigmoid"]}, {"lens": [3, 6, 1, 2]}),
]


@pytest.mark.parametrize(("seed", "op", "attrs", "kw"), [(i, *v) for i, v in enumerate(_VARIANTS)],
                         ids=[f"{o}-{i}" for i, (o, _, _) in enumerate(_VARIANTS)])
def test_random_vs_onnxruntime(seed: int, op: str, attrs: dict[str, Any], kw: dict[str, Any]) -> None:
    kw = dict(kw)
    layout = kw.pop("layout", 0)
    _check_vs_ort(_make(op, attrs, seed=seed, **kw), layout)


def test_larger_random_vs_onnxruntime() -> None:
    for op in OPS:
        build = _make(op, {"direction": "bidirectional"}, steps=30, batch=3, n_in=16, hidden=24,
                      lens=[30, 17, 1], init=True, peep=True, scale=0.25)
        _check_vs_ort(build)


def test_activation_defaults_follow_the_onnx_ops() -> None:
    # an omitted activation_alpha takes the matching ONNX op's default (ThresholdedRelu: 1.0)
    ours = _numpy(*_make("RNN", {"activations": ["ThresholdedRelu"]}, init=True)(0))
    ref = _ort(*_make("RNN", {"activations": ["ThresholdedRelu"], "activation_alpha": [1.0]},
                      init=True)(0))
    for name, want in ref.items():
        np.testing.assert_allclose(ours[name], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("op", "old"), [("LSTM", 1), ("GRU", 1), ("GRU", 3), ("RNN", 1)])
def test_old_schema_versions_match_opset_7(op: str, old: int) -> None:
    attrs = {"linear_before_reset": 1} if old == 3 else {}
    model, feeds = _make(op, attrs, opset=7, init=True, lens=[6, 4, 2, 5])(0)
    want = _numpy(model, feeds)
    model.opset_import[0].version = old
    model.ir_version = 3
    engine = dk.load(model, backend="numpy", check=False)
    assert not _delegated(engine, op)
    got = engine.run(feeds)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("op", OPS)
def test_float64_stays_float64(op: str) -> None:
    ref = _ort(*_make(op, {"direction": "bidirectional"}, init=True, lens=[6, 2, 3, 4])(0))
    got = _numpy(*_make(op, {"direction": "bidirectional"}, init=True, lens=[6, 2, 3, 4],
                        dtype=np.float64)(0))
    for name, want in ref.items():
        assert got[name].dtype == np.float64
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", OPS)
def test_saturated_gates_raise_no_warnings(op: str) -> None:
    model, feeds = _make(op, {"direction": "bidirectional"}, init=True)(0)
    feeds["X"] = feeds["X"] * np.float32(1e6)
    got = _numpy(model, feeds)  # warnings are errors there
    assert all(np.isfinite(v).all() for v in got.values())
    softplus = {"LSTM": ["Sigmoid", "Tanh", "Softplus"], "GRU": ["Sigmoid", "Softplus"], "RNN": ["Elu"]}[op]
    model, feeds = _make(op, {"activations": softplus}, init=True)(0)
    feeds["X"] = feeds["X"] * np.float32(1e4)
    assert all(np.isfinite(v).all() for v in _numpy(model, feeds).values())


# --------------------------------------------------------------------------- silero-vad


def test_silero_vad_matches_onnxruntime(zoo_path: Callable[[str], Path]) -> None:
    """Both sample rates, judged as every zoo model is (tests/backends/reference/oracle.py)."""
    pytest.importorskip("onnxruntime")
    import onnx

    from tests import models, zoo
    from tests.backends.reference.oracle import assert_agrees

    path = zoo_path("silero_vad")
    feeds = zoo.sample_feeds("silero_vad")
    ours = dk.load(str(path), backend="numpy")
    assert not _delegated(ours, "LSTM"), ours.info["delegated_ops"]
    ref = dk.load(str(path), backend="onnxruntime")
    exact = dk.load(models.to_float64(onnx.load(path)), backend="numpy", check=False)
    for sr, n in ((16000, 512), (8000, 256)):
        f = dict(feeds, input=feeds["input"][:, :n], sr=np.array(sr, np.int64))
        f64 = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in f.items()}
        assert_agrees(ours.run(f), ref.run(f), lambda f64=f64: exact.run(f64))
