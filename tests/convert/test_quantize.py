"""dk.quantize on real models: the gates keep the original when no candidate is faster and close
enough, keep the fastest one that is, and every refusal says why; bad arguments are refused by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("onnxruntime.quantization", reason="onnxruntime (its quantizer) is not installed")

import deploykit as dk
from deploykit.demo import MODEL_PATH, load_test_data


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_test_data()
    return images[:64], labels[:64]


def test_default_gates_keep_the_original_and_say_why_each_candidate_was_refused(
        tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    out = tmp_path / "digits.int8.onnx"
    # a speed no candidate reaches, so that the outcome does not depend on this machine's timings
    report = dk.quantize(MODEL_PATH, images, output=out, min_speedup=50.0,
                         metric=lambda o: float((o["label"] == labels).mean()))
    assert report.chosen == "fp32" and report.path == Path(MODEL_PATH) and not out.exists()
    names = [r.name for r in report.candidates]
    assert names == ["fp32", "int8-static", "int8-static-conv-matmul", "int8-dynamic", "fp16"]
    for row in report.candidates[1:]:
        assert not row.kept and row.reason and row.speedup is not None and row.size_bytes
        assert {"label equal", "probabilities cosine", "metric"} <= set(row.accuracy)
    assert report.samples == 64 and report.candidates[0].kept
    text = str(report)
    assert all(n in text for n in names) and "refused" in text
    assert "<table>" in report._repr_html_()
    json.dumps(report.to_dict())


def test_the_fastest_candidate_within_the_gates_is_written_and_runs(
        tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    out = tmp_path / "digits.int8.onnx"
    report = dk.quantize(MODEL_PATH, images, output=out, min_speedup=0.0, accuracy=0.95)
    assert report.chosen != "fp32" and report.path == out and out.is_file()
    kept = [r for r in report.candidates if r.kept]
    assert len(kept) == 1 and kept[0].name == report.chosen
    passing = [r for r in report.candidates[1:] if "passed" in r.reason or r.kept]
    assert kept[0].speedup == max(r.speedup for r in passing)  # the fastest of those that passed
    engine = dk.load(out, backend="onnxruntime")
    original = dk.load(MODEL_PATH, backend="onnxruntime")
    agree = (engine.run({"images": images})["label"] == original.run({"images": images})["label"]).mean()
    assert agree >= 0.95


def test_a_metric_that_drops_refuses_the_candidate(tmp_path: Path,
                                                    digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    want = dk.load(MODEL_PATH, backend="onnxruntime").run({"images": images})["probabilities"]

    def closeness(outputs: dict[str, np.ndarray]) -> float:  # 0 for the original, below for any change
        return -float(np.abs(outputs["probabilities"] - want).sum())

    report = dk.quantize(MODEL_PATH, images, output=tmp_path / "m.onnx", min_speedup=0.0, accuracy=0.0,
                         metric=closeness, max_drop=0.0, candidates=["int8-static"])
    (row,) = report.candidates[1:]
    assert report.chosen == "fp32" and "metric" in row.reason and "below the original's" in row.reason


def conv_model(opset: int) -> onnx.ModelProto:
    """A small conv net (Conv + Relu + Conv + GlobalAveragePool) at ``opset``, batch dimension dynamic."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 8, 3, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 1, 1])
    graph = helper.make_graph(nodes, "conv", [x], [y], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def test_an_opset_11_model_is_upgraded_first_and_its_qdq_model_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "conv11.onnx"
    onnx.save(conv_model(11), str(path))
    x = np.random.default_rng(1).random((16, 3, 16, 16), dtype=np.float32)
    report = dk.quantize(path, x, output=tmp_path / "conv.int8.onnx", min_speedup=0.0, accuracy=0.9,
                         candidates=["int8-static"])
    assert any("opset 11 upgraded to 13" in n for n in report.notes), report.notes
    assert report.chosen == "int8-static", str(report)
    onnx.checker.check_model(str(report.path))
    got, want = dk.load(report.path).run({"x": x})["y"].ravel(), dk.load(path).run({"x": x})["y"].ravel()
    assert float(got @ want / np.linalg.norm(got) / np.linalg.norm(want)) > 0.99


def test_no_calibration_warns_and_says_so(tmp_path: Path) -> None:
    with pytest.warns(dk.DeployKitWarning, match="no calibration given"):
        report = dk.quantize(MODEL_PATH, None, output=tmp_path / "m.onnx", candidates=["int8-dynamic"])
    assert any("made-up inputs" in n for n in report.notes)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"model": 3}, dk.InvalidArgument, "model must be the path"),
    ({"model": "nope.onnx"}, dk.InvalidArgument, "no file at"),
    ({"output": "."}, dk.InvalidArgument, "is a folder"),
    ({"output": "/no/such/folder/m.onnx"}, dk.InvalidArgument, "does not exist"),
    ({"accuracy": 2}, dk.InvalidArgument, "0..1"),
    ({"min_speedup": -1}, dk.InvalidArgument, "min_speedup"),
    ({"candidates": "int8-static"}, dk.InvalidArgument, "candidates must be a list"),
    ({"candidates": ["int4"]}, dk.InvalidArgument, "choose among"),
    ({"calibration": "images"}, dk.InvalidArgument, "calibration must be"),
    ({"calibration": {"pixels": np.zeros((2, 1, 8, 8), np.float32)}}, dk.InvalidArgument, "no samples for"),
    ({"calibration": np.zeros((4, 1, 8, 7), np.float32)}, dk.InvalidArgument, "does not fit the model"),
    ({"metric": "accuracy"}, dk.InvalidArgument, "metric must be a callable"),
    ({"threads": 0}, dk.InvalidArgument, "threads"),
    ({"output": str(MODEL_PATH)}, dk.InvalidArgument, "is the model itself"),
])
def test_bad_arguments_are_refused_by_name(tmp_path: Path, kwargs: dict[str, Any], error: type,
                                           match: str) -> None:
    args: dict[str, Any] = {"model": MODEL_PATH, "calibration": np.zeros((2, 1, 8, 8), np.float32),
                            "output": tmp_path / "m.onnx", **kwargs}
    with pytest.raises(error, match=match):
        dk.quantize(args.pop("model"), args.pop("calibration"), **args)


def test_fp16_is_made_from_the_folded_model_and_stays_close(tmp_path: Path, zoo_path: Any) -> None:
    """rapidocr det converted to float16 as it is gives cosine 0.64 (a BatchNorm variance of 9.8e7);
    made from the pre-processed model, whose BatchNorms are folded into the convolutions, it stays
    close — and is half the size."""
    pytest.importorskip("onnxconverter_common", reason="the optimize extra (onnxconverter-common) is missing")
    det = zoo_path("rapidocr_det")
    x = np.random.default_rng(1).random((2, 3, 64, 64), dtype=np.float32)
    report = dk.quantize(det, x, output=tmp_path / "det16.onnx", min_speedup=0.0, candidates=["fp16"])
    original, row = report.candidates
    assert min(row.accuracy.values()) > 0.999, str(report)
    assert report.chosen == "fp16" and row.size_bytes is not None and original.size_bytes is not None
    assert row.size_bytes < 0.6 * original.size_bytes


def test_a_paddle_model_leaves_no_file_in_the_working_folder(tmp_path: Path, zoo_path: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """ORT's symbolic shape inference, incomplete on Paddle models, saves ``sym_shape_infer_temp.onnx``
    (and its weights) into the working folder; dk.quantize runs it in a child process in its own."""
    cls = zoo_path("rapidocr_cls")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    x = np.random.default_rng(0).random((4, 3, 48, 192), dtype=np.float32)
    report = dk.quantize(cls, x, output=tmp_path / "q.onnx", min_speedup=0.0, accuracy=0.0,
                         candidates=["int8-dynamic"])
    assert any("symbolic shape inference failed" in n for n in report.notes), report.notes
    assert list(work.iterdir()) == []
