"""The demo: a real model this project trains, shipped in the package and reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deploykit.cli import main
from deploykit.demo import MODEL_PATH, load_test_data, run_demo
from deploykit.demo.build_digits import build

pytest.importorskip("onnxruntime", reason="the demo runs on an installed backend")


def _numpy_forward(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    """An independent oracle: the MLP's arithmetic from its own initializers."""
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    x = images.reshape(len(images), -1) / np.float32(16.0)
    h = np.maximum(x @ w["w1"] + w["b1"], 0)
    return np.argmax(h @ w["w2"] + w["b2"], axis=1)


def test_shipped_model_classifies_held_out_digits() -> None:
    result = run_demo(min_seconds=0.02)
    images, labels = load_test_data()
    assert result.n_test == len(labels) > 300
    assert result.accuracy >= 0.95
    oracle = _numpy_forward(onnx.load(MODEL_PATH), images)
    assert result.accuracy == pytest.approx(float((oracle == labels).mean()))
    assert result.auto_backend == "onnxruntime"
    assert [r.backend for r in result.rows] == ["onnxruntime", "numpy"]
    assert all(r.accuracy == result.accuracy and r.p50_batch1_ms > 0 for r in result.rows)
    text = result.format()
    assert "accuracy  0.9" in text and "p50 batch=1" in text


def test_build_script_reproduces_the_shipped_model(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="rebuilding needs scikit-learn (dev extra)")
    accuracy = build(tmp_path)
    rebuilt = onnx.load(tmp_path / "digits.onnx")
    shipped = onnx.load(MODEL_PATH)
    assert accuracy >= 0.95
    images, labels = load_test_data()
    with np.load(tmp_path / "digits_test.npz") as data:
        np.testing.assert_array_equal(data["labels"], labels)
    agree = (_numpy_forward(rebuilt, images) == _numpy_forward(shipped, images)).mean()
    assert agree >= 0.99  # bit-identical here; BLAS on another CPU may move a borderline digit
    assert [n.op_type for n in rebuilt.graph.node] == [n.op_type for n in shipped.graph.node]


def test_demo_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seconds", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "chosen by backend='auto'" in out and "held-out digits" in out
