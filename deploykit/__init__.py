"""deploykit: run a trained model fast and safely wherever it lands.

    import deploykit as dk
    engine = dk.load("model.onnx")        # backend="auto"
    out = engine.run({"images": batch})   # same call on every backend

Nothing heavy is imported here: runtimes load only when a backend is asked for.
"""

from __future__ import annotations

import logging

from . import preprocess
from .backends import Availability, available_backends
from .engine import Engine, load
from .errors import (
    BackendError,
    BackendUnavailable,
    DeployKitError,
    EngineClosed,
    InputMismatch,
    ModelLoadError,
    ModelNotFound,
    PreprocessError,
    UnknownBackend,
)
from .spec import TensorSpec

__version__ = "0.1.0"

logging.getLogger("deploykit").addHandler(logging.NullHandler())

__all__ = [
    "Availability",
    "BackendError",
    "BackendUnavailable",
    "DeployKitError",
    "Engine",
    "EngineClosed",
    "InputMismatch",
    "ModelLoadError",
    "ModelNotFound",
    "PreprocessError",
    "TensorSpec",
    "UnknownBackend",
    "__version__",
    "available_backends",
    "load",
    "preprocess",
]
