"""Samples from where users keep them: a folder of images through a preprocessing Pipeline (equal to
the Pipeline run on the same pixels by hand), and generators of arrays or feed dicts (bounded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import deploykit as dk
from deploykit.convert.gates import samples_for
from deploykit.convert.samples import image_samples
from deploykit.demo import MODEL_PATH, load_test_data

Image = pytest.importorskip("PIL.Image", reason="Pillow (dev extra) decodes the images")


def _photos(folder: Path) -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images
    pictures = [np.asarray(p) for p in load_sample_images().images]  # RGB, 427x640
    for k, picture in enumerate(pictures):
        Image.fromarray(picture).save(folder / f"photo{k}.png")
    (folder / "notes.txt").write_text("not an image")
    return pictures


def test_a_folder_of_images_goes_through_the_pipeline(tmp_path: Path) -> None:
    pictures = _photos(tmp_path)
    pipeline = dk.preprocess.Pipeline.resize_to((48, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    batch = image_samples(tmp_path, pipeline)
    assert batch.shape == (2, 3, 48, 64) and batch.dtype == np.float32
    for k, picture in enumerate(pictures):  # decoded as OpenCV would: BGR into a BGR-minded pipeline
        np.testing.assert_array_equal(batch[k], pipeline(np.ascontiguousarray(picture[..., ::-1]))[0])
    assert image_samples(tmp_path, pipeline, limit=1).shape[0] == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"folder": "missing-folder"}, "folder must be a folder of images"),
    ({"pipeline": "resize"}, "pipeline must be a dk.preprocess.Pipeline"),
    ({"limit": 0}, "limit must be a positive number"),
])
def test_bad_image_arguments_are_refused(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"folder": tmp_path, "pipeline": dk.preprocess.Pipeline.resize_to((8, 8)), "limit": 4}
    args.update(kwargs)
    with pytest.raises(dk.InvalidArgument, match=match):
        image_samples(args["folder"], args["pipeline"], limit=args["limit"])


def test_a_folder_without_images_and_a_broken_image_are_named(tmp_path: Path) -> None:
    pipeline = dk.preprocess.Pipeline.resize_to((8, 8))
    with pytest.raises(dk.InvalidArgument, match="no image files"):
        image_samples(tmp_path, pipeline)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(dk.InvalidArgument, match=r"broken\.png: not an image Pillow can read"):
        image_samples(tmp_path, pipeline)


def test_generators_of_arrays_and_feed_dicts_are_samples() -> None:
    images = load_test_data()[0][:10]
    engine = dk.load(MODEL_PATH)
    from_arrays = samples_for(engine, (image for image in images), "calibration", "quantize")
    from_batches = samples_for(engine, iter([images[:4], images[4:]]), "calibration", "quantize")
    from_dicts = samples_for(engine, ({"images": image[None]} for image in images), "calibration", "quantize")
    for samples in (from_arrays, from_batches, from_dicts):
        assert len(samples) == 10 and all(s["images"].shape == (1, 1, 8, 8) for s in samples)
        np.testing.assert_array_equal(np.concatenate([s["images"] for s in samples]), images)


def test_an_endless_generator_is_refused_not_read_forever() -> None:
    engine = dk.load(MODEL_PATH)

    def forever():  # type: ignore[no-untyped-def]
        while True:
            yield np.zeros((1, 8, 8), np.float32)

    with pytest.raises(dk.InvalidArgument, match="more than 10000 samples"):
        samples_for(engine, forever(), "calibration", "quantize")
    with pytest.raises(dk.InvalidArgument, match="no samples"):
        samples_for(engine, iter([]), "calibration", "quantize")
    with pytest.raises(dk.InvalidArgument, match=r"calibration\[0\]: no value for input\(s\) images"):
        samples_for(engine, iter([{"pixels": np.zeros((1, 1, 8, 8))}]), "calibration", "quantize")


def test_scalars_and_unequal_counts_in_an_iterable_are_refused() -> None:
    engine = dk.load(MODEL_PATH)
    with pytest.raises(dk.InvalidArgument, match="is a scalar"):
        samples_for(engine, iter([np.float32(1.0)]), "calibration", "quantize")
    from tests import models
    two = dk.load(models.dynamic_add())
    with pytest.raises(dk.InvalidArgument, match="different numbers of samples"):
        samples_for(two, iter([{"x": np.ones((2, 3), np.float32), "y": np.ones((5, 3), np.float32)}]),
                    "calibration", "quantize")


def test_an_image_is_turned_as_its_exif_orientation_says(tmp_path: Path) -> None:
    picture = np.zeros((20, 40, 3), np.uint8)
    picture[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(picture).save(tmp_path / "turned.jpg", exif=exif, quality=100)
    pipeline = dk.preprocess.Pipeline.resize_to((40, 20), scale=1.0)
    batch = image_samples(tmp_path, pipeline)
    assert batch.shape == (1, 3, 40, 20)  # portrait, as displayed (and as cv2.imread returns it)
