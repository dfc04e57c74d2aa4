"""deploykit's NumPy backend as an ``onnx.backend.base.Backend``, for ONNX's conformance suite.

    import onnx.backend.test
    from deploykit.backends.reference.onnx_backend import NumpyOnnxBackend
    suite = onnx.backend.test.BackendTest(NumpyOnnxBackend, __name__)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx
from onnx.backend.base import Backend, BackendRep

from ...engine import Engine, load


class NumpyRep(BackendRep):
    """A prepared model: positional inputs in, outputs in graph order out."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            items: Sequence[Any] = inputs if isinstance(inputs, (list, tuple)) else [inputs]
            feeds = {spec.name: value for spec, value in zip(self.engine.inputs, items)}
        out = self.engine.run(feeds)
        return tuple(out[spec.name] for spec in self.engine.outputs)


class NumpyOnnxBackend(Backend):
    """Runs every model through ``deploykit.load(model, backend="numpy")``."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return True

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> NumpyRep:
        return NumpyRep(load(model, backend="numpy", check=False))
