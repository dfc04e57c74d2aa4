"""dk.export on Keras 3 models (``model.export(format="onnx")`` on the torch backend — the backend the
test environment has; TensorFlow is not installed here): a Sequential MLP, a small CNN and a
two-input functional model, each checked against ``model.predict`` within 1e-5, at the batch the
export saw, at batch 1 and at a batch it never saw."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import deploykit as dk

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported: TensorFlow is not installed
pytest.importorskip("torch", reason="PyTorch is not installed (the [torch] extra; make test installs it)")
keras = pytest.importorskip("keras", reason="Keras is not installed (the dev extra installs it)")
if keras.backend.backend() != "torch":
    pytest.skip(f"Keras was imported earlier with the {keras.backend.backend()} backend; these tests "
                "need the torch backend", allow_module_level=True)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras on numpy 2, its own


def _check_unseen_batch(model: object, path: Path, inputs: dict[str, np.ndarray]) -> None:
    engine = dk.load(path)
    got = engine.run(inputs)
    arrays = list(inputs.values())
    want = model.predict(arrays if len(arrays) > 1 else arrays[0], verbose=0)  # type: ignore[attr-defined]
    np.testing.assert_allclose(next(iter(got.values())), want, atol=1e-5)


def test_a_sequential_mlp_exports_within_1e5(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    report = dk.export(model, x, tmp_path / "mlp.onnx")
    assert report.ok and report.kind == "Keras Sequential (torch backend)"
    assert all(v < 1e-5 for v in report.figures.values()) and any("(batch 1)" in k for k in report.figures)
    assert "keras export" not in str(report) and "Keras Sequential" in str(report)
    name = dk.load(tmp_path / "mlp.onnx").inputs[0].name
    _check_unseen_batch(model, tmp_path / "mlp.onnx",
                        {name: np.random.default_rng(1).normal(size=(11, 8)).astype(np.float32)})


def test_a_small_cnn_exports_within_1e5(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(8, 3, padding="same"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    x = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    report = dk.export(model, x, tmp_path / "cnn.onnx")
    assert report.ok, str(report)
    engine = dk.load(tmp_path / "cnn.onnx")
    assert engine.inputs[0].shape[1:] == (16, 16, 3)  # channels-last, as the Keras model takes it
    _check_unseen_batch(model, tmp_path / "cnn.onnx",
                        {engine.inputs[0].name: np.random.default_rng(2).random((7, 16, 16, 3),
                                                                               dtype=np.float32)})


def test_a_two_input_functional_model_exports(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    a, b = keras.Input((4,), name="a"), keras.Input((6,), name="b")
    joined = keras.layers.Concatenate()([keras.layers.Dense(5)(a), keras.layers.Dense(5)(b)])
    model = keras.Model([a, b], keras.layers.Dense(2)(joined))
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(5, 6)).astype(np.float32)
    report = dk.export(model, (xa, xb), tmp_path / "two.onnx")
    assert report.ok and len(report.inputs) == 2, str(report)
    assert report.to_dict()["samples"] == 5


def test_a_mismatching_export_is_an_error_unless_accepted(tmp_path: Path) -> None:
    # atol 0 on a wide layer with large inputs: ONNX Runtime and torch sum in different orders, so the
    # last bits differ — a stand-in for a real mismatch that exercises the refusal and the acceptance
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((512,)), keras.layers.Dense(256), keras.layers.Dense(64)])
    x = np.random.default_rng(0).normal(scale=1e3, size=(8, 512)).astype(np.float32)
    with pytest.raises(dk.DeployKitError, match=r"does not match model\.predict") as raised:
        dk.export(model, x, tmp_path / "m.onnx", atol=0.0)
    assert not raised.value.report.ok  # type: ignore[attr-defined]
    report = dk.export(model, x, tmp_path / "m.onnx", atol=0.0, accept_mismatch=True)
    assert not report.ok and "FAILED" in str(report) and (tmp_path / "m.onnx").is_file()


@pytest.mark.parametrize("kwargs, match", [
    ({"dynamic": {"x": {0: "batch"}}}, "come from its Input layers"),
    ({"input_names": ["x"]}, "come from its Input layers"),
])
def test_torch_only_arguments_are_refused_for_keras(tmp_path: Path, kwargs: dict, match: str) -> None:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.export(model, np.zeros((2, 4), np.float32), tmp_path / "m.onnx", **kwargs)


def test_samples_of_the_wrong_count_are_refused(tmp_path: Path) -> None:
    a, b = keras.Input((4,), name="a"), keras.Input((6,), name="b")
    model = keras.Model([a, b], keras.layers.Concatenate()([a, b]))
    with pytest.raises(dk.InvalidArgument, match=r"this Functional.s predict fails on them.*expects 2"):
        dk.export(model, np.zeros((2, 4), np.float32), tmp_path / "m.onnx")
