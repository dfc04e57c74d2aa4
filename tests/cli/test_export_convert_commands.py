"""``deploykit export`` (a saved .keras / .pt2 / scikit-learn pickle to a checked ONNX file) and
``deploykit convert`` (ONNX to a checked .tflite): the report printed, the files written, bad
arguments refused in one line with exit code 2 before any work."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import deploykit as dk
from deploykit.cli import main
from deploykit.convert.onnx2tf_env import MARKER, default_location
from deploykit.demo import MODEL_PATH, load_test_data


def _fitted_forest() -> tuple[object, np.ndarray]:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    x, y = load_iris(return_X_y=True)
    return RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y), x.astype(np.float32)


def test_a_pickle_is_read_only_when_trusted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("skl2onnx", reason="the export extra (skl2onnx) is not installed")
    forest, x = _fitted_forest()
    (tmp_path / "forest.pkl").write_bytes(pickle.dumps(forest))
    np.save(tmp_path / "x.npy", x[:40])
    argv = ["export", str(tmp_path / "forest.pkl"), "-i", str(tmp_path / "x.npy"),
            "-o", str(tmp_path / "f.onnx")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "forest.pkl holds pickled data: loading it can run any code" in err and "--trust-pickle" in err
    assert not (tmp_path / "f.onnx").exists()
    assert main([*argv, "--trust-pickle", "--json", str(tmp_path / "r.json")]) == 0
    assert "label agreement" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["figures"]["label agreement"] == 1.0


def test_a_torch_export_program_is_exported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch (the [torch] extra) is not installed")
    pytest.importorskip("onnxscript", reason="the export extra (onnxscript) is not installed")
    net = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 2)).eval()
    batch = torch.export.Dim("batch", min=1, max=512)
    torch.export.save(torch.export.export(net, (torch.randn(3, 6),), dynamic_shapes=({0: batch},)),
                      str(tmp_path / "net.pt2"))
    x = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    argv = ["export", str(tmp_path / "net.pt2"), "-i", str(tmp_path / "x.npy"),
            "-o", str(tmp_path / "net.onnx")]
    assert main(argv) == 2  # torch.export.load may unpickle: a .pt2 is read only when trusted
    assert "net.pt2 holds pickled data" in capsys.readouterr().err
    assert main([*argv, "--trust-pickle"]) == 0
    printed = capsys.readouterr().out
    assert "PyTorch" in printed and "passed" in printed and "(batch 1)" in printed
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = next(iter(dk.load(tmp_path / "net.onnx").run({"x": x}).values()))
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras's own, on numpy 2
def test_a_keras_file_is_exported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch", reason="PyTorch (Keras's backend here) is not installed")
    keras = pytest.importorskip("keras", reason="Keras is not installed (the dev extra installs it)")
    if keras.backend.backend() != "torch":
        pytest.skip(f"Keras was imported with the {keras.backend.backend()} backend; this test needs torch")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32))
    assert main(["export", str(tmp_path / "m.keras"), "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "m.onnx")]) == 0
    printed = capsys.readouterr().out
    assert "Keras Sequential (torch backend)" in printed and "passed" in printed


@pytest.mark.parametrize("argv, message", [
    (["{tmp}/model.h5", "-i", "{tmp}/x.npy", "-o", "{tmp}/m.onnx"], "reads .keras, .pt2, .pkl"),
    (["{tmp}/missing.pt2", "-i", "{tmp}/x.npy", "-o", "{tmp}/m.onnx"], "no file at"),
    (["{tmp}/x.pkl", "-o", "{tmp}/m.onnx"], "--input: give the samples"),
    (["{tmp}/x.pkl", "-i", "{tmp}/x.npy", "-o", "/no/such/folder/m.onnx"], "--output /no/such/folder"),
])
def test_bad_export_arguments_end_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                              message: str) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    (tmp_path / "model.h5").write_bytes(b"\x89HDF")
    (tmp_path / "x.pkl").write_bytes(pickle.dumps([1, 2]))
    code = main(["export", *(a.replace("{tmp}", str(tmp_path)) for a in argv)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("deploykit export: error:") and message in err, err


@pytest.mark.skipif(not (default_location() / MARKER).is_file(),
                    reason=f"the onnx2tf environment is not at {default_location()} (make test makes it)")
def test_convert_writes_a_checked_tflite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("ai_edge_litert", reason="the LiteRT backend (ai-edge-litert) is not installed")
    np.save(tmp_path / "x.npy", load_test_data()[0][:16])
    out = tmp_path / "digits.tflite"
    assert main(["convert", str(MODEL_PATH), "-i", str(tmp_path / "x.npy"), "-o", str(out),
                 "--precision", "float16", "--json", str(tmp_path / "r.json")]) == 0
    assert "deploykit to_tflite" in capsys.readouterr().out and out.is_file()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and report["precision"] == "float16" and report["samples"] == 16


@pytest.mark.parametrize("argv, message", [
    (["--input-shape", "images"], "--input-shape 'images': expected NAME=D0,D1"),
    (["--input-shape", "images=1,x"], "expected NAME=D0,D1"),
    (["--precision", "int8"], "int8 calibrates"),
    (["--env", "{tmp}"], "no bin/python there"),
])
def test_bad_convert_arguments_end_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                               message: str) -> None:
    code = main(["convert", str(MODEL_PATH), "-o", str(tmp_path / "m.tflite"),
                 *(a.replace("{tmp}", str(tmp_path)) for a in argv)])
    err = capsys.readouterr().err
    assert code == 2 and "deploykit convert: error:" in err and message in err, err
