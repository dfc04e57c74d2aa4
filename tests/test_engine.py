"""The Engine contract: specs, run(), input validation and conversion, outputs, lifecycle."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

import deploykit as dk
from tests import models
from tests.concurrency import run_in_threads

pytest.importorskip("onnxruntime", reason="the Engine contract is exercised on onnxruntime")


@pytest.fixture
def add_engine() -> dk.Engine:
    return dk.load(models.dynamic_add(), backend="onnxruntime", threads=1)


def test_specs_keep_symbolic_dims(add_engine: dk.Engine) -> None:
    assert add_engine.inputs == [dk.TensorSpec("x", ("N", 3), np.dtype("float32")),
                                 dk.TensorSpec("y", ("N", 3), np.dtype("float32"))]
    assert add_engine.outputs == [dk.TensorSpec("z", ("N", 3), np.dtype("float32"))]
    assert str(add_engine.inputs[0]) == "x: float32[N,3]"


def test_unknown_and_negative_dims_become_none(zoo_path) -> None:
    engine = dk.load(zoo_path("rapidocr_cls"))
    (x,) = engine.inputs
    assert x.name == "x" and x.shape == (None, 3, None, None) and x.dtype == np.float32
    assert x.shape_str() == "[?,3,?,?]"


def test_run_returns_dict_of_arrays(add_engine: dk.Engine, rng: np.random.Generator) -> None:
    x = rng.standard_normal((5, 3)).astype(np.float32)
    y = rng.standard_normal((5, 3)).astype(np.float32)
    out = add_engine.run({"x": x, "y": y})
    assert list(out) == ["z"]
    np.testing.assert_array_equal(out["z"], x + y)
    np.testing.assert_array_equal(add_engine({"x": x, "y": y})["z"], x + y)  # __call__


def test_bare_array_for_single_input_model() -> None:
    engine = dk.load(models.fixed_image(), backend="onnxruntime")
    x = np.linspace(-1, 1, 48, dtype=np.float32).reshape(1, 3, 4, 4)
    np.testing.assert_array_equal(engine.run(x)["y"], np.maximum(x, 0))


def test_bare_array_for_multi_input_model_is_refused(add_engine: dk.Engine) -> None:
    with pytest.raises(dk.InputMismatch, match=r"bare array .* 2 inputs \(x, y\)"):
        add_engine.run(np.zeros((1, 3), np.float32))


def test_output_selection() -> None:
    engine = dk.load(models.many_io(), backend="onnxruntime")
    feeds = {"a": np.ones((2, 4), np.float32), "b": np.ones((2, 4), np.float32),
             "i": np.full((2, 4), 3), "j": np.full((2, 4), 4), "flag": np.eye(2, 4, dtype=bool)}
    out = engine.run(feeds, outputs=["picked32", "sum"])
    assert list(out) == ["picked32", "sum"]
    assert out["picked32"].dtype == np.int32
    np.testing.assert_array_equal(out["picked32"], np.where(np.eye(2, 4, dtype=bool), 3, 4))
    assert list(engine.run(feeds, outputs="prod")) == ["prod"]
    full = engine.run(feeds)
    assert list(full) == ["sum", "prod", "not_flag", "picked32"]
    assert full["prod"].dtype == np.int64 and full["not_flag"].dtype == np.bool_
    with pytest.raises(dk.InputMismatch, match=r"unknown output\(s\) 'nope'.*'sum', 'prod'"):
        engine.run(feeds, outputs=["nope"])


@pytest.mark.parametrize("feeds, pattern", [
    ({"x": np.zeros((1, 3), np.float32)}, r"missing input\(s\) 'y'; the model's inputs are: "
                                          r"x: float32\[N,3\], y: float32\[N,3\]"),
    ({"x": np.zeros((1, 3), np.float32), "y": np.zeros((1, 3), np.float32), "w": 1},
     r"unknown input\(s\) 'w'"),
    ({"X": np.zeros((1, 3), np.float32), "y": np.zeros((1, 3), np.float32)},
     r"unknown input\(s\) 'X'; missing input\(s\) 'x'"),
])
def test_wrong_names(add_engine: dk.Engine, feeds: dict, pattern: str) -> None:
    with pytest.raises(dk.InputMismatch, match=pattern):
        add_engine.run(feeds)


def test_wrong_rank_and_fixed_dim() -> None:
    engine = dk.load(models.fixed_image(), backend="onnxruntime")
    with pytest.raises(dk.InputMismatch, match=r"input 'x': got 3-d array of shape \(3, 4, 4\), "
                                               r"expected rank 4: float32\[1,3,4,4\]"):
        engine.run({"x": np.zeros((3, 4, 4), np.float32)})
    with pytest.raises(dk.InputMismatch, match=r"got shape \(1, 3, 4, 5\), expected \[1,3,4,4\] "
                                               r"\(dimension 3 must be 4, got 5\)"):
        engine.run({"x": np.zeros((1, 3, 4, 5), np.float32)})
    with pytest.raises(ValueError):  # InputMismatch is also a ValueError
        engine.run({"x": np.zeros((2, 3, 4, 4), np.float32)})


def test_same_kind_conversions_are_done(add_engine: dk.Engine) -> None:
    x64 = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    y_int = [[1, 2, 3], [4, 5, 6]]  # a nested list of Python ints
    out = add_engine.run({"x": x64, "y": y_int})["z"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x64.astype(np.float32) + np.array(y_int, np.float32))


def test_non_contiguous_views_are_accepted(add_engine: dk.Engine, rng: np.random.Generator) -> None:
    base = rng.standard_normal((3, 8)).astype(np.float32)
    x = base[:, ::2][:, :3]  # strided view
    y = base.T[:3].T  # Fortran-ordered view, shape (3, 3)
    assert not x.flags.c_contiguous and not y.flags.c_contiguous
    np.testing.assert_array_equal(add_engine.run({"x": x, "y": y})["z"], x + y)


def test_integer_inputs_narrowed_only_when_values_fit() -> None:
    engine = dk.load(models.uint8_and_half(), backend="onnxruntime")
    h = np.zeros((1, 2), np.float16)
    out = engine.run({"u": np.array([[0, 255]]), "h": h})["out"]  # int64 list -> uint8
    np.testing.assert_array_equal(out, np.array([[0, 255]], np.float16))
    with pytest.raises(dk.InputMismatch, match=r"int64 values in \[-1, 300\] do not fit uint8"):
        engine.run({"u": np.array([[-1, 300]]), "h": h})
    with pytest.raises(dk.InputMismatch, match="float64 values overflow float16"):
        engine.run({"u": np.zeros((1, 2), np.uint8), "h": np.array([[1e6, 0.0]])})


@pytest.mark.parametrize("value, pattern", [
    (np.array([[1.5, 2.0, 3.0]]), r"got float64 array, expected int64.*drop fractions"),
    (np.array([["a", "b", "c"]]), r"got <U1 array, expected int64"),
    (np.array([[1 + 2j, 0, 0]]), r"got complex128 array, expected int64"),
])
def test_lossy_conversions_are_refused(value: np.ndarray, pattern: str) -> None:
    engine = dk.load(models.many_io(), backend="onnxruntime")
    feeds = {"a": np.zeros((1, 4), np.float32), "b": np.zeros((1, 4), np.float32),
             "i": value, "j": np.zeros((1, 4), np.int64), "flag": np.zeros((1, 4), bool)}
    with pytest.raises(dk.InputMismatch, match=pattern):
        engine.run(feeds)


def test_bool_input_refuses_ints() -> None:
    engine = dk.load(models.many_io(), backend="onnxruntime")
    feeds = {"a": np.zeros((1, 4), np.float32), "b": np.zeros((1, 4), np.float32),
             "i": np.zeros((1, 4), np.int64), "j": np.zeros((1, 4), np.int64),
             "flag": np.array([[1, 0, 1, 0]])}
    with pytest.raises(dk.InputMismatch, match=r"input 'flag': got int64 array, expected bool"):
        engine.run(feeds)


def test_ragged_input_is_an_input_mismatch(add_engine: dk.Engine) -> None:
    with pytest.raises(dk.InputMismatch, match="input 'x': cannot make an array of the list"):
        add_engine.run({"x": [[1, 2, 3], [4]], "y": np.zeros((2, 3), np.float32)})


def test_empty_batch(add_engine: dk.Engine) -> None:
    empty = np.zeros((0, 3), np.float32)
    out = add_engine.run({"x": empty, "y": empty})["z"]
    assert out.shape == (0, 3) and out.dtype == np.float32


def test_string_tensors() -> None:
    engine = dk.load(models.strings(), backend="onnxruntime")
    assert engine.inputs[0].dtype == np.dtype(object)
    assert str(engine.inputs[0]) == "s: string[N]"
    out = engine.run({"s": np.array(["alpha", "béta", ""])})["t"]
    assert out.tolist() == ["alpha", "béta", ""]
    with pytest.raises(dk.InputMismatch, match="got float64 array, expected string"):
        engine.run({"s": np.array([1.0])})


def test_scalar_input() -> None:
    engine = dk.load(models.scalar_input(), backend="onnxruntime")
    assert engine.inputs[1].shape == ()
    out = engine.run({"x": np.array([1.0, 2.0], np.float32), "k": 3})["y"]
    np.testing.assert_array_equal(out, [3.0, 6.0])
    with pytest.raises(dk.InputMismatch, match="input 'k': got 1-d array"):
        engine.run({"x": np.array([1.0], np.float32), "k": [3]})


def test_initializer_backed_inputs_are_not_inputs() -> None:
    engine = dk.load(models.with_initializer_input(), backend="onnxruntime")
    assert [s.name for s in engine.inputs] == ["x"]
    np.testing.assert_array_equal(engine.run(np.ones((1, 2), np.float32))["y"], [[2.0, 3.0]])


def test_runtime_failure_is_a_backend_error() -> None:
    engine = dk.load(models.reshape_to(), backend="onnxruntime")
    ok = engine.run({"x": np.zeros((2, 6), np.float32), "shape": np.array([3, 4])})
    assert ok["y"].shape == (3, 4)
    pattern = r"onnxruntime failed running <onnx.ModelProto>: .*Reshape"
    with pytest.raises(dk.BackendError, match=pattern) as info:
        engine.run({"x": np.zeros((2, 6), np.float32), "shape": np.array([5, 5])})
    assert isinstance(info.value, RuntimeError) and info.value.__cause__ is not None


def test_context_manager_and_closed_state(add_engine: dk.Engine) -> None:
    with add_engine as engine:
        assert not engine.closed
    assert engine.closed and "(closed)" in repr(engine)
    with pytest.raises(dk.EngineClosed, match="is closed"):
        engine.run({"x": np.zeros((1, 3), np.float32), "y": np.zeros((1, 3), np.float32)})
    engine.close()  # idempotent


def test_repr_and_html(add_engine: dk.Engine) -> None:
    text = repr(add_engine)
    assert text.startswith("<deploykit.Engine onnxruntime on cpu: <")
    assert "input   x: float32[N,3]" in text and "output  z: float32[N,3]" in text
    page = add_engine._repr_html_()
    assert "<b>onnxruntime</b>" in page and "<b>cpu</b>" in page and "[N,3]" in page


def test_html_escapes_names() -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["<x>"], ["a&b"])], "g",
                              [models.vi("<x>", TensorProto.FLOAT, [1])],
                              [models.vi("a&b", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    page = dk.load(model, backend="onnxruntime")._repr_html_()
    assert "&lt;x&gt;" in page and "a&amp;b" in page and "<x>" not in page


def test_load_accepts_path_str_bytes_and_proto(tmp_path: Path) -> None:
    proto = models.dynamic_add()
    file = tmp_path / "add.onnx"
    onnx.save(proto, file)
    feeds = {"x": np.ones((2, 3), np.float32), "y": np.full((2, 3), 2, np.float32)}
    for model in (file, str(file), file.read_bytes(), proto):
        with dk.load(model) as engine:
            np.testing.assert_array_equal(engine.run(feeds)["z"], np.full((2, 3), 3))
    assert dk.load(file).source.label == str(file)


def test_backend_and_options_errors() -> None:
    with pytest.raises(dk.UnknownBackend, match=r"unknown backend 'tensorflowjs'; known backends: "):
        dk.load(models.dynamic_add(), backend="tensorflowjs")
    with pytest.raises(TypeError, match=r"backend 'onnxruntime' takes no option\(s\) warp_speed"):
        dk.load(models.dynamic_add(), backend="onnxruntime", warp_speed=9)


def test_what_actually_runs_is_reported(add_engine: dk.Engine) -> None:
    assert add_engine.backend == "onnxruntime" and add_engine.device == "cpu"
    info = add_engine.info
    assert info["providers"] == ["CPUExecutionProvider"] and info["threads"] == 1
    assert info["fallback"] is None and info["format"] == "onnx"


def test_logging_not_printing(caplog: pytest.LogCaptureFixture,
                              capsys: pytest.CaptureFixture[str]) -> None:
    with caplog.at_level(logging.INFO, logger="deploykit"):
        dk.load(models.dynamic_add()).close()
    assert any("loaded <" in r.getMessage() and r.name == "deploykit" for r in caplog.records)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_run_from_eight_threads_is_safe_and_identical(zoo_path, photo: np.ndarray) -> None:
    from tests import zoo

    feeds = zoo.sample_feeds("rapidocr_cls", photo)
    engine = dk.load(zoo_path("rapidocr_cls"), threads=1)
    expected = engine.run(feeds)
    results = [out for outs in run_in_threads(lambda i: engine.run(feeds), 8, 10) for out in outs]
    assert len(results) == 80
    for out in results:
        for name, value in expected.items():
            np.testing.assert_array_equal(out[name], value)


@pytest.mark.parametrize("backend", ["onnxruntime", "numpy"])
def test_threads_numpy_integers_accepted_nonsense_refused(backend: str) -> None:
    from deploykit.demo import MODEL_PATH

    pytest.importorskip(backend)
    with dk.load(MODEL_PATH, backend, threads=np.int64(1)) as engine:
        assert engine.info["threads"] == 1
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(dk.InvalidArgument, match=r"threads must be an int >= 1 .* got"):
            dk.load(MODEL_PATH, backend, threads=bad)


@pytest.mark.parametrize("backend", ["onnxruntime", "numpy"])
def test_preallocated_outputs(backend: str) -> None:
    """out=: the runtime writes into the buffers (onnxruntime: IO binding) or they are copied into
    (numpy); the same arrays come back; bad buffers are refused before anything runs."""
    if not dk.available_backends()[backend]:
        pytest.skip(f"{backend} is not usable here")
    from deploykit.demo import MODEL_PATH, load_test_data

    x, _ = load_test_data()
    engine = dk.load(MODEL_PATH, backend=backend)
    want = engine.run({"images": x})
    probs = np.full((len(x), 10), np.nan, np.float32)
    got = engine.run({"images": x}, out={"probabilities": probs})
    assert got["probabilities"] is probs and list(got) == ["probabilities", "label"]
    np.testing.assert_array_equal(probs, want["probabilities"])
    np.testing.assert_array_equal(got["label"], want["label"])
    labels = np.empty(len(x), np.int64)
    only = engine.run({"images": x}, outputs="label", out={"label": labels})
    assert only["label"] is labels and list(only) == ["label"]
    np.testing.assert_array_equal(labels, want["label"])
    bad = [({"probabilities": probs.astype(np.float64)}, r"got float64 array; expected a writeable"),
           ({"probabilities": probs[:, :5]}, r"got float32 array; expected a writeable, C-contiguous"),
           ({"probabilities": np.empty((len(x), 9), np.float32)}, r"got shape \(359, 9\); the output is"),
           ({"nope": probs}, r"out\['nope'\]: not an output of this call"),
           ([probs], r"out must be a dict output name -> preallocated array")]
    frozen = probs.copy()
    frozen.flags.writeable = False
    bad.append(({"probabilities": frozen}, r"expected a writeable"))
    for out, match in bad:
        with pytest.raises(dk.InputMismatch, match=match):
            engine.run({"images": x}, out=out)  # type: ignore[arg-type]
    with pytest.raises(dk.InputMismatch, match=r"(has shape \(3, 10\)|refused a buffer)"):
        engine.run({"images": x}, out={"probabilities": np.empty((3, 10), np.float32)})
