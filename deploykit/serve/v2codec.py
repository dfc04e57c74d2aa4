"""KServe v2 / Open Inference Protocol REST tensors <-> numpy, with the binary tensor data extension.

Pure functions, no HTTP: ``decode_request`` turns a request body (and the value of its
``Inference-Header-Content-Length`` header) into an :class:`InferRequest`; ``encode_response``
turns named arrays into a response body; ``error_body`` is the protocol's ``{"error": ...}``.
Every malformed request raises :class:`BadRequest` (an ``InvalidArgument``) naming the field, what
came and what was expected; sizes are checked from declared shapes before anything is allocated.

Decisions the spec leaves open:

- JSON has no NaN, but Python's ``json`` and tritonclient (rapidjson) read and write the tokens
  ``NaN``, ``Infinity`` and ``-Infinity``: they are accepted in FP16/32/64 tensors only (and
  written that way when an output holds them). Integers are accepted in FP tensors; booleans,
  floats and strings are refused in integer tensors, and BOOL takes only ``true``/``false``.
- A finite value that overflows FP16/FP32, or an integer outside its type's range, is refused.
- Data may be flat or nested (row-major); only its element count is checked against the shape.
- A dimension of 0 makes an empty tensor, but the other dimensions still count towards
  ``max_elements`` (so a declared ``[0, 10**12]`` is refused rather than handed to numpy).
- Binary tensors become read-only arrays over the body (no copy); BYTES become object arrays of
  ``bytes`` (JSON strings are encoded as UTF-8).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import KeysView
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from deploykit.errors import DeployKitError, InvalidArgument

from .jsonio import dumps, loads

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "MAX_RANK",
    "BadRequest",
    "InferRequest",
    "OutputNotEncodable",
    "datatype_of",
    "decode_request",
    "encode_response",
    "error_body",
    "parse_header_length",
]

#: The HTTP header that gives the length of the JSON part of a body with binary tensors.
HEADER_LENGTH = "Inference-Header-Content-Length"
#: Most dimensions a tensor may declare (numpy's own limit is 64).
MAX_RANK = 32
#: The protocol's datatypes and their little-endian numpy dtypes (BYTES: object arrays of bytes).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_INT_RANGE = {name: (int(np.iinfo(dt).min), int(np.iinfo(dt).max))
              for name, dt in DATATYPES.items() if dt.kind in "iu"}
_FLOAT_MAX = {name: float(np.finfo(dt).max) for name, dt in DATATYPES.items() if dt.kind == "f"}
_BY_KIND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in DATATYPES.items() if name != "BYTES"}
_PREFIX = struct.Struct("<I")


class BadRequest(InvalidArgument):
    """A v2 inference request the codec cannot read (also a ``ValueError``); answer it with a 400."""


class OutputNotEncodable(DeployKitError, TypeError):
    """A model output the protocol cannot carry (a dtype it has no datatype for, or BYTES that are
    not UTF-8 asked for as JSON): the server's fault, not the client's."""


@dataclass
class InferRequest:
    """A decoded v2 inference request.

    ``inputs`` maps names to arrays shaped as declared (what ``Engine.run`` takes); ``outputs`` names
    the outputs asked for, in order (None: the client named none); ``binary`` says per named output
    whether it asked for binary data (None: it did not say). Parameters are kept as sent.
    """

    id: str | None
    parameters: dict[str, Any]
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None
    datatypes: dict[str, str] = field(default_factory=dict)
    input_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    output_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    binary: dict[str, bool | None] = field(default_factory=dict)

    @property
    def binary_outputs(self) -> set[str] | bool:
        """Which outputs to send as binary, for ``encode_response``: an output's own ``binary_data``,
        else the request's ``binary_data_output`` parameter (default False; tritonclient sets it
        when it names no outputs)."""
        default = bool(self.parameters.get("binary_data_output", False))
        if self.outputs is None:
            return default
        return {n for n in self.outputs if (default if self.binary.get(n) is None else self.binary[n])}


def error_body(message: str) -> bytes:
    """The protocol's error body, ``{"error": message}``, which tritonclient reads."""
    return dumps({"error": message})


def parse_header_length(value: str | None) -> int | None:
    """The ``Inference-Header-Content-Length`` header's value as an int (None when absent)."""
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise BadRequest(f"header {HEADER_LENGTH}: got {value[:40]!r}, expected a non-negative integer "
                         "(the byte length of the JSON part of the body)")
    return int(text)


# ---------------------------------------------------------------------------------------------- decode

def decode_request(body: bytes, header_length: int | None, *, max_elements: int) -> InferRequest:
    """Parse a v2 inference request body; ``header_length`` is the JSON part's length when the body
    carries binary tensors. ``max_elements`` bounds the elements of all inputs together."""
    header, binary = _split_body(body, header_length)
    request = _load_json(header)
    _check_fields(request, "request", {"id": str, "parameters": dict, "inputs": list, "outputs": list})
    if "inputs" not in request:
        raise BadRequest("request: missing field 'inputs' (a list of tensors)")
    parameters = request.get("parameters", {})
    _check_parameters(parameters, "request", {"binary_data_output": bool})
    result = InferRequest(request.get("id"), parameters, {}, None)
    _decode_inputs(result, request["inputs"], binary, max_elements)
    if "outputs" in request:
        _decode_outputs(result, request["outputs"])
    return result


def _split_body(body: bytes, header_length: int | None) -> tuple[bytes, memoryview]:
    view = memoryview(body)
    if header_length is None:
        return body, view[len(body):]
    if isinstance(header_length, bool) or not isinstance(header_length, int) or header_length < 0:
        raise BadRequest(f"header {HEADER_LENGTH}: got {header_length!r}, expected a non-negative integer")
    if header_length > len(body):
        raise BadRequest(f"header {HEADER_LENGTH}: says the JSON part has {header_length} bytes but the "
                         f"body has only {len(body)}")
    return body[:header_length], view[header_length:]


def _load_json(header: bytes) -> dict[str, Any]:
    try:
        request = loads(header)
    except RecursionError:
        raise BadRequest("request: JSON nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise BadRequest(f"request: invalid JSON ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(request, dict):
        raise BadRequest(f"request: got a JSON {_json_kind(request)}, expected an object with 'inputs'")
    return request


def _json_kind(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
             float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _check_fields(obj: dict[str, Any], where: str, types: dict[str, type]) -> None:
    for key, expected in types.items():
        if key in obj and not isinstance(obj[key], expected):
            raise BadRequest(f"{where}: field '{key}' is a JSON {_json_kind(obj[key])}, expected a JSON "
                             f"{_json_kind(expected())}")


def _check_parameters(parameters: dict[str, Any], where: str, types: dict[str, type]) -> None:
    for key, expected in types.items():
        value = parameters.get(key)
        if value is not None and (type(value) is not expected):
            raise BadRequest(f"{where}: parameter '{key}' is a JSON {_json_kind(value)}, expected a JSON "
                             f"{_json_kind(expected())}")


def _decode_inputs(result: InferRequest, entries: list[Any], binary: memoryview, max_elements: int) -> None:
    seen = result.inputs.keys()
    budget, offset = max_elements, 0
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise BadRequest(f"inputs[{i}]: got a JSON {_json_kind(entry)}, expected an object with "
                             "'name', 'shape', 'datatype' and 'data'")
        name = _name(entry, f"inputs[{i}]", seen)
        where = f"input {_quoted(name)}"
        _check_fields(entry, where, {"parameters": dict})
        datatype, shape = _datatype(entry, where), _shape(entry, where)
        count = _count(shape, where, budget, max_elements)
        budget -= count
        parameters = entry.get("parameters", {})
        _check_parameters(parameters, where, {"binary_data_size": int})
        size = parameters.get("binary_data_size")
        if size is not None:
            if "data" in entry:
                raise BadRequest(f"{where}: has both 'data' and parameters.binary_data_size; send one")
            array, offset = _from_binary(binary, offset, size, datatype, count, where)
        elif "data" in entry:
            array = _from_json(entry["data"], datatype, count, where)
        else:
            raise BadRequest(f"{where}: missing field 'data' (or parameters.binary_data_size with the "
                             f"tensor after the JSON)")
        result.inputs[name] = array.reshape(shape)
        result.datatypes[name] = datatype
        result.input_parameters[name] = parameters
    if offset != len(binary):
        raise BadRequest(f"request: the body has {len(binary) - offset} bytes after the JSON part that no "
                         "input's parameters.binary_data_size accounts for")


def _decode_outputs(result: InferRequest, entries: list[Any]) -> None:
    outputs: list[str] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise BadRequest(f"outputs[{i}]: got a JSON {_json_kind(entry)}, expected an object with 'name'")
        name = _name(entry, f"outputs[{i}]", result.output_parameters.keys())
        where = f"requested output {_quoted(name)}"
        _check_fields(entry, where, {"parameters": dict})
        parameters = entry.get("parameters", {})
        _check_parameters(parameters, where, {"binary_data": bool})
        outputs.append(name)
        result.output_parameters[name] = parameters
        result.binary[name] = parameters.get("binary_data")
    result.outputs = outputs


def _name(entry: dict[str, Any], where: str, seen: KeysView[str]) -> str:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        got = "nothing" if name is None else f"a JSON {_json_kind(name)}"
        raise BadRequest(f"{where}: field 'name' is {got}, expected a non-empty string")
    if name in seen:
        raise BadRequest(f"{where}: name {_quoted(name)} appears twice; each tensor may be named once")
    return name


def _quoted(name: str) -> str:
    """A tensor name for a message, cut short: a client's megabyte-long name is not echoed back."""
    return f"'{name}'" if len(name) <= 80 else f"'{name[:77]}...'"


def _datatype(entry: dict[str, Any], where: str) -> str:
    datatype = entry.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        got = "missing" if datatype is None else repr(datatype)[:40]
        raise BadRequest(f"{where}: datatype {got}, expected one of {', '.join(DATATYPES)}")
    return str(datatype)


def _shape(entry: dict[str, Any], where: str) -> list[int]:
    shape = entry.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(
            type(d) is int and d >= 0 for d in shape):
        got = "missing" if shape is None else _short(shape)
        raise BadRequest(f"{where}: shape {got}, expected a list of at most {MAX_RANK} non-negative "
                         "integers")
    return shape


def _count(shape: list[int], where: str, budget: int, max_elements: int) -> int:
    span = math.prod(d or 1 for d in shape)  # zero dims count as 1: numpy refuses huge empty shapes
    if span > budget:
        raise BadRequest(f"{where}: shape {shape} declares {span} elements, over the limit of "
                         f"{max_elements} per request ({max_elements - budget} taken by earlier inputs)")
    return math.prod(shape)


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _from_binary(binary: memoryview, offset: int, size: int, datatype: str, count: int,
                 where: str) -> tuple[np.ndarray, int]:
    if size < 0 or size > len(binary) - offset:
        hint = f" (is the {HEADER_LENGTH} header missing?)" if not len(binary) else ""
        raise BadRequest(f"{where}: parameters.binary_data_size is {size} but only {len(binary) - offset} "
                         f"bytes of binary data are left in the body{hint}")
    chunk = binary[offset:offset + size]
    if datatype == "BYTES":
        return _bytes_items(chunk, count, where), offset + size
    dtype = DATATYPES[datatype]
    if size != count * dtype.itemsize:
        raise BadRequest(f"{where}: parameters.binary_data_size is {size} bytes, expected "
                         f"{count * dtype.itemsize} ({count} {datatype} elements of {dtype.itemsize} bytes)")
    array = np.frombuffer(chunk, dtype=dtype)
    if datatype == "BOOL" and count and array.view(np.uint8).max() > 1:
        raise BadRequest(f"{where}: BOOL binary data holds bytes other than 0 and 1")
    return array, offset + size


def _bytes_items(chunk: memoryview, count: int, where: str) -> np.ndarray:
    """BYTES in binary: each element is a 4-byte little-endian length, then that many bytes."""
    items = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > len(chunk):
            raise BadRequest(f"{where}: BYTES binary data ends after {i} of {count} elements")
        (length,) = _PREFIX.unpack_from(chunk, pos)
        pos += 4
        if pos + length > len(chunk):
            raise BadRequest(f"{where}: BYTES element {i} says {length} bytes but only {len(chunk) - pos} "
                             "are left in its binary_data_size")
        items[i] = bytes(chunk[pos:pos + length])
        pos += length
    if pos != len(chunk):
        raise BadRequest(f"{where}: BYTES binary data has {len(chunk) - pos} bytes after its {count} "
                         "elements (binary_data_size does not match the shape)")
    return items


def _from_json(data: object, datatype: str, count: int, where: str) -> np.ndarray:
    items, kinds = _flatten(data, where)
    if len(items) != count:
        raise BadRequest(f"{where}: 'data' has {len(items)} elements, expected {count} (the product of "
                         "its shape)")
    if datatype == "BYTES":
        _expect(kinds <= {str}, kinds, where, datatype, "strings")
        array = np.empty(count, dtype=object)
        array[:] = [s.encode() for s in items]
        return array
    dtype = DATATYPES[datatype]
    if datatype == "BOOL":
        _expect(kinds <= {bool}, kinds, where, datatype, "true/false")
        return np.array(items, dtype=dtype)
    if dtype.kind == "f":
        _expect(kinds <= {int, float}, kinds, where, datatype, "numbers (or NaN/Infinity)")
        return _floats(items, dtype, where, datatype)
    low, high = _INT_RANGE[datatype]
    if float in kinds:  # an integer past 64 bits comes from the JSON reader as a float: say so
        big = next((v for v in items if type(v) is float and v.is_integer() and not low <= v <= high), None)
        if big is not None:
            raise BadRequest(f"{where}: value {int(big)} does not fit {datatype} (from {low} to {high})")
    _expect(kinds <= {int}, kinds, where, datatype, "integers")
    if items and (min(items) < low or max(items) > high):
        bad = next(v for v in items if not low <= v <= high)
        raise BadRequest(f"{where}: value {bad} does not fit {datatype} (from {low} to {high})")
    return np.array(items, dtype=dtype)


def _flatten(data: object, where: str) -> tuple[list[Any], set[type]]:
    """Row-major elements of flat or nested ``data``, and the set of their Python types."""
    if not isinstance(data, list):
        raise BadRequest(f"{where}: 'data' is a JSON {_json_kind(data)}, expected an array (flat or nested)")
    items: list[Any] = data
    for _ in range(MAX_RANK):
        kinds = set(map(type, items))
        if list not in kinds:
            return items, kinds
        if len(kinds) > 1:
            raise BadRequest(f"{where}: 'data' mixes arrays and values at one level, expected a flat "
                             "or evenly nested array")
        items = list(chain.from_iterable(items))
    raise BadRequest(f"{where}: 'data' is nested deeper than {MAX_RANK} levels")


def _expect(ok: bool, kinds: set[type], where: str, datatype: str, expected: str) -> None:
    if not ok:
        got = ", ".join(sorted({_json_kind(k()) for k in kinds}))
        raise BadRequest(f"{where}: 'data' holds {got} values, expected {expected} for {datatype}")


def _floats(items: list[Any], dtype: np.dtype, where: str, datatype: str) -> np.ndarray:
    try:
        wide = np.array(items, dtype=np.float64)
    except OverflowError:  # an int past float64
        raise BadRequest(f"{where}: a value does not fit {datatype}") from None
    if dtype == wide.dtype:
        return wide
    with np.errstate(over="ignore"):
        narrow = wide.astype(dtype)
    if np.isfinite(narrow).all():  # nothing overflowed (the usual case: one check)
        return narrow
    largest = _FLOAT_MAX[datatype]
    past = np.abs(wide) > largest  # NaN compares False; infinities stay infinities
    if past.any() and np.isfinite(wide[past]).any():
        bad = wide[past & np.isfinite(wide)][0]
        raise BadRequest(f"{where}: value {bad:g} does not fit {datatype} (largest {largest:g})")
    return wide.astype(dtype)


# ---------------------------------------------------------------------------------------------- encode

def datatype_of(dtype: np.dtype) -> str:
    """The protocol datatype of a numpy dtype (object and unicode arrays are BYTES)."""
    if dtype.kind in "OUS":
        return "BYTES"
    name = _BY_KIND_SIZE.get((dtype.kind, dtype.itemsize))
    if name is None:
        raise OutputNotEncodable(f"dtype {dtype} has no KServe v2 datatype (expected bool, (u)int8-64, "
                                 "float16/32/64, or strings/bytes)")
    return name


def encode_response(model_name: str, model_version: str | None, request_id: str | None,
                    outputs: dict[str, np.ndarray], binary: set[str] | bool) -> tuple[bytes, int | None]:
    """A v2 inference response: ``(body, json_length)``; ``json_length`` is None unless some output
    in ``binary`` (True: all) follows the JSON as raw bytes (send it as ``HEADER_LENGTH``)."""
    tensors, chunks = [], []
    for name, array in outputs.items():
        array = np.asarray(array)
        datatype = datatype_of(array.dtype)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary is True or (binary is not False and name in binary):
            chunk = _to_binary(array, datatype)
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            tensor["data"] = _to_json(array, datatype, name)
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        response["model_version"] = model_version
    if request_id:
        response["id"] = request_id
    response["outputs"] = tensors
    header = dumps(response)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _to_binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=DATATYPES[datatype]).tobytes()
    parts = []
    for item in array.ravel().tolist():
        raw = item.encode() if isinstance(item, str) else item
        if not isinstance(raw, bytes):
            raise OutputNotEncodable(f"BYTES output holds a {type(item).__name__}, expected bytes or str")
        parts += [_PREFIX.pack(len(raw)), raw]
    return b"".join(parts)


def _to_json(array: np.ndarray, datatype: str, name: str) -> np.ndarray | list[Any]:
    if datatype != "BYTES":  # written by jsonio.dumps straight from the array
        return np.ascontiguousarray(array).ravel()
    flat = array.ravel().tolist()
    try:
        return [item if isinstance(item, str) else item.decode() for item in flat]
    except (UnicodeDecodeError, AttributeError):
        raise OutputNotEncodable(f"output '{name}': BYTES elements that are not UTF-8 text cannot be sent "
                                 "as JSON; ask for it with binary_data") from None
