"""dk.export on scikit-learn: pipelines, ensembles, a regressor and string labels exported and checked
against the original on real data (scikit-learn's bundled sets); failures and bad arguments refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import __version__ as protobuf_version

pytest.importorskip("skl2onnx", reason="the export extra (skl2onnx) is not installed")
pytest.importorskip("onnxruntime", reason="the exported model is checked on onnxruntime")

from sklearn.datasets import load_diabetes, load_digits, load_iris
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import deploykit as dk
from deploykit.convert.export import ExportMismatch, UnsupportedModel


def fitted(kind: str) -> tuple[Any, np.ndarray]:
    if kind == "scaler+pca+logistic (digits)":
        X, y = load_digits(return_X_y=True)
        return make_pipeline(StandardScaler(), PCA(20), LogisticRegression(max_iter=2000)).fit(X, y), X
    if kind == "random forest (iris)":
        X, y = load_iris(return_X_y=True)
        return RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y), X
    if kind == "hist gradient boosting (iris)":
        X, y = load_iris(return_X_y=True)
        return HistGradientBoostingClassifier(max_iter=20).fit(X, y), X
    if kind == "string labels (iris)":
        data = load_iris()
        names = np.asarray(data.target_names)[data.target]
        return LogisticRegression(max_iter=1000).fit(data.data, names), data.data
    X, y = load_diabetes(return_X_y=True)  # a regressor
    return make_pipeline(StandardScaler(), Ridge()).fit(X, y), X


@pytest.mark.parametrize("kind", ["scaler+pca+logistic (digits)", "random forest (iris)",
                                  "hist gradient boosting (iris)", "string labels (iris)",
                                  "ridge (diabetes)"])
def test_sklearn_models_export_and_agree_on_every_sample(tmp_path: Path, kind: str) -> None:
    model, X = fitted(kind)
    if "hist" in kind and int(protobuf_version.split(".")[0]) >= 7:
        # skl2onnx 1.20 writes booleans into an `ints` attribute (nodes_missing_value_tracks_true),
        # which protobuf 7 refuses; the fresh install resolves protobuf 6 (tritonclient caps it)
        with pytest.raises(UnsupportedModel, match="skl2onnx cannot convert this HistGradientBoosting"):
            dk.export(model, X, tmp_path / "m.onnx")
        return
    report = dk.export(model, X, tmp_path / "m.onnx")
    assert report.ok and report.samples == len(X) and (tmp_path / "m.onnx").is_file()
    if "ridge" in kind:
        assert report.figures["prediction max abs error"] < 1e-3
    else:
        assert report.figures["label agreement"] == 1.0
        assert report.figures["probability max abs error"] < 1e-4
    engine = dk.load(tmp_path / "m.onnx")  # what was written loads like any model
    assert engine.inputs[0].name == report.inputs[0]
    assert "check" in str(report) and "<table>" in report._repr_html_()
    json.dumps(report.to_dict())


def test_a_failing_check_is_an_error_unless_accepted(tmp_path: Path) -> None:
    model, X = fitted("scaler+pca+logistic (digits)")
    with pytest.raises(ExportMismatch, match="accept_mismatch=True") as raised:
        dk.export(model, X, tmp_path / "m.onnx", atol=0.0)  # float32 file vs float64 scikit-learn
    assert not raised.value.report.ok
    report = dk.export(model, X, tmp_path / "m.onnx", atol=0.0, accept_mismatch=True)
    assert not report.ok and "FAILED" in str(report)


@pytest.mark.parametrize("obj, samples, path, error, match", [
    (object(), np.zeros((2, 4)), "m.onnx", UnsupportedModel, "takes a fitted scikit-learn"),
    (LogisticRegression(), np.zeros((2, 4)), "m.onnx", dk.InvalidArgument, "not fitted"),
    ("fit", np.zeros((2, 4)), "m.onnx", UnsupportedModel, "builtins.str"),
    (None, "rows", "m.onnx", dk.InvalidArgument, "2-D array of numbers"),
    (None, np.zeros((0, 4)), "m.onnx", dk.InvalidArgument, "2-D array of numbers"),
    (None, np.zeros((2, 4)), "missing/m.onnx", dk.InvalidArgument, "does not exist"),
    (None, np.zeros((2, 4)), ".", dk.InvalidArgument, "is a folder"),
])
def test_bad_arguments_are_refused_by_name(tmp_path: Path, obj: Any, samples: Any, path: str, error: type,
                                           match: str) -> None:
    if obj is None:
        obj = fitted("random forest (iris)")[0]
    with pytest.raises(error, match=match):
        dk.export(obj, samples, tmp_path / path if path != "." else tmp_path)
