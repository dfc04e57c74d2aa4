"""Resize and Upsample on the NumPy backend: the ONNX conformance cases, run with the native
kernels, and random configurations compared against onnxruntime."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import onnx
import onnx.defs
import pytest
from onnx import TensorProto, helper

import deploykit as dk
from deploykit.backends.reference.registry import native_ops
from tests.backends.reference.node_cases import assert_native_and_conformant, node_cases

CASES = node_cases(("resize", "upsample"), ("test_resize", "test_upsample"))


def test_all_conformance_cases_found() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_conformance(name: str) -> None:
    assert_native_and_conformant(CASES[name])


def test_registered_versions() -> None:
    """Resize at every schema version; Upsample at 7 and 9 (1 is experimental, 10 deprecated)."""
    schemas = {s.since_version for s in onnx.defs.get_all_schemas_with_history()
               if s.domain == "" and s.name == "Resize"}
    registered = {(o, v) for d, o, v in native_ops() if d == "" and o in ("Resize", "Upsample")}
    assert registered == {("Resize", v) for v in schemas} | {("Upsample", 7), ("Upsample", 9)}


# --- models -------------------------------------------------------------------------------------

_ELEM: dict[type, int] = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16,
         np.float64: TensorProto.DOUBLE, np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}


def _resize_model(attrs: dict[str, Any], shape: list[Any], *, roi: list[float] | None = None,
                  scales: list[float] | None = None, sizes: list[int] | None = None,
                  dtype: type = np.float32, opset: int = 19,
                  runtime_params: bool = False) -> onnx.ModelProto:
    """A one-Resize model; roi/scales/sizes are initializers, or graph inputs if runtime_params."""
    names, inits, extra = ["x"], [], []
    for name, value, elem in (("roi", roi, TensorProto.FLOAT), ("scales", scales, TensorProto.FLOAT),
                              ("sizes", sizes, TensorProto.INT64)):
        if opset == 10 and name != "scales":
            continue
        names.append(name if value is not None else "")
        if value is None:
            continue
        if runtime_params:
            extra.append(helper.make_tensor_value_info(name, elem, [len(value)]))
        else:
            inits.append(helper.make_tensor(name, elem, [len(value)], value))
    while names[-1] == "":
        names.pop()
    node = helper.make_node("Resize", names, ["y"], **attrs)
    return _wrap(node, shape, dtype, opset, inits, extra)


def _wrap(node: onnx.NodeProto, shape: list[Any], dtype: type, opset: int,
          inits: list[onnx.TensorProto], extra: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
    elem = _ELEM[dtype]
    graph = helper.make_graph(
        [node], "resize", [helper.make_tensor_value_info("x", elem, shape), *extra],
        [helper.make_tensor_value_info("y", elem, [f"d{i}" for i in range(len(shape))])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _input(rng: np.random.Generator, shape: list[int], dtype: type) -> np.ndarray:
    if dtype in (np.uint8, np.int8):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _compare(model: onnx.ModelProto, feeds: dict[str, np.ndarray], atol: float = 1e-5) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    (want,) = ort.InferenceSession(model.SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"]).run(None, feeds)
    engine = dk.load(model, backend="numpy")
    assert not engine.info["delegated_ops"]
    (got,) = engine.run(feeds).values()
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-4, atol=atol)
    return got


# --- random configurations against onnxruntime --------------------------------------------------

#: scales that are exact in float32 and give whole output lengths on many sizes; onnxruntime
#: computes nearest-mode coordinates in float32 where onnx.reference uses float64, so a scale
#: like 1/3 rounds differently between them and neither is wrong
_SCALES = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0]
_CTMS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
         "tf_crop_and_resize"]


def _random_config(seed: int, antialias: bool = False) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    while True:
        config = _draw(rng, antialias)
        shape, factors = config["shape"], config.get("scales") or config["sizes"]
        axes = config["attrs"].get("axes", range(len(shape)))
        out = [int(shape[a] * f) if "scales" in config else f for a, f in zip(axes, factors)]
        if any(o != shape[a] for a, o in zip(axes, out)):  # onnxruntime copies same-shape resizes
            return config


def _draw(rng: np.random.Generator, antialias: bool) -> dict[str, Any]:
    mode = str(rng.choice(["linear", "cubic"] if antialias else ["nearest", "linear", "cubic"]))
    ctm = str(rng.choice(_CTMS[:-1] if antialias else _CTMS))
    attrs: dict[str, Any] = {"mode": mode, "coordinate_transformation_mode": ctm}
    if mode == "nearest":
        attrs["nearest_mode"] = str(rng.choice(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]))
    if antialias:
        attrs["antialias"] = 1
    if mode == "cubic":
        attrs["cubic_coeff_a"] = float(rng.choice([-0.75, -0.5]))
        attrs["exclude_outside"] = int(rng.integers(0, 2))
    # onnxruntime's cubic wants 4-D inputs with N and C untouched
    rank = 4 if mode == "cubic" or antialias else int(rng.integers(3, 6))
    shape = [int(rng.integers(1, 3)), int(rng.integers(1, 4)),
             *(int(rng.integers(2, 9)) for _ in range(rank - 2))]
    axes = list(range(rank))
    if rng.random() < 0.3:
        axes = [rank - 1, rank - 2] if rng.random() < 0.5 else [rank - 2, rank - 1]
        attrs["axes"] = axes
    spatial = [a >= 2 for a in axes]
    # align_corners / tf_crop_and_resize divide by the resized length: onnx takes scale * length,
    # onnxruntime the whole output length, so compare them where the two agree (sizes given)
    exact_width = ctm in ("align_corners", "tf_crop_and_resize", "half_pixel_symmetric")
    config: dict[str, Any] = {"attrs": attrs, "shape": shape}
    if exact_width or rng.random() < 0.5:
        top = shape if antialias else [12] * rank  # antialias only matters when shrinking
        sizes = [int(rng.integers(1, top[a] + 1)) if sp else shape[a] for a, sp in zip(axes, spatial)]
        if ctm == "pytorch_half_pixel" and antialias:  # onnx.reference maps 1-long outputs
            sizes = [max(n, 2) for n in sizes]  # to -0.5, not to the spec's 0 (test below)
        if ctm == "tf_crop_and_resize":  # onnxruntime ignores the roi of axes it does not resize
            sizes = [n + (n == shape[a]) if sp else n for a, n, sp in zip(axes, sizes, spatial)]
        elif "axes" in attrs and not exact_width and rng.random() < 0.4:  # not N, C: spatial only
            attrs["keep_aspect_ratio_policy"] = str(rng.choice(["not_larger", "not_smaller"]))
        config["sizes"] = sizes
    else:
        choices = [s for s in _SCALES if s < 1] if antialias else _SCALES
        config["scales"] = [float(rng.choice(choices)) if sp else 1.0 for sp in spatial]
    if ctm == "tf_crop_and_resize":
        starts = [float(rng.uniform(-0.3, 0.5)) if sp else 0.0 for sp in spatial]
        ends = [float(rng.uniform(0.5, 1.3)) if sp else 1.0 for sp in spatial]
        config["roi"] = starts + ends
        attrs["extrapolation_value"] = float(rng.choice([0.0, -2.5]))
    return config


RANDOM = [_random_config(seed) for seed in range(150)]


@pytest.mark.parametrize("config", RANDOM, ids=[
    f"{c['attrs']['mode']}-{c['attrs']['coordinate_transformation_mode']}-{i}" for i, c in enumerate(RANDOM)])
def test_matches_onnxruntime(config: dict[str, Any]) -> None:
    config = dict(config)
    attrs, shape = config.pop("attrs"), config.pop("shape")
    model = _resize_model(attrs, shape, **config)
    _compare(model, {"x": _input(np.random.default_rng(7), shape, np.float32)})


ANTIALIAS = [_random_config(1000 + seed, antialias=True) for seed in range(24)]


@pytest.mark.parametrize("config", ANTIALIAS, ids=[
    f"{c['attrs']['mode']}-{c['attrs']['coordinate_transformation_mode']}-{i}"
    for i, c in enumerate(ANTIALIAS)])
def test_antialias_matches_onnx_reference(config: dict[str, Any]) -> None:
    """Antialiased shrinking against onnx.reference: onnxruntime renormalizes the filter over
    the pixels inside the image where the spec (and the conformance data) repeats edge pixels."""
    from onnx.reference import ReferenceEvaluator

    config = dict(config)
    attrs, shape = config.pop("attrs"), config.pop("shape")
    model = _resize_model(attrs, shape, **config)
    x = _input(np.random.default_rng(8), shape, np.float32)
    want = cast(list, ReferenceEvaluator(model).run(None, {"x": x}))[0]
    engine = dk.load(model, backend="numpy")
    assert not engine.info["delegated_ops"]
    (got,) = engine.run({"x": x}).values()
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.float16])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_other_dtypes_match_onnxruntime(dtype: type, mode: str) -> None:
    """Integers resample exactly in nearest mode; linear ones truncate like onnx.reference, where
    onnxruntime's fixed-point uint8/int8 path may land one unit away."""
    shape = [1, 3, 7, 9]
    model = _resize_model({"mode": mode}, shape, scales=[1, 1, 1.5, 0.75], dtype=dtype)
    x = _input(np.random.default_rng(2), shape, dtype)
    got = _compare(model, {"x": x}, atol=1.0 if mode == "linear" and dtype != np.float16 else 2e-3)
    assert got.dtype == dtype


@pytest.mark.parametrize("seed", range(30))
def test_legacy_resize_and_upsample_match_onnxruntime(seed: int) -> None:
    """Resize-10 and Upsample-7/9: asymmetric coordinates, nearest rounds down (ceil when
    shrinking), as onnxruntime implements these versions."""
    rng = np.random.default_rng(1000 + seed)
    op, opset = [("Resize", 10), ("Upsample", 9), ("Upsample", 7)][seed % 3]
    mode = str(rng.choice(["nearest", "linear"]))
    shape = [1, int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(1, 9))]
    low = 1.0 if op == "Upsample" else 0.5
    scales = [1.0, 1.0, *(float(rng.choice([s for s in _SCALES if s >= low])) for _ in range(2))]
    if opset == 7:
        model = _wrap(helper.make_node(op, ["x"], ["y"], mode=mode, scales=scales), shape, np.float32,
                      opset, [], [])
    else:
        model = _wrap(helper.make_node(op, ["x", "s"], ["y"], mode=mode), shape, np.float32, opset,
                      [helper.make_tensor("s", TensorProto.FLOAT, [4], scales)], [])
    _compare(model, {"x": _input(rng, shape, np.float32)})


def test_runtime_scales_and_sizes() -> None:
    """Scales, sizes and roi that are graph inputs: one engine, several shapes and factors."""
    model = _resize_model({"mode": "linear"}, [1, 2, "h", "w"], scales=[1, 1, 2, 2], runtime_params=True)
    rng = np.random.default_rng(5)
    for hw, sc in [((5, 7), [1, 1, 2, 2]), ((5, 7), [1, 1, 0.5, 1.5]), ((4, 3), [1, 1, 2, 2])]:
        _compare(model, {"x": _input(rng, [1, 2, *hw], np.float32), "scales": np.array(sc, np.float32)})
    model = _resize_model({"mode": "cubic", "coordinate_transformation_mode": "tf_crop_and_resize"},
                          [1, 1, 6, 6], roi=[0, 0, 0.1, 0.2, 1, 1, 0.9, 1.1], sizes=[1, 1, 4, 9],
                          runtime_params=True)
    _compare(model, {"x": _input(rng, [1, 1, 6, 6], np.float32),
                     "roi": np.array([0, 0, 0.1, 0.2, 1, 1, 0.9, 1.1], np.float32),
                     "sizes": np.array([1, 1, 4, 9], np.int64)})


def test_extrapolation_outside_the_roi() -> None:
    """tf_crop_and_resize fills output positions that map outside the input with the value."""
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    model = _resize_model({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
                           "extrapolation_value": -7.0}, [1, 1, 4, 4],
                          roi=[0, 0, -0.5, 0, 1, 1, 0.5, 1], sizes=[1, 1, 5, 4])
    y = dk.load(model, backend="numpy").run({"x": x})["y"]
    rows = -1.5 + 0.75 * np.arange(5)  # start * (4 - 1) + i * (end - start) * (4 - 1) / (5 - 1)
    for r, pos in enumerate(rows):
        if pos < 0:
            assert (y[0, 0, r] == -7).all()
        else:
            lo = int(np.floor(pos))
            want = x[0, 0, lo] + (pos - lo) * (x[0, 0, min(lo + 1, 3)] - x[0, 0, lo])
            np.testing.assert_allclose(y[0, 0, r], want, rtol=1e-6)


def test_nan_and_inf_stay_local() -> None:
    """A non-finite pixel only reaches the outputs that sample it (no dense-matrix smearing)."""
    x = np.zeros((1, 1, 8, 8), np.float32)
    x[0, 0, 0, 0] = np.inf
    model = _resize_model({"mode": "linear"}, [1, 1, 8, 8], scales=[1, 1, 2, 2])
    y = dk.load(model, backend="numpy").run({"x": x})["y"]
    assert np.isinf(y[0, 0, :2, :2]).all()
    assert np.isfinite(y[0, 0, 3:, 3:]).all()


def test_output_is_not_the_input() -> None:
    x = np.ones((1, 1, 3, 3), np.float32)
    model = _resize_model({"mode": "nearest"}, [1, 1, 3, 3], scales=[1, 1, 1, 1])
    y = dk.load(model, backend="numpy").run({"x": x})["y"]
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_pytorch_half_pixel_single_output_samples_the_start(mode: str) -> None:
    """pytorch_half_pixel maps a 1-long output axis to x_original = 0, as the spec says
    (onnxruntime agrees; onnx.reference takes -0.5)."""
    shape = [1, 1, 5, 6]
    model = _resize_model({"mode": mode, "coordinate_transformation_mode": "pytorch_half_pixel"},
                          shape, sizes=[1, 1, 1, 12])
    got = _compare(model, {"x": _input(np.random.default_rng(4), shape, np.float32)})
    assert got.shape == (1, 1, 1, 12)
