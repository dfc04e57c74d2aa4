"""Bundles: packed, loaded bit-identical to the artifact loaded directly, as a folder and as every
archive kind; tampering (a byte of the weights, an added file, a swapped label, a lying size, a
missing file) refused naming the file; preprocessing + model in one ``predict`` call."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import deploykit as dk
from deploykit.demo import MODEL_PATH, load_test_data

LABELS = [f"digit {i}" for i in range(10)]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYKIT_CACHE_DIR", str(tmp_path / "cache"))  # archives unpack here


def _pack(tmp_path: Path, name: str = "bundle", **kwargs: object) -> dk.Bundle:
    return dk.pack(MODEL_PATH, tmp_path / name, labels=LABELS,
                   metadata={"name": "digits", "version": "3", "source_framework": "scikit-learn"}, **kwargs)


@pytest.mark.parametrize("name", ["bundle", "bundle.zip", "bundle.tar", "bundle.tar.gz"])
def test_a_bundle_loads_bit_identical_to_its_artifact(tmp_path: Path, name: str) -> None:
    bundle = _pack(tmp_path, name)
    assert bundle.manifest.meta["name"] == "digits" and "digests verified" in str(bundle)
    images = load_test_data()[0][:16]
    engine = dk.load(tmp_path / name)
    direct = dk.load(MODEL_PATH).run({"images": images})
    got = engine.run({"images": images})
    for key in direct:
        np.testing.assert_array_equal(got[key], direct[key])
    assert engine.labels == LABELS and engine.bundle.manifest.artifacts == ["model/digits.onnx"]
    assert engine.pipeline is None


def test_the_manifest_lists_every_file_with_size_and_sha256(tmp_path: Path) -> None:
    _pack(tmp_path)
    data = json.loads((tmp_path / "bundle" / "deploykit.json").read_text())
    assert data["format"] == "deploykit-bundle" and data["format_version"] == 1
    assert set(data["files"]) == {"model/digits.onnx", "labels.txt"}
    entry = data["files"]["model/digits.onnx"]
    import hashlib
    assert entry["size"] == MODEL_PATH.stat().st_size
    assert entry["sha256"] == hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest()
    assert data["inputs"][0] == {"name": "images", "dtype": "float32", "shape": ["N", 1, 8, 8]}
    assert data["source_framework"] == "scikit-learn" and data["created_by"].startswith("deploykit")


def _flip_a_weight_byte(folder: Path) -> None:
    path = folder / "model" / "digits.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _add_a_file(folder: Path) -> None:
    (folder / "model" / "extra.onnx").write_bytes(MODEL_PATH.read_bytes())


def _swap_two_labels(folder: Path) -> None:
    path = folder / "labels.txt"
    lines = path.read_text().splitlines()
    lines[1], lines[7] = lines[7], lines[1]
    path.write_text("\n".join(lines) + "\n")


def _remove_the_labels(folder: Path) -> None:
    (folder / "labels.txt").unlink()


def _lie_about_a_size(folder: Path) -> None:
    manifest = json.loads((folder / "deploykit.json").read_text())
    manifest["files"]["labels.txt"]["size"] += 1
    (folder / "deploykit.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("tamper, message", [
    (_flip_a_weight_byte, r"model/digits\.onnx has changed \(sha256"),
    (_add_a_file, r"model/extra\.onnx is in the bundle but not listed"),
    (_swap_two_labels, r"labels\.txt has changed"),
    (_remove_the_labels, r"labels\.txt is listed in deploykit\.json but missing"),
    (_lie_about_a_size, r"labels\.txt is (\d+) bytes; deploykit\.json says (?!\1)\d+"),
])
def test_a_tampered_bundle_is_refused_naming_the_file(tmp_path: Path, tamper: object, message: str) -> None:
    _pack(tmp_path)
    tamper(tmp_path / "bundle")  # type: ignore[operator]
    with pytest.raises(dk.IntegrityError, match=message):
        dk.load(tmp_path / "bundle")
    assert issubclass(dk.IntegrityError, dk.ModelLoadError)


def test_a_tampered_archive_is_refused_too(tmp_path: Path) -> None:
    _pack(tmp_path, "staging")
    _flip_a_weight_byte(tmp_path / "staging")
    import zipfile
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        for path in sorted((tmp_path / "staging").rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(tmp_path / "staging").as_posix())
    with pytest.raises(dk.IntegrityError, match=r"model/digits\.onnx has changed"):
        dk.load(tmp_path / "bad.zip")


def test_predict_runs_the_bundled_preprocessing_then_the_model(tmp_path: Path) -> None:
    import onnx

    from tests import models
    onnx.save(models.image_identity(24, 32), str(tmp_path / "identity.onnx"))
    pipeline = dk.preprocess.Pipeline.letterbox((24, 32), mean=(0.485, 0.456, 0.406),
                                                std=(0.229, 0.224, 0.225))
    dk.pack(tmp_path / "identity.onnx", tmp_path / "b.zip", pipeline=pipeline)
    engine = dk.load(tmp_path / "b.zip")
    assert engine.pipeline == pipeline  # the spec made the round trip through pipeline.json
    image = np.random.default_rng(0).integers(0, 256, (50, 90, 3), dtype=np.uint8)
    np.testing.assert_array_equal(engine.predict(image)["y"], pipeline(image))


def test_predict_without_a_pipeline_says_what_is_missing() -> None:
    with pytest.raises(dk.InvalidArgument, match="predict needs a preprocessing pipeline"):
        dk.load(MODEL_PATH).predict(np.zeros((8, 8, 3), np.uint8))


def test_verify_on_a_plain_model_is_refused() -> None:
    with pytest.raises(dk.InvalidArgument, match="verify checks a bundle's signature"):
        dk.load(MODEL_PATH, verify="key.pem")


@pytest.mark.parametrize("kwargs, match", [
    ({"models": []}, "models must be"),
    ({"output": "missing-folder/b"}, "does not exist"),
    ({"labels": ["a\nb"]}, "without line breaks"),
    ({"metadata": {"name": 3}}, r"metadata\['name'\] must be text"),
    ({"labels": "no-such-labels.txt"}, "labels: no file at"),
])
def test_bad_pack_arguments_are_refused(tmp_path: Path, kwargs: dict, match: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args: dict = {"models": MODEL_PATH, "output": tmp_path / "b"}
    args.update(kwargs)
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.pack(args.pop("models"), args.pop("output"), **args)


def test_an_existing_output_is_kept_unless_overwrite(tmp_path: Path) -> None:
    _pack(tmp_path)
    with pytest.raises(dk.InvalidArgument, match="exists and is not empty"):
        _pack(tmp_path)
    assert _pack(tmp_path, overwrite=True).manifest.artifacts == ["model/digits.onnx"]


def test_onnx_external_data_travels_with_the_model(tmp_path: Path) -> None:
    import onnx
    proto = onnx.load(str(MODEL_PATH))
    (tmp_path / "src").mkdir()
    onnx.save(proto, str(tmp_path / "src" / "ext.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True,
              location="ext.bin", size_threshold=256)
    bundle = dk.pack(tmp_path / "src" / "ext.onnx", tmp_path / "b")
    assert "model/ext.bin" in bundle.manifest.files
    images = load_test_data()[0][:4]
    np.testing.assert_array_equal(dk.load(tmp_path / "b").run({"images": images})["label"],
                                  dk.load(MODEL_PATH).run({"images": images})["label"])
    shutil.rmtree(tmp_path / "src")  # the bundle is self-contained
    assert dk.load(tmp_path / "b").run({"images": images})["label"].shape == (4,)


def test_two_artifacts_with_different_external_data_of_one_name_are_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    for folder, value in (("a", 1.0), ("b", 100.0)):
        (tmp_path / folder).mkdir()
        weight = numpy_helper.from_array(np.full((256,), value, np.float32), "w")
        graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [256])], [weight])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                  str(tmp_path / folder / f"{folder}.onnx"), save_as_external_data=True,
                  location="weights.bin", size_threshold=0)
    with pytest.raises(dk.InvalidArgument, match=r"external data weights\.bin differs"):
        dk.pack([tmp_path / "a" / "a.onnx", tmp_path / "b" / "b.onnx"], tmp_path / "out")


def test_labels_keep_every_character_but_line_breaks_are_refused(tmp_path: Path) -> None:
    odd = ["tab\there", "ünïcödé", "  spaced  ", "x" * 300]
    assert dk.load(dk.pack(MODEL_PATH, tmp_path / "b", labels=odd).folder).labels == odd
    for bad in (["a\rb", "c"], ["x\u2028y"], []):
        with pytest.raises(dk.InvalidArgument, match="without line breaks"):
            dk.pack(MODEL_PATH, tmp_path / "c", labels=bad, overwrite=True)


def test_pack_refuses_what_load_would_refuse_before_writing(tmp_path: Path) -> None:
    with pytest.raises(dk.InvalidArgument, match="the bundle would not load"):
        dk.pack(MODEL_PATH, tmp_path / "b", tuning={"inputs": {"images": np.zeros((1, 1, 8, 8))}})
    with pytest.raises(dk.InvalidArgument, match="the bundle would not load"):
        dk.pack(MODEL_PATH, tmp_path / "b", metadata={"k" * 600: "v"})
    assert not (tmp_path / "b").exists()
    (tmp_path / "src").mkdir()
    shutil.copyfile(MODEL_PATH, tmp_path / "src" / "m.onnx")
    (tmp_path / "src" / "notes.txt").write_text("mine")
    with pytest.raises(dk.InvalidArgument, match="holds one of the models"):
        dk.pack(tmp_path / "src" / "m.onnx", tmp_path / "src", overwrite=True)
    assert (tmp_path / "src" / "notes.txt").read_text() == "mine"  # nothing of the user's removed
