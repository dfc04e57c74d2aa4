"""TensorSpec: the backend-neutral description of one model input or output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A dimension: a fixed size, a symbolic name kept from the model (``"N"``), or ``None`` (unknown).
Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of a model input or output, identical on every backend.

    ``shape`` is ``None`` when the model does not declare a rank. Inside a shape a dimension is an
    ``int`` (fixed), a ``str`` (symbolic, as named by the model) or ``None`` (unknown; a ``-1`` or an
    unnamed dimension in the file).
    """

    name: str
    shape: tuple[Dim, ...] | None
    dtype: np.dtype
    #: "tensor", or for ONNX's non-tensor values "sequence", "map", "optional" (passed through as is)
    kind: str = "tensor"

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        """True when every dimension is a fixed size."""
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    def shape_str(self) -> str:
        """Shape as ``[N,3,?,?]`` — ``?`` for unknown dimensions, ``[...]`` for an unknown rank."""
        if self.shape is None:
            return "[...]"
        return "[" + ",".join("?" if d is None else str(d) for d in self.shape) + "]"

    def __str__(self) -> str:
        if self.kind != "tensor":
            return f"{self.name}: {self.kind}"
        return f"{self.name}: {dtype_name(self.dtype)}{self.shape_str()}"

    def __repr__(self) -> str:
        return f"TensorSpec(name={self.name!r}, shape={self.shape!r}, dtype={dtype_name(self.dtype)})"


def dtype_name(dtype: np.dtype) -> str:
    """Short dtype name for messages: ``float32``, ``int64``, ``string`` (for object arrays)."""
    return "string" if dtype == np.dtype(object) else str(dtype)


def normalize_dim(dim: object) -> Dim:
    """Map a runtime's dimension notation to ours: ints >= 0 stay, -1/None/""/"?" become None."""
    if isinstance(dim, (int, np.integer)):
        return int(dim) if dim >= 0 else None
    if isinstance(dim, str) and dim not in ("", "?"):
        return dim
    return None
