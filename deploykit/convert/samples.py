"""Calibration and check samples from where users keep them: a folder of images run through the
model's preprocessing ``Pipeline`` (``image_samples``), or any iterable of arrays / feed dicts
(``from_iterable``, which ``gates.samples_for`` uses) — read up to a bound, never without end."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailable, InvalidArgument
from ..spec import TensorSpec

#: Image files ``image_samples`` reads.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: The most samples an iterable is read for (calibration needs hundreds, not millions).
MAX_SAMPLES = 10_000


def image_samples(folder: str | Path, pipeline: Any, *, limit: int = 256) -> np.ndarray:
    """Every image of ``folder`` (sorted by name, at most ``limit``), decoded as OpenCV's ``imread``
    decodes (BGR, turned as its EXIF orientation says, so a Pipeline written for OpenCV images works
    unchanged) and run through
    ``pipeline`` (a ``dk.preprocess.Pipeline``): one array, the first axis counting the images."""
    from ..preprocess import Pipeline

    if not isinstance(pipeline, Pipeline):
        raise InvalidArgument(f"pipeline must be a dk.preprocess.Pipeline, got {type(pipeline).__name__}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidArgument(f"limit must be a positive number of images, got {limit!r}")
    root = Path(folder) if isinstance(folder, (str, Path)) else None
    if root is None or not root.is_dir():
        raise InvalidArgument(f"folder must be a folder of images, got {folder!r}")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise InvalidArgument(f"folder {root}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    try:
        from PIL import Image, ImageOps
    except ImportError as e:
        raise BackendUnavailable(f"reading images needs Pillow: pip install pillow ({e})") from e
    tensors = []
    for file in files:
        try:
            with Image.open(file) as image:  # turned as its EXIF says, as OpenCV's imread does
                rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        except Exception as e:  # Pillow's own: a truncated or foreign file
            raise InvalidArgument(f"{file}: not an image Pillow can read ({type(e).__name__}: {e})") from e
        tensors.append(pipeline(np.ascontiguousarray(rgb[..., ::-1])))
    return np.concatenate(tensors)


def from_iterable(data: Iterable[Any], inputs: Sequence[TensorSpec], argument: str
                  ) -> list[dict[str, np.ndarray]]:
    """One feed dict per sample from an iterable of feed dicts or (one-input model) arrays — each item
    one sample, with or without its batch axis, or several along the first axis."""
    items = list(islice(iter(data), MAX_SAMPLES + 1))
    if len(items) > MAX_SAMPLES:
        raise InvalidArgument(f"{argument}: more than {MAX_SAMPLES} samples; give a bounded set (slice the "
                              "iterator)")
    if not items:
        raise InvalidArgument(f"{argument}: the iterable gave no samples")
    names = [s.name for s in inputs]
    samples: list[dict[str, np.ndarray]] = []
    for k, item in enumerate(items):
        if isinstance(item, Mapping):
            feed = {n: np.asarray(item[n]) for n in names if n in item}
            if len(feed) != len(names):
                raise InvalidArgument(f"{argument}[{k}]: no value for input(s) "
                                      f"{', '.join(n for n in names if n not in item)}")
        elif len(names) == 1:
            feed = {names[0]: np.asarray(item)}
        else:
            raise InvalidArgument(f"{argument}[{k}]: a {type(item).__name__} for a model with inputs "
                                  f"{', '.join(names)}; give dicts name -> array")
        for spec in inputs:
            value = feed[spec.name]
            if spec.rank is not None and value.ndim == spec.rank - 1:
                feed[spec.name] = value = value[None]
            if value.ndim == 0:
                raise InvalidArgument(f"{argument}[{k}]: input {spec.name} is a scalar; give its sample as "
                                      f"an array of {spec}")
        counts = {v.shape[0] for v in feed.values()}
        if len(counts) != 1:
            raise InvalidArgument(f"{argument}[{k}]: the inputs hold different numbers of samples: "
                                  f"{ {n: v.shape[0] for n, v in feed.items()} }")
        count = counts.pop()
        samples += [{n: v[i:i + 1] for n, v in feed.items()} for i in range(count)]
    return samples[:MAX_SAMPLES]


__all__ = ["IMAGE_SUFFIXES", "MAX_SAMPLES", "from_iterable", "image_samples"]
