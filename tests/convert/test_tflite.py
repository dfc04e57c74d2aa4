"""dk.to_tflite: real conversions with onnx2tf in its own environment (``make test`` makes it in the
cache folder: ``python -m deploykit.convert.onnx2tf_env``), each .tflite run by the LiteRT backend and
checked against the ONNX model on inputs the conversion never saw. About 10 s per conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import deploykit as dk
from deploykit.convert.onnx2tf_env import MARKER, default_location
from deploykit.convert.tflite import ConversionFailed, TFLiteMismatch
from deploykit.demo import MODEL_PATH

pytest.importorskip("ai_edge_litert", reason="the LiteRT backend (ai-edge-litert) is not installed")
needs_env = pytest.mark.skipif(not (default_location() / MARKER).is_file(),
                               reason=f"the onnx2tf environment is not at {default_location()} (make test "
                                      "makes it: python -m deploykit.convert.onnx2tf_env, ~2.6 GB)")


def _digits(n: int, seed: int = 0) -> np.ndarray:
    from sklearn.datasets import load_digits
    images = load_digits().images.astype(np.float32).reshape(-1, 1, 8, 8)
    return images[np.random.default_rng(seed).permutation(len(images))[:n]]


@needs_env
def test_digits_float32_matches_onnx_on_images_it_never_saw(tmp_path: Path) -> None:
    report = dk.to_tflite(MODEL_PATH, tmp_path / "digits.tflite", samples=_digits(16))
    assert report.ok and report.precision == "float32" and report.layout == "nhwc", str(report)
    assert report.samples == 16 and report.size_bytes == (tmp_path / "digits.tflite").stat().st_size
    assert "to_tflite" in str(report) and "<table" in report._repr_html_()
    assert report.to_dict()["figures"]["label equal"] == 1.0
    lite, onnx_engine = dk.load(tmp_path / "digits.tflite"), dk.load(MODEL_PATH)
    assert lite.backend == "tflite" and lite.inputs[0].shape[1:] == (8, 8, 1)  # channels last
    for image in _digits(20, seed=1):
        want = onnx_engine.run({"images": image[None]})
        got = lite.run({lite.inputs[0].name: image[None].transpose(0, 2, 3, 1)})
        np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)
        assert got["label"].tolist() == want["label"].tolist()


@needs_env
def test_reduced_precisions_are_judged_by_the_accuracy_gate(tmp_path: Path) -> None:
    samples = _digits(32)
    for precision in ("float16", "int8"):
        report = dk.to_tflite(MODEL_PATH, tmp_path / f"{precision}.tflite", samples=samples,
                              precision=precision)
        assert report.ok and report.figures["probabilities cosine"] >= 0.98, str(report)
    small = (tmp_path / "int8.tflite").stat().st_size
    assert small < (tmp_path / "float16.tflite").stat().st_size * 1.2
    with pytest.raises(TFLiteMismatch, match="probabilities cosine") as raised:
        dk.to_tflite(MODEL_PATH, tmp_path / "strict.tflite", samples=samples, precision="int8", accuracy=1.0)
    assert not raised.value.report.ok and "below the accuracy gate" in str(raised.value.report)


@needs_env
def test_a_conv_net_keeps_its_layout_on_request_and_maps_4d_outputs(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch (the [torch] extra) makes the conv net")
    pytest.importorskip("onnxscript", reason="the export extra (onnxscript) is not installed")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 3, stride=2, padding=1))
    x = np.random.default_rng(0).random((4, 3, 16, 20), dtype=np.float32)
    dk.export(net, x, tmp_path / "conv.onnx")
    nhwc = dk.to_tflite(tmp_path / "conv.onnx", tmp_path / "nhwc.tflite", samples=x)
    kept = dk.to_tflite(tmp_path / "conv.onnx", tmp_path / "nchw.tflite", samples=x, layout="onnx")
    assert nhwc.ok and kept.ok, f"{nhwc}\n{kept}"
    assert dk.load(tmp_path / "nhwc.tflite").inputs[0].shape == (1, 16, 20, 3)
    lite = dk.load(tmp_path / "nchw.tflite")
    assert lite.inputs[0].shape == (1, 3, 16, 20)
    probe = np.random.default_rng(9).random((1, 3, 16, 20), dtype=np.float32)
    got = next(iter(lite.run({lite.inputs[0].name: probe}).values()))
    with torch.no_grad():
        want = net(torch.from_numpy(probe)).numpy()
    # onnx2tf writes 4-D outputs channels last even when the inputs keep their layout; the report says so
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, atol=1e-4)
    assert any("channels last in the .tflite" in n for n in kept.notes + nhwc.notes), str(kept)


@needs_env
def test_names_tensorflow_refuses_and_a_minus_one_batch_are_mended(tmp_path: Path) -> None:
    proto = onnx.load(str(MODEL_PATH))
    for k, node in enumerate(proto.graph.node):
        node.name = f"block@{k}:op"
    proto.graph.input[0].type.tensor_type.shape.dim[0].Clear()
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -1
    onnx.save(proto, str(tmp_path / "odd.onnx"))
    report = dk.to_tflite(tmp_path / "odd.onnx", tmp_path / "odd.tflite", samples=_digits(8))
    assert report.ok and any("renamed for TensorFlow" in n for n in report.notes), str(report)


@needs_env
def test_a_batch_size_fixes_the_batch(tmp_path: Path) -> None:
    report = dk.to_tflite(MODEL_PATH, tmp_path / "b4.tflite", samples=_digits(9), batch_size=4)
    assert report.ok and report.samples == 2  # two batches of four; the ninth sample is left over
    assert dk.load(tmp_path / "b4.tflite").inputs[0].shape[0] == 4


@pytest.mark.zoo
@needs_env
def test_a_model_onnx2tf_cannot_convert_fails_with_its_reason(tmp_path: Path) -> None:
    from tests import zoo
    det = zoo.path("rapidocr_det")
    with pytest.raises(ConversionFailed, match=r"onnx2tf could not convert the model:\n.*Error") as raised:
        dk.to_tflite(det, tmp_path / "det.tflite", input_shapes={"x": (1, 3, 96, 96)},
                     samples=np.random.default_rng(0).random((1, 3, 96, 96), dtype=np.float32))
    assert "onnx_op_name" in str(raised.value) and "Traceback" not in str(raised.value)
    assert not (tmp_path / "det.tflite").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"precision": "int4"}, "precision must be one of float32, float16, dynamic-int8, int8"),
    ({"layout": "nchw"}, "layout must be one of nhwc, onnx"),
    ({"batch_size": 0}, "batch_size"),
    ({"accuracy": 1.5}, "accuracy is a worst cosine"),
    ({"precision": "int8"}, "int8 calibrates its activation ranges on real samples"),
    ({"input_shapes": {"pixels": (1, 1, 8, 8)}}, "input_shapes: no input 'pixels'"),
    ({"input_shapes": {"images": (1, 8, 8)}}, r"input_shapes\['images'\]"),
    ({"env": 3}, "env must be the folder"),
])
def test_bad_arguments_are_refused_before_any_conversion(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.to_tflite(MODEL_PATH, tmp_path / "m.tflite", **kwargs)


@pytest.mark.parametrize("name, match", [("m.onnx", "ending in .tflite"),
                                         ("missing/m.tflite", "does not exist")])
def test_bad_paths_are_refused(tmp_path: Path, name: str, match: str) -> None:
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.to_tflite(MODEL_PATH, tmp_path / name)


def test_an_env_without_python_is_refused(tmp_path: Path) -> None:
    with pytest.raises(dk.InvalidArgument, match="no bin/python there"):
        dk.to_tflite(MODEL_PATH, tmp_path / "m.tflite", env=tmp_path)


def test_no_environment_and_no_install_says_how_to_get_one(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYKIT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(dk.BackendUnavailable, match=r"onnx2tf environment is not at .*install=True"):
        dk.to_tflite(MODEL_PATH, tmp_path / "m.tflite", install=False)


def test_a_symbolic_dimension_past_the_batch_must_be_given(tmp_path: Path) -> None:
    proto = onnx.load(str(MODEL_PATH))
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    onnx.save(proto, str(tmp_path / "sym.onnx"))
    with pytest.raises(dk.InvalidArgument, match=r"symbolic dimensions past the batch.*input_shapes"):
        dk.to_tflite(tmp_path / "sym.onnx", tmp_path / "m.tflite", samples=_digits(2))


@needs_env
def test_a_failing_conversion_leaves_no_file_and_an_accepted_one_does(tmp_path: Path) -> None:
    with pytest.raises(TFLiteMismatch):
        dk.to_tflite(MODEL_PATH, tmp_path / "strict.tflite", samples=_digits(8), precision="int8",
                     accuracy=1.0)
    assert list(tmp_path.iterdir()) == []  # neither the .tflite nor the file it was checked in
    report = dk.to_tflite(MODEL_PATH, tmp_path / "kept.tflite", samples=_digits(8), precision="int8",
                          accuracy=1.0, accept_mismatch=True)
    assert not report.ok and (tmp_path / "kept.tflite").is_file() and report.path == tmp_path / "kept.tflite"
    assert not any(n.startswith("output") for n in report.notes)  # 2-D outputs were never moved


def test_input_shapes_that_are_not_shapes_are_refused(tmp_path: Path) -> None:
    for bad in (5, (True, 1, 8, 8), "1,1,8,8"):
        with pytest.raises(dk.InvalidArgument, match=r"input_shapes\['images'\]"):
            dk.to_tflite(MODEL_PATH, tmp_path / "m.tflite", input_shapes={"images": bad})
