"""A third-party backend as a user would write one, outside deploykit: ONNX's own reference
evaluator (``onnx.reference.ReferenceEvaluator``, a real runtime shipped with onnx) behind the
Backend contract. Registered at run time with ``deploykit.backends.register``; the tests check that
it is probed, planned, loaded, tuned, benchmarked and passes the conformance suite like a built-in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from deploykit.backends.base import Backend
from deploykit.errors import ModelLoadError
from deploykit.model import ModelSource, onnx_io_specs

NAME = "onnx-evaluator"
TARGET = "tests._support.evaluator_backend:EvaluatorBackend"


class EvaluatorBackend(Backend):
    name = NAME
    formats = ("onnx",)
    extra = "core"
    distributions = ("onnx",)
    priority = 80  # after the native runtimes, before deploykit's numpy interpreter
    option_names = ("verbose",)

    @classmethod
    def runtime_version(cls) -> str:
        return str(onnx.__version__)

    @classmethod
    def probe(cls) -> dict[str, Any]:
        return {"evaluator": "onnx.reference.ReferenceEvaluator"}

    def __init__(self, source: ModelSource, *, threads: int | None = None, verbose: int = 0) -> None:
        from onnx.reference import ReferenceEvaluator

        self.inputs, self.outputs = onnx_io_specs(source.proto)
        try:
            self._evaluator = ReferenceEvaluator(source.proto, verbose=verbose)
        except Exception as e:  # the evaluator's own error types
            raise ModelLoadError(f"{source.label}: onnx's reference evaluator cannot load it: {e}") from e
        self._names = [s.name for s in self.outputs]

    def run_impl(self, feeds: Mapping[str, np.ndarray],
                 output_names: Sequence[str] | None) -> Sequence[np.ndarray]:
        out = self._evaluator.run(None, dict(feeds))
        by_name = dict(zip(self._names, out))
        return [np.asarray(by_name[n]) for n in (output_names or self._names)]
