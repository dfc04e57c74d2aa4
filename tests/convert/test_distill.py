"""dk.distill on real data: the digits teacher (an ONNX file) distilled into a smaller PyTorch student on
scikit-learn's digits, exported, gated on held-out samples; a student that did not learn is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deploykit as dk
from deploykit.demo import MODEL_PATH

torch = pytest.importorskip("torch", reason="PyTorch is not installed (the [torch] extra; make test "
                                            "installs it)")
pytest.importorskip("onnxscript", reason="the export extra (onnxscript) is not installed")


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data.reshape(-1, 1, 8, 8).astype(np.float32)


def student(hidden: int) -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, 10))


def test_a_smaller_student_learns_the_teacher(tmp_path: Path, digits: np.ndarray) -> None:
    out = tmp_path / "student.onnx"
    report = dk.distill(MODEL_PATH, student(16), digits, output=out, epochs=40, min_speedup=0.0, max_drop=0.2)
    teacher, row = report.candidates
    assert report.chosen == "student" and report.path == out and out.is_file(), str(report)
    assert row.accuracy["metric"] >= 0.85  # picks the teacher's class on held-out digits
    assert row.size_bytes is not None and teacher.size_bytes is not None
    assert row.size_bytes < teacher.size_bytes
    engine = dk.load(out)  # a drop-in: the teacher's input name, the target output's name
    assert [s.name for s in engine.inputs] == ["images"]
    assert [s.name for s in engine.outputs] == ["probabilities"]
    probabilities = engine.run({"images": digits[:5]})["probabilities"]
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    assert any("trained on" in n for n in report.notes) and "deploykit distill" in str(report)


def test_a_student_that_did_not_learn_is_refused(tmp_path: Path, digits: np.ndarray) -> None:
    report = dk.distill(MODEL_PATH, student(1), digits, output=tmp_path / "s.onnx", epochs=1, min_speedup=0.0)
    (row,) = report.candidates[1:]
    assert report.chosen == "fp32" and "metric" in row.reason and not (tmp_path / "s.onnx").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"student": "mlp"}, "student must be a torch.nn.Module"),
    ({"holdout": 1.0}, "below 1"),
    ({"target": "label"}, "no float output 'label'"),
    ({"data": [1, 2]}, "data must be an array"),
    ({"epochs": 0}, "epochs"),
])
def test_bad_arguments_are_refused(tmp_path: Path, digits: np.ndarray, kwargs: dict, match: str) -> None:
    args: dict[str, Any] = {"student": student(4), "data": digits[:50], **kwargs}
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.distill(MODEL_PATH, args.pop("student"), args.pop("data"), output=tmp_path / "s.onnx", **args)
