"""How far an exported ONNX file is from the framework model it came from: both run on the samples
(and on the first sample alone when the file's batch is dynamic, so a batch size baked into the
graph shows at export time), the largest difference per output reported — one check for every
exporter that runs its original in-process (PyTorch, Keras)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InvalidArgument
from ..loading import load

#: The original model on one run's inputs: its outputs, in the file's output order.
Original = Callable[[list[np.ndarray]], Sequence[np.ndarray]]


def max_errors(target: Path, samples: list[np.ndarray], original: Original, batch_dynamic: bool | None = None
               ) -> tuple[dict[str, float], list[str], list[str]]:
    """``{"<output> max abs error[ (batch 1)]": value}`` and the file's inputs and outputs as text.
    ``batch_dynamic`` None: read from the file's first input."""
    engine = load(str(target), "onnxruntime")
    try:
        if len(engine.inputs) != len(samples):
            names = [s.name for s in engine.inputs]
            raise InvalidArgument(f"sample_inputs: {len(samples)} input(s) for a model that takes "
                                  f"{len(names)} ({', '.join(names)})")
        if batch_dynamic is None:
            first = engine.inputs[0].shape or ()
            batch_dynamic = bool(first) and not isinstance(first[0], int)
        runs = [samples] + ([[s[:1] for s in samples]] if batch_dynamic and samples[0].shape[0] > 1 else [])
        figures: dict[str, float] = {}
        for run in runs:
            wanted = original(run)
            got = engine.run({spec.name: s.astype(spec.dtype, copy=False)
                              for s, spec in zip(run, engine.inputs)})
            suffix = "" if run is samples else " (batch 1)"
            for spec, ref in zip(engine.outputs, wanted):
                error = np.abs(got[spec.name].astype(np.float64) - np.asarray(ref, dtype=np.float64))
                figures[f"{spec.name} max abs error{suffix}"] = float(error.max(initial=0.0))
        return figures, [str(s) for s in engine.inputs], [str(s) for s in engine.outputs]
    finally:
        engine.close()


__all__ = ["Original", "max_errors"]
