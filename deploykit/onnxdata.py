"""An ONNX model's tensor data checked before any runtime reads it (issue 16: hostile files).

A protobuf can declare what it does not hold: a tensor of 2**40 elements over 16 bytes of data, an
external-data file outside the model's folder, an offset past the end of that file, a negative
length. Runtimes and converters then fail with their own exceptions, allocate without bound, or
read what they should not; here each is a ``ModelLoadError`` naming the tensor. Every tensor is
checked: initializers, sparse initializers, constants in node attributes, and those of subgraphs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelLoadError

if TYPE_CHECKING:  # onnx is imported when a model is checked, not with deploykit (import time)
    import onnx

#: The most elements one tensor may declare (4 TiB of float32 is no model a file can carry).
MAX_ELEMENTS = 1 << 40


@functools.cache
def _four_bit() -> frozenset[int]:
    import onnx
    return frozenset(getattr(onnx.TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1")
                     if hasattr(onnx.TensorProto, n))


_TYPED = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data")


def tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor a graph holds, its subgraphs' included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sparse in _sparse_of(attr):
                yield sparse.values
                yield sparse.indices
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from tensors(sub)


def _sparse_of(attr: onnx.AttributeProto) -> list[onnx.SparseTensorProto]:
    return ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(attr.sparse_tensors)


def sparse_tensors(graph: onnx.GraphProto) -> Iterator[onnx.SparseTensorProto]:
    """Every sparse tensor a graph holds (their dense ``dims`` are what a runtime allocates)."""
    yield from graph.sparse_initializer
    for node in graph.node:
        for attr in node.attribute:
            yield from _sparse_of(attr)
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from sparse_tensors(sub)


def check_tensors(label: str, proto: onnx.ModelProto, base: Path | None) -> None:
    """Every tensor's declared size against its data, and its external data (when the model came
    from a file in ``base``) inside the folder and inside the file."""
    import onnx

    for sparse in sparse_tensors(proto.graph):
        _count(label, sparse)  # its dense size: bounded like any tensor's
    for tensor in tensors(proto.graph):
        count = _count(label, tensor)
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            if base is None:
                raise ModelLoadError(f"{label}: tensor {tensor.name!r} keeps its data in an external file, "
                                     "but the model was not given as a path; load it from its file")
            _check_external(label, base, tensor, count)
        else:
            _check_inline(label, tensor, count)


def _count(label: str, tensor: onnx.TensorProto | onnx.SparseTensorProto) -> int:
    name = tensor.name if hasattr(tensor, "name") else tensor.values.name
    if any(d < 0 for d in tensor.dims):
        raise ModelLoadError(f"{label}: tensor {name!r} declares a negative dimension "
                             f"{list(tensor.dims)}")
    count = math.prod(tensor.dims)
    if count > MAX_ELEMENTS:
        raise ModelLoadError(f"{label}: tensor {name!r} declares {count} elements (dims "
                             f"{list(tensor.dims)}), over the {MAX_ELEMENTS} allowed")
    return count


def _itemsize(tensor: onnx.TensorProto) -> int | None:
    """Bytes per element, None for strings and unknown types."""
    import onnx

    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    except (KeyError, TypeError, ValueError):
        return None
    return None if dtype.kind in "OUS" else dtype.itemsize


def _raw_bytes(tensor: onnx.TensorProto, count: int) -> int | None:
    if tensor.data_type in _four_bit():
        return (count + 1) // 2
    size = _itemsize(tensor)
    return None if size is None else count * size


def _check_inline(label: str, tensor: onnx.TensorProto, count: int) -> None:
    import onnx

    if tensor.HasField("raw_data"):
        want = _raw_bytes(tensor, count)
        if want is not None and len(tensor.raw_data) != want:
            raise ModelLoadError(f"{label}: tensor {tensor.name!r} declares dims {list(tensor.dims)} ({want} "
                                 f"bytes) but holds {len(tensor.raw_data)} bytes of data")
        return
    if tensor.data_type == onnx.TensorProto.STRING:
        held = len(tensor.string_data)
    else:
        held = max(len(getattr(tensor, f)) for f in _TYPED)
        if tensor.data_type in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128):
            held //= 2
    if tensor.data_type in _four_bit() or (not held and tensor.data_type == onnx.TensorProto.UNDEFINED):
        return
    if held != count:
        raise ModelLoadError(f"{label}: tensor {tensor.name!r} declares {count} elements (dims "
                             f"{list(tensor.dims)}) but holds {held}")


def _check_external(label: str, base: Path, tensor: onnx.TensorProto, count: int) -> None:
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    loc = Path(location)
    target = (base / loc).resolve()
    if not location or loc.is_absolute() or (target != base and base not in target.parents):
        raise ModelLoadError(f"{label}: tensor {tensor.name!r} points its external data outside the model "
                             f"folder ({location!r}); refusing it")
    if not target.is_file():
        raise ModelLoadError(f"{label}: tensor {tensor.name!r}: its external data file {location!r} is "
                             "missing (or not a regular file)")
    numbers = {}
    for key in ("offset", "length"):
        text = entries.get(key)
        if text is None:
            continue
        try:
            numbers[key] = int(text)
        except ValueError:
            numbers[key] = -1
        if numbers[key] < 0:
            raise ModelLoadError(f"{label}: tensor {tensor.name!r}: external data {key} {text!r} is not a "
                                 "byte count")
    size = target.stat().st_size
    offset = numbers.get("offset", 0)
    want = _raw_bytes(tensor, count)
    length = numbers.get("length", want if want is not None else size - offset)
    if offset + length > size:
        raise ModelLoadError(f"{label}: tensor {tensor.name!r}: external data {location!r} bytes "
                             f"{offset}..{offset + length} lie past its end ({size} bytes)")
    if "length" in numbers and want is not None and length != want:
        raise ModelLoadError(f"{label}: tensor {tensor.name!r} declares dims {list(tensor.dims)} ({want} "
                             f"bytes) but its external data is {length} bytes")


__all__ = ["MAX_ELEMENTS", "check_tensors", "tensors"]
