"""deploykit: run a trained model fast and safely wherever it lands.

    import deploykit as dk
    engine = dk.load("model.onnx")        # backend="auto"
    out = engine.run({"images": batch})   # same call on every backend

Nothing heavy is imported here: ``import deploykit`` loads the errors and this table; each public
name is imported on first use (``dk.load``, ``dk.bench``, ...), and runtimes only when a backend is
asked for.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from .errors import (
    BackendError,
    BackendUnavailable,
    DeployKitError,
    DeployKitWarning,
    EngineClosed,
    FallbackWarning,
    InputMismatch,
    IntegrityError,
    InvalidArgument,
    ModelLoadError,
    ModelNotFound,
    PreprocessError,
    SpecNotFound,
    UnknownBackend,
    UnknownOption,
)
from .version import __version__

if TYPE_CHECKING:  # what the lazy table below gives, for type checkers and IDEs
    from . import preprocess, serve
    from .backends import Availability, available_backends
    from .benchmark import BenchResult, bench
    from .bundle.bundle import Bundle
    from .bundle.pack import pack, sign
    from .comparison import Comparison, compare
    from .convert.distill import distill
    from .convert.export import ExportReport, export
    from .convert.optimize import OptimizeReport, optimize
    from .convert.prune import prune
    from .convert.quantize import quantize
    from .convert.report import QuantizeReport
    from .convert.tflite import TFLiteReport, to_tflite
    from .engine import Engine
    from .hardware import HardwareReport, probe
    from .loading import load
    from .spec import Quantization, TensorSpec
    from .tuning import tune

#: public name -> the module that holds it, imported on first access (PEP 562).
_LAZY: dict[str, str] = {
    "Availability": "deploykit.backends",
    "available_backends": "deploykit.backends",
    "BenchResult": "deploykit.benchmark",
    "bench": "deploykit.benchmark",
    "Comparison": "deploykit.comparison",
    "compare": "deploykit.comparison",
    "Engine": "deploykit.engine",
    "HardwareReport": "deploykit.hardware",
    "probe": "deploykit.hardware",
    "load": "deploykit.loading",
    "Quantization": "deploykit.spec",
    "TensorSpec": "deploykit.spec",
    "tune": "deploykit.tuning",
    "quantize": "deploykit.convert.quantize",
    "prune": "deploykit.convert.prune",
    "optimize": "deploykit.convert.optimize",
    "distill": "deploykit.convert.distill",
    "OptimizeReport": "deploykit.convert.optimize",
    "export": "deploykit.convert.export",
    "ExportReport": "deploykit.convert.export",
    "QuantizeReport": "deploykit.convert.report",
    "to_tflite": "deploykit.convert.tflite",
    "pack": "deploykit.bundle.pack",
    "sign": "deploykit.bundle.pack",
    "Bundle": "deploykit.bundle.bundle",
    "TFLiteReport": "deploykit.convert.tflite",
}

logging.getLogger("deploykit").addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    if name in ("preprocess", "serve"):  # subpackages, imported on first use
        return importlib.import_module(f"deploykit.{name}")
    if name == "ray":  # dk.ray.predict: the Ray integration (Ray itself imported when it runs)
        return importlib.import_module("deploykit.integrations.ray")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deploykit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Availability",
    "BackendError",
    "BackendUnavailable",
    "BenchResult",
    "Bundle",
    "Comparison",
    "DeployKitError",
    "DeployKitWarning",
    "Engine",
    "EngineClosed",
    "ExportReport",
    "FallbackWarning",
    "HardwareReport",
    "InputMismatch",
    "IntegrityError",
    "InvalidArgument",
    "ModelLoadError",
    "ModelNotFound",
    "OptimizeReport",
    "PreprocessError",
    "Quantization",
    "QuantizeReport",
    "SpecNotFound",
    "TFLiteReport",
    "TensorSpec",
    "UnknownBackend",
    "UnknownOption",
    "__version__",
    "available_backends",
    "bench",
    "compare",
    "distill",
    "export",
    "load",
    "optimize",
    "pack",
    "preprocess",
    "probe",
    "prune",
    "quantize",
    "ray",
    "serve",
    "sign",
    "to_tflite",
    "tune",
]
