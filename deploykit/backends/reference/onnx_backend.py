"""deploykit's NumPy backend as an ``onnx.backend.base.Backend``, for ONNX's conformance suite.

    import onnx.backend.test
    from deploykit.backends.reference.onnx_backend import NumpyOnnxBackend
    suite = onnx.backend.test.BackendTest(NumpyOnnxBackend, __name__)

It drives :class:`NumpyBackend` directly (no Engine): the suite's inputs are already the arrays
the model declares, and its outputs are compared in graph order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx
from onnx.backend.base import Backend, BackendRep

from ...model import open_model
from . import NumpyBackend


class NumpyRep(BackendRep):
    """A prepared model: positional inputs in, outputs in graph order out."""

    def __init__(self, backend: NumpyBackend) -> None:
        self.backend = backend

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            items: Sequence[Any] = inputs if isinstance(inputs, (list, tuple)) else [inputs]
            feeds = {spec.name: value for spec, value in zip(self.backend.inputs, items)}
        return tuple(self.backend.run_impl(feeds, None))


class NumpyOnnxBackend(Backend):
    """Runs every model on deploykit's NumPy backend (``backend="numpy"``)."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return True

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> NumpyRep:
        return NumpyRep(NumpyBackend(open_model(model, check=False)))
