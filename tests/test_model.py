"""Model files: every way a file can be wrong ends in ModelLoadError naming it — never a crash."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import deploykit as dk
from deploykit.model import open_model
from tests import models

pytest.importorskip("onnxruntime", reason="loading is exercised end to end on onnxruntime")


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(dk.ModelNotFound, match=f"model file not found: {missing}") as info:
        dk.load(missing)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, dk.ModelLoadError)


def test_directory_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(dk.ModelLoadError, match="not a regular file"):
        dk.load(tmp_path)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(dk.ModelLoadError, match=r"empty\.onnx: empty file \(0 bytes\)"):
        dk.load(empty)


def test_wrong_argument_type() -> None:
    with pytest.raises(dk.ModelLoadError, match="cannot load a model from int"):
        dk.load(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("fraction", [0.001, 0.1, 0.5, 0.9, 0.999])
def test_truncated_real_model(zoo_path, tmp_path: Path, fraction: float) -> None:
    data = zoo_path("rapidocr_cls").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(dk.ModelLoadError, match=r"cut\.onnx: .*(truncated|corrupt|ONNX)"):
        dk.load(cut)


@pytest.mark.parametrize("seed", range(6))
def test_garbage_bytes(seed: int) -> None:
    garbage = random.Random(seed).randbytes(2000)
    with pytest.raises(dk.ModelLoadError, match=r"<2000 bytes>"):
        dk.load(garbage)


def test_valid_protobuf_that_is_not_a_model() -> None:
    tensor = numpy_helper.from_array(np.arange(10, dtype=np.float32), "t").SerializeToString()
    with pytest.raises(dk.ModelLoadError, match=r"not an ONNX model|not a valid ONNX file"):
        dk.load(tensor)


def test_checker_findings(caplog: pytest.LogCaptureFixture) -> None:
    model = models.dynamic_add()
    model.graph.node[0].input[1] = "undefined_tensor"
    with pytest.raises(dk.ModelLoadError, match=r"fails the ONNX checker: .*undefined_tensor"):
        dk.load(model, check="strict")
    # by default the finding is logged and the runtime decides: its refusal is a ModelLoadError
    with caplog.at_level("WARNING", logger="deploykit"), \
            pytest.raises(dk.ModelLoadError, match=r"onnxruntime .* cannot load it"):
        dk.load(model, backend="onnxruntime")
    assert any("ONNX checker reports" in r.getMessage() for r in caplog.records)
    with pytest.raises(dk.ModelLoadError, match=r"numpy backend cannot compile it: .*undefined_tensor"):
        dk.load(model, backend="numpy", check=False)
    with pytest.raises(ValueError, match="check must be True, False or 'strict'"):
        dk.load(model, check="yes")


def test_checker_strictness_is_not_forced_on_runnable_models() -> None:
    """A graph output without a shape fails the checker but is a valid, runnable model."""
    model = models.reshape_to()
    model.graph.output[0].type.tensor_type.ClearField("shape")
    for backend in ("onnxruntime", "numpy"):
        out = dk.load(model, backend=backend).run({"x": np.zeros((2, 6), np.float32),
                                                   "shape": np.array([3, 4])})
        assert out["y"].shape == (3, 4)


def test_unsupported_opset() -> None:
    with pytest.raises(dk.ModelLoadError):
        dk.load(models.future_opset(99))
    with pytest.raises(dk.ModelLoadError, match=r"onnxruntime \S+ cannot load it: .*opset"):
        dk.load(models.future_opset(99), backend="onnxruntime", check=False)


def test_unknown_operator() -> None:
    with pytest.raises(dk.ModelLoadError, match="NoSuchOp"):
        dk.load(models.unknown_op(), backend="onnxruntime")


def test_auto_reports_every_candidate_reason() -> None:
    with pytest.raises(dk.ModelLoadError, match=r"no backend could run it — onnxruntime\[CPU\] on cpu: .*"
                                                r"NoSuchOp.*; numpy on cpu: .*NoSuchOp"):
        dk.load(models.unknown_op())


def test_random_mutations_never_crash(tmp_path: Path) -> None:
    """Byte flips of a valid model: each either loads and runs, or raises a DeployKitError."""
    good = models.dynamic_add().SerializeToString()
    rnd = random.Random(7)
    outcomes = {"refused": 0, "ran": 0, "run_refused": 0}
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        try:
            engine = dk.load(bytes(data))
        except dk.ModelLoadError:
            outcomes["refused"] += 1
            continue
        feeds = {s.name: np.ones([d if isinstance(d, int) else 1 for d in s.shape or ()],
                                 s.dtype if s.dtype != object else np.float32)
                 for s in engine.inputs}
        try:
            engine.run(feeds)
            outcomes["ran"] += 1
        except dk.DeployKitError:
            outcomes["run_refused"] += 1
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == 300


def test_external_data_inside_the_folder_loads(tmp_path: Path) -> None:
    model = models.with_initializer_input()
    model.graph.input.pop()  # IR-4 style: the weight is only an initializer
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.weights", size_threshold=0)
    assert (tmp_path / "m.weights").is_file()
    engine = dk.load(tmp_path / "m.onnx")
    np.testing.assert_array_equal(engine.run(np.ones((1, 2), np.float32))["y"], [[2.0, 3.0]])


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_escaping_the_folder_is_refused(tmp_path: Path, location: str) -> None:
    model = models.with_initializer_input()
    model.graph.input.pop()
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.weights", size_threshold=0)
    proto = onnx.load(tmp_path / "m.onnx", load_external_data=False)
    for entry in proto.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    evil = tmp_path / "evil.onnx"
    evil.write_bytes(proto.SerializeToString())
    with pytest.raises(dk.ModelLoadError, match="external data outside the model folder"):
        dk.load(evil)


def test_tflite_is_detected_by_magic() -> None:
    fake = b"\x1c\x00\x00\x00TFL3" + bytes(64)
    source = open_model(fake)
    assert source.format == "tflite"
    # it reaches the LiteRT backend, whose runtime refuses it (or which says it is not installed)
    litert = importlib.util.find_spec("ai_edge_litert") is not None
    with pytest.raises(dk.ModelLoadError if litert else dk.BackendUnavailable,
                       match="schema version 0" if litert else "tflite"):
        dk.load(fake)


def test_source_metadata(tmp_path: Path) -> None:
    file = tmp_path / "add.onnx"
    onnx.save(models.dynamic_add(), file)
    source = open_model(file)
    import hashlib

    assert source.sha256() == hashlib.sha256(file.read_bytes()).hexdigest()
    assert source.size == file.stat().st_size and source.format == "onnx"


def test_format_comes_from_the_content_not_the_name(tmp_path: Path) -> None:
    """An ONNX file named .tflite is an ONNX model; a text or an archive named .tflite/.onnx is
    refused saying what it looks like."""
    from deploykit.demo import MODEL_PATH

    onnx_named_tflite = tmp_path / "model.tflite"
    onnx_named_tflite.write_bytes(MODEL_PATH.read_bytes())
    assert open_model(onnx_named_tflite).format == "onnx"
    text = tmp_path / "notes.tflite"
    text.write_text("hello world!")
    with pytest.raises(dk.ModelLoadError, match=r"not a TFLite model \(no TFL3 .*\); it looks like text "
                                                r"\('hello world!'"):
        open_model(text)
    archive = tmp_path / "weights.onnx"
    archive.write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(dk.ModelLoadError, match=r"not a model deploykit loads .* a ZIP archive"):
        open_model(archive)
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(MODEL_PATH.read_bytes()[:300])
    with pytest.raises(dk.ModelLoadError, match=r"not a valid ONNX file .* truncated or corrupted"):
        open_model(truncated)


def test_metadata_of_an_onnx_model() -> None:
    from deploykit.demo import MODEL_PATH

    meta = dk.load(MODEL_PATH, backend="numpy").metadata
    assert meta["producer"] == "deploykit.demo.build_digits" and meta["graph"] == "digits_mlp"
    assert meta["custom"]["dataset"] == "sklearn.datasets.load_digits"
    assert meta["opsets"] == {"ai.onnx": 17}
