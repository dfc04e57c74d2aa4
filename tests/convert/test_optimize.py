"""dk.optimize: onnxslim on real models, written only when the outputs stay the same and the graph got
smaller; every figure before and after measured, not claimed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxslim", reason="the optimize extra (onnxslim) is not installed")
pytest.importorskip("onnxruntime", reason="figures are measured on onnxruntime")

import deploykit as dk
from deploykit.demo import MODEL_PATH, load_test_data


def test_a_paddle_cnn_gets_a_smaller_graph_with_the_same_outputs(tmp_path: Path, zoo_path: Any) -> None:
    cls = zoo_path("rapidocr_cls")
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 48, 192)).astype(np.float32)
    report = dk.optimize(cls, x, output=tmp_path / "cls.slim.onnx")
    assert report.written and report.path == tmp_path / "cls.slim.onnx" and report.path.is_file()
    assert report.after["nodes"] < report.before["nodes"]
    assert min(report.accuracy.values()) >= 0.9999
    assert {"bytes", "load ms", "run ms", "nodes"} <= set(report.before) and "written" in str(report)
    got = dk.load(report.path).run({"x": x})
    want = dk.load(cls).run({"x": x})
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)
    json.dumps(report.to_dict())


def test_nothing_to_simplify_leaves_the_model_alone(tmp_path: Path) -> None:
    report = dk.optimize(MODEL_PATH, load_test_data()[0][:8], output=tmp_path / "d.onnx")
    assert not report.written and report.path == Path(MODEL_PATH) and not (tmp_path / "d.onnx").exists()
    assert "nothing to simplify" in report.reason and "<table>" in report._repr_html_()


def test_the_output_may_not_be_the_model(tmp_path: Path) -> None:
    with pytest.raises(dk.InvalidArgument, match="is the model itself"):
        dk.optimize(MODEL_PATH, None, output=MODEL_PATH)
