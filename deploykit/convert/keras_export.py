"""Keras 3 models to ONNX for ``dk.export``: ``model.export(path, format="onnx")`` — Keras's own
exporter, which goes through ``torch.onnx`` on the torch backend, tf2onnx on the TensorFlow backend and
jax2tf on JAX (``tf2onnx.from_keras`` itself fails on Keras 3) — then checked against
``model.predict`` on the samples, and on one sample alone when the batch is dynamic."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidArgument
from .parity import max_errors


def is_keras_model(obj: Any) -> bool:
    """True for a Keras 3 (or tf.keras 2) ``Model`` — checked without importing Keras."""
    return any(c.__name__ == "Model" and c.__module__.split(".")[0] in ("keras", "tf_keras")
               for c in type(obj).__mro__)


def backend_of(model: Any) -> str:
    """The Keras backend the model runs on (``torch``, ``tensorflow``, ``jax``), as Keras reports it."""
    try:
        import keras
        return str(keras.backend.backend())
    except Exception:  # pragma: no cover - a Keras model exists, so Keras imports
        return "unknown"


def export_keras(model: Any, samples: list[np.ndarray], target: Path, opset: int | None) -> None:
    """Write the model's ONNX file with Keras's exporter; its chatter (a line per export, tracer
    warnings about shapes it treats as constants) is kept from the caller — the check judges."""
    try:  # Keras exports only a model that has been called once (a subclassed one learns its inputs so)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model.predict(samples if len(samples) > 1 else samples[0], verbose=0)
    except Exception as e:
        first = str(e).splitlines()[0][:300] if str(e) else ""
        raise InvalidArgument(f"sample_inputs: this {type(model).__name__}'s predict fails on them "
                              f"({type(e).__name__}: {first})") from e
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.export(str(target), format="onnx", verbose=False, opset_version=opset)
    except Exception as e:
        first = str(e).splitlines()[0][:300] if str(e) else repr(e)
        raise InvalidArgument(f"Keras ({backend_of(model)} backend) cannot export this "
                              f"{type(model).__name__} to ONNX: {first}") from e


def check_keras(model: Any, target: Path, samples: list[np.ndarray]
                ) -> tuple[dict[str, float], list[str], list[str]]:
    """Largest difference per output between ``model.predict`` and the file (``parity.max_errors``)."""
    def original(run: list[np.ndarray]) -> list[np.ndarray]:
        with warnings.catch_warnings():  # Keras's own numpy-2 deprecation, not the caller's doing
            warnings.simplefilter("ignore", DeprecationWarning)
            want = model.predict(run if len(run) > 1 else run[0], verbose=0)
        return list(want.values()) if isinstance(want, dict) else \
            list(want) if isinstance(want, (list, tuple)) else [want]
    return max_errors(target, samples, original)


__all__ = ["backend_of", "check_keras", "export_keras", "is_keras_model"]
