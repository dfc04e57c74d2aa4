"""Batch inference on a real local Ray (2 CPUs): every output row equal to ``Engine.run`` on the same
input; images read from files with ``ray.data.read_images`` through a bundle's preprocessing equal to
the pipeline run in-process; the engine's threads follow the CPUs Ray gives each actor. ~30 s (Ray's
start-up is most of it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import deploykit as dk
from deploykit.demo import MODEL_PATH, load_test_data
from tests import models

ray = pytest.importorskip("ray", reason="the ray extra (ray[data]) is not installed")
pytest.importorskip("ray.data", reason="the ray extra (ray[data]) is not installed")


@pytest.fixture(scope="module")
def local_ray() -> object:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_every_row_equals_the_engine(local_ray: object) -> None:
    images = load_test_data()[0][:150]
    dataset = ray.data.from_items([{"image": image, "id": k} for k, image in enumerate(images)])
    rows = sorted(dk.ray.predict(dataset, MODEL_PATH, batch_size=16, concurrency=2).take_all(),
                  key=lambda r: r["id"])
    want = dk.load(MODEL_PATH).run({"images": images})
    assert len(rows) == 150 and set(rows[0]) == {"id", "label", "probabilities"}
    np.testing.assert_array_equal([r["label"] for r in rows], want["label"])
    np.testing.assert_array_equal(np.stack([r["probabilities"] for r in rows]), want["probabilities"])


def test_image_files_go_through_the_bundle_s_pipeline(local_ray: object, tmp_path: Path) -> None:
    from PIL import Image
    from sklearn.datasets import load_sample_images
    (tmp_path / "images").mkdir()
    pictures = [np.asarray(p)[:200, :300] for p in load_sample_images().images]
    for k, picture in enumerate(pictures):
        Image.fromarray(picture).save(tmp_path / "images" / f"{k}.png")
    onnx.save(models.image_identity(24, 32), str(tmp_path / "identity.onnx"))
    pipeline = dk.preprocess.Pipeline.letterbox((24, 32), swap_rb=False)  # read_images gives RGB
    dk.pack(tmp_path / "identity.onnx", tmp_path / "bundle", pipeline=pipeline)
    dataset = ray.data.read_images(str(tmp_path / "images"), include_paths=True)
    rows = sorted(dk.ray.predict(dataset, tmp_path / "bundle", output_columns={"y": "tensor"}).take_all(),
                  key=lambda r: r["path"])
    assert [Path(r["path"]).name for r in rows] == ["0.png", "1.png"]
    for row, picture in zip(rows, pictures):
        np.testing.assert_array_equal(row["tensor"], pipeline(picture)[0])


def test_threads_follow_the_cpus_ray_gives_the_actor(local_ray: object) -> None:
    from deploykit.integrations.ray import actor_cpus

    @ray.remote(num_cpus=2)
    def inside() -> int:
        return actor_cpus()
    assert ray.get(inside.remote()) == 2 and actor_cpus(default=7) == 7  # the driver is no actor


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size must be a positive"),
    ({"num_cpus_per_worker": 0}, "num_cpus_per_worker must be a number > 0"),
    ({"input_column": ""}, "input_column must be a column name"),
    ({"input_column": {"images": 3}}, "input_column must map input names"),
    ({"concurrency": 0}, "concurrency must be a number of actors"),
    ({"concurrency": (3, 1)}, r"or a \(min, max\) range"),
    ({"output_columns": {"nope": "x"}}, "the model has no output 'nope'; its outputs: probabilities, label"),
    ({"output_columns": ["label"]}, "output_columns must map output names"),
    ({"input_column": {"pixels": "image"}}, "the model has no input 'pixels'; its inputs: images"),
    ({"preprocess": "letterbox"}, "preprocess must be None"),
    ({"keep_input": "yes"}, "keep_input must be True or False"),
    ({"num_cpus_per_worker": float("nan")}, "num_cpus_per_worker must be"),
    ({"num_cpus_per_worker": True}, "num_cpus_per_worker must be"),
    ({"output_columns": {"probabilities": "x", "label": "x"}}, "gives two outputs the same column"),
    ({"thread": 2}, "thread"),
    ({"threads": 0}, "threads"),
])
def test_bad_arguments_are_refused_before_the_job(local_ray: object, kwargs: dict, match: str) -> None:
    dataset = ray.data.from_items([{"image": np.zeros((1, 8, 8), np.float32)}])
    with pytest.raises(dk.InvalidArgument, match=match):
        dk.ray.predict(dataset, MODEL_PATH, **kwargs)


def test_an_output_column_never_replaces_a_column_of_the_dataset(local_ray: object) -> None:
    dataset = ray.data.from_items([{"image": image, "other": 0} for image in load_test_data()[0][:4]])
    with pytest.raises(Exception, match=r"output column\(s\) other would replace the dataset.s own"):
        dk.ray.predict(dataset, MODEL_PATH, output_columns={"label": "other"}).take_all()


def test_a_model_that_is_not_a_path_is_refused(local_ray: object) -> None:
    with pytest.raises(dk.InvalidArgument, match="model must be a path"):
        dk.ray.predict(ray.data.from_items([{"image": 1}]), onnx.load(str(MODEL_PATH)))
    with pytest.raises(dk.InvalidArgument, match="dataset must be a Ray Dataset"):
        dk.ray.predict([{"image": 1}], MODEL_PATH)


def test_datasets_read_from_numpy_and_parquet_files(local_ray: object, tmp_path: Path) -> None:
    """As Ray users read them: ``read_numpy`` (a "data" column) and ``read_parquet`` (tensor columns)."""
    images = load_test_data()[0][:96]
    want = dk.load(MODEL_PATH).run({"images": images})["label"]
    np.save(tmp_path / "images.npy", images)
    from_numpy = dk.ray.predict(ray.data.read_numpy(str(tmp_path / "images.npy")), MODEL_PATH,
                                input_column="data", batch_size=32).take_all()
    np.testing.assert_array_equal([r["label"] for r in from_numpy], want)  # one file: its order
    # two files, not one per row: Ray spends ~0.1 s a file reading 96 of them, nothing deploykit does
    ray.data.from_items([{"image": image, "id": k} for k, image in enumerate(images)]).repartition(2) \
        .write_parquet(str(tmp_path / "parquet"))
    rows = dk.ray.predict(ray.data.read_parquet(str(tmp_path / "parquet")), MODEL_PATH, keep_input=True,
                          batch_size=32).take_all()
    rows.sort(key=lambda r: r["id"])
    np.testing.assert_array_equal([r["label"] for r in rows], want)
    np.testing.assert_array_equal(np.stack([r["image"] for r in rows]), images)
