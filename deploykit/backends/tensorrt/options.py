"""What a TensorRT engine is built with, checked before any build starts, and how TensorRT's tensor
types map to numpy's. Pure data: nothing here imports TensorRT."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InvalidArgument

#: TensorRT ``DataType`` member name -> numpy dtype (None: no numpy equivalent; such a tensor cannot
#: be fed or read from Python).
DTYPES: dict[str, np.dtype | None] = {
    "FLOAT": np.dtype(np.float32), "HALF": np.dtype(np.float16), "INT8": np.dtype(np.int8),
    "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64), "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8), "BF16": None, "FP8": None, "INT4": None, "FP4": None,
}
OPT_LEVELS = range(0, 6)


def numpy_dtype(trt_name: str, tensor: str) -> np.dtype:
    """The numpy dtype of a TensorRT tensor type (by its ``DataType`` name)."""
    dtype = DTYPES.get(trt_name.upper().removeprefix("DATATYPE."))
    if dtype is None:
        raise InvalidArgument(f"tensor {tensor}: TensorRT type {trt_name} has no numpy equivalent; keep such "
                              "tensors inside the network (cast at the model's inputs and outputs)")
    return dtype


@dataclass(frozen=True)
class BuildOptions:
    """How an ONNX model becomes an engine. ``fp16``/``int8``/``tf32``: allowed precisions (int8
    calibrates on ``calibration`` feeds, or reads ``calibration_cache``); ``workspace_mb``: the
    builder's scratch memory limit; ``opt_level``: builder optimization level 0-5 (TensorRT's default
    3; higher builds slower, may run faster); ``timing_cache``: a file reused across builds."""

    fp16: bool = False
    int8: bool = False
    tf32: bool = True
    workspace_mb: int | None = None
    opt_level: int = 3
    timing_cache: str | None = None
    calibration_cache: str | None = None

    def __post_init__(self) -> None:
        for name in ("fp16", "int8", "tf32"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgument(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.workspace_mb is not None and (isinstance(self.workspace_mb, bool) or not isinstance(
                self.workspace_mb, int) or self.workspace_mb < 1):
            raise InvalidArgument(f"workspace_mb must be a positive number of MiB, got {self.workspace_mb!r}")
        if isinstance(self.opt_level, bool) or self.opt_level not in OPT_LEVELS:
            raise InvalidArgument(f"opt_level must be 0 to 5 (TensorRT's builder optimization level), got "
                                  f"{self.opt_level!r}")
        for name in ("timing_cache", "calibration_cache"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not Path(value).parent.is_dir()):
                raise InvalidArgument(f"{name} must be a file path in an existing folder, got {value!r}")

    def key(self) -> dict[str, Any]:
        """What changes the built engine (the timing cache only speeds the build up)."""
        data = asdict(self)
        data.pop("timing_cache")
        if self.calibration_cache is not None and Path(self.calibration_cache).is_file():
            import hashlib
            data["calibration_cache"] = hashlib.sha256(Path(self.calibration_cache).read_bytes()).hexdigest()
        return data


def build_options(options: Mapping[str, Any]) -> BuildOptions:
    """The BuildOptions a ``dk.load(..., backend="tensorrt", fp16=True, ...)`` call asks for."""
    known = {k: v for k, v in options.items() if k in BuildOptions.__dataclass_fields__}
    return BuildOptions(**known)


__all__ = ["DTYPES", "BuildOptions", "build_options", "numpy_dtype"]
