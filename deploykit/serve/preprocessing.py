"""A model whose config names a preprocessing ``Pipeline``: clients send pixels, the model gets tensors.

``config.json``: ``"preprocess": {"input": "images", "pipeline": {"op": "letterbox", "size": [640, 640],
...}}`` (the pipeline as ``dk.preprocess.Pipeline.to_dict`` writes it; ``input`` may be left out when
the model has one input). That input is then presented to clients as ``UINT8 [batch, height, width,
channels]``: one image (``[H, W, C]``, C 1, 3 or 4, or ``[H, W]`` grey) or several of one size
(``[N, H, W, C]``); integer arrays are taken when every value fits a byte (TF Serving's JSON makes
int64). The pipeline runs on a thread of its own — never on the event loop — and its output goes to
the model (and its batcher) as if the client had sent it. At load, the pipeline runs once on a blank
image and its output must match the model input's dtype, rank and fixed sizes, else the version does
not load, saying why.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..engine import Engine
from ..errors import InputMismatch, InvalidArgument, PreprocessError
from ..preprocess import Pipeline
from ..spec import TensorSpec

#: How the preprocessed input is shown to clients (KServe metadata: UINT8 [-1, -1, -1, -1]).
CLIENT_SHAPE = ("batch", "height", "width", "channels")


class ImageInput:
    """One model input fed through ``pipeline`` from the pixels a client sends."""

    def __init__(self, pipeline: Pipeline, engine: Engine, input_name: str | None = None) -> None:
        names = [s.name for s in engine.inputs]
        if input_name is None:
            if len(names) != 1:
                raise InvalidArgument(f"preprocess: the model has {len(names)} inputs ({', '.join(names)}); "
                                      "say which one the pipeline feeds with preprocess.input")
            input_name = names[0]
        if input_name not in names:
            raise InvalidArgument(f"preprocess.input: the model has no input {input_name!r}; its inputs: "
                                  f"{', '.join(names)}")
        self.pipeline, self.name = pipeline, input_name
        self.target = next(s for s in engine.inputs if s.name == input_name)
        _check_output(pipeline, self.target)
        self.spec = TensorSpec(input_name, CLIENT_SHAPE, np.dtype(np.uint8))
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="deploykit-preprocess")

    def presented(self, inputs: list[TensorSpec]) -> list[TensorSpec]:
        """The model's inputs as clients see them: the preprocessed one as pixels."""
        return [self.spec if s.name == self.name else s for s in inputs]

    async def apply(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """``feeds`` with the image input replaced by the pipeline's tensor (run off the event loop)."""
        if self.name not in feeds:
            return feeds  # the engine names the missing input
        images = _pixels(feeds[self.name], self.name)
        loop = asyncio.get_running_loop()
        tensor = await loop.run_in_executor(self._executor, self._run, images)
        return {**feeds, self.name: tensor}

    def _run(self, images: np.ndarray) -> np.ndarray:
        try:
            if images.ndim == 4:
                return self.pipeline.batch(list(images), threads=1)
            return self.pipeline(images)
        except PreprocessError as e:
            raise InputMismatch(f"input {self.name!r}: {e}") from None

    def close(self) -> None:
        self._executor.shutdown(wait=False)


def _check_output(pipeline: Pipeline, target: TensorSpec) -> None:
    """The pipeline's tensor fits the model input (dtype, rank, fixed sizes) — checked on a blank image."""
    tensor = pipeline(np.zeros((8, 8, 3), np.uint8))
    problems = []
    if tensor.dtype != target.dtype:
        problems.append(f"dtype {tensor.dtype}, the input takes {target.dtype}")
    if target.shape is not None:
        if len(target.shape) != tensor.ndim:
            problems.append(f"rank {tensor.ndim}, the input has rank {len(target.shape)}")
        else:
            bad = [f"dimension {i} is {tensor.shape[i]}, the input's is {d}"
                   for i, d in enumerate(target.shape) if i and isinstance(d, int) and d != tensor.shape[i]]
            problems += bad
    if problems:
        raise InvalidArgument(f"preprocess: the pipeline makes {tensor.dtype} {list(tensor.shape)} tensors "
                              f"but input {target.name!r} is {target}: " + "; ".join(problems))


def _pixels(value: Any, name: str) -> np.ndarray:
    """The images a client sent: uint8 (or integers that fit a byte), [H, W], [H, W, C] or [N, H, W, C]."""
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    if array.ndim not in (2, 3, 4) or (array.ndim == 4 and array.shape[0] == 0):
        raise InputMismatch(f"input {name!r} takes images: [height, width], [height, width, channels] or "
                            f"[batch, height, width, channels] uint8 pixels; got shape {list(array.shape)}")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "iu" or (array.size and (array.min() < 0 or array.max() > 255)):
            raise InputMismatch(f"input {name!r} takes uint8 pixels (0..255); got {array.dtype} values"
                                + ("" if array.dtype.kind not in "iu" else " outside 0..255"))
        array = array.astype(np.uint8)
    return array


__all__ = ["CLIENT_SHAPE", "ImageInput"]
