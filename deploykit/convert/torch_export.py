"""PyTorch modules to ONNX for ``dk.export``: ``torch.onnx.export(..., dynamo=True)`` with the dynamic
dimensions declared (the older exporter bakes sequence lengths into ``nn.TransformerEncoder``), then
checked against the module on the samples — and, when the batch is dynamic, on one sample alone too,
so a batch size baked into the graph is caught at export time rather than in production."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidArgument, require
from .parity import max_errors


def is_torch_module(obj: Any) -> bool:
    """True for a ``torch.nn.Module`` (checked without importing torch)."""
    return any(c.__module__ == "torch.nn.modules.module" and c.__name__ == "Module"
               for c in type(obj).__mro__)


def _torch() -> Any:  # the object is a torch module, so torch imports
    return require("torch", "exporting PyTorch modules needs torch: pip install 'deploykit[torch]'")


def arrays(sample_inputs: Any) -> list[np.ndarray]:
    """The module's positional inputs as arrays (a tensor/array, or a tuple/list of them)."""
    items = list(sample_inputs) if isinstance(sample_inputs, (tuple, list)) else [sample_inputs]
    out = []
    for i, item in enumerate(items):
        value = item.detach().cpu().numpy() if hasattr(item, "detach") else item
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf" or value.ndim == 0:
            raise InvalidArgument(f"sample_inputs[{i}]: a tensor or array with a batch dimension, got "
                                  f"{type(item).__name__}")
        out.append(value)
    if not out:
        raise InvalidArgument("sample_inputs: give at least one input tensor")
    return out


def export_torch(module: Any, samples: list[np.ndarray], target: Path, input_names: Sequence[str] | None,
                 dynamic: Mapping[str, Mapping[int, str]] | None, opset: int | None) -> bool:
    """Write the module's ONNX file; returns whether every input's first axis (the batch) is dynamic."""
    torch = _torch()
    names = list(input_names) if input_names is not None else \
        (["x"] if len(samples) == 1 else [f"input_{i}" for i in range(len(samples))])
    if len(names) != len(samples):
        raise InvalidArgument(f"input_names: {len(names)} names for {len(samples)} inputs")
    axes = dict(dynamic) if dynamic is not None else {n: {0: "batch"} for n in names}
    unknown = sorted(set(axes) - set(names))
    if unknown:
        raise InvalidArgument(f"dynamic: no input {', '.join(map(repr, unknown))}; the inputs: "
                              f"{', '.join(names)}")
    dims: dict[str, Any] = {}
    shapes = []
    for name, sample in zip(names, samples):
        spec = {}
        for axis, label in dict(axes.get(name, {})).items():
            if not isinstance(axis, int) or not -sample.ndim <= axis < sample.ndim:
                raise InvalidArgument(f"dynamic[{name!r}]: axis {axis!r} is not an axis of a {sample.ndim}-d "
                                      "input")
            if label not in dims:
                dims[label] = torch.export.Dim(str(label), min=1, max=2**20)
            spec[axis % sample.ndim] = dims[label]
        shapes.append(spec or None)
    try:
        module.eval()
        program_module = False
    except NotImplementedError:  # a torch.export program's module: already an inference graph
        program_module = True
    args = tuple(torch.from_numpy(np.ascontiguousarray(s)) for s in samples)
    quiet = io.StringIO()
    level = logging.getLogger("torch").level
    logging.getLogger("torch").setLevel(logging.ERROR)  # its exporter logs each stage and missing extras
    try:
        with contextlib.redirect_stdout(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations, not the caller's
            if program_module:
                warnings.filterwarnings("ignore", "Exporting a model while it is in training mode")
            program = torch.onnx.export(module, args, dynamo=True, input_names=names,
                                        dynamic_shapes=tuple(shapes), opset_version=opset, verbose=False)
        program.save(str(target))
    except Exception as e:
        raise InvalidArgument(f"torch.onnx.export (dynamo) cannot export this {type(module).__name__}: "
                              f"{str(e).splitlines()[0][:300]}") from e
    finally:
        logging.getLogger("torch").setLevel(level)
    return all(spec is not None and 0 in spec for spec in shapes)


def check_torch(module: Any, target: Path, samples: list[np.ndarray], batch_dynamic: bool
                ) -> tuple[dict[str, float], list[str], list[str]]:
    """Largest difference per output between the module and the file (``parity.max_errors``)."""
    torch = _torch()

    def original(run: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            want = module(*(torch.from_numpy(np.ascontiguousarray(s)) for s in run))
        return [t.detach().numpy() for t in ([want] if hasattr(want, "detach") else list(want))]
    return max_errors(target, samples, original, batch_dynamic)


__all__ = ["arrays", "check_torch", "export_torch", "is_torch_module"]
