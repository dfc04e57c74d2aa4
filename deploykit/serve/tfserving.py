"""TensorFlow Serving REST endpoints: model status, model metadata and ``:predict``, as TF Serving's
REST documentation (``tensorflow_serving/g3doc/api_rest.md``) shows them, so a TF Serving client
switches by changing the URL.

``GET /v1/models/{name}[/versions/{v}|/labels/{label}]`` (status), ``.../metadata`` (one
``serving_default`` signature built from the engine's specs) and ``POST ...:predict`` with the row
(``instances``) or columnar (``inputs``) format, answered ``{"predictions": ...}`` or
``{"outputs": ...}``; ``{"b64": ...}`` for binary strings (output names ending ``_bytes`` are
always sent so). Every failure is ``{"error": message}`` with the status of ``status.http_status``.
JSON values become arrays only after their nesting depth and element count are checked.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

from ..spec import TensorSpec
from .asgi import Request, Response, Route, json_response
from .bodies import read_body
from .dataplane import DataPlane
from .handlers import Handler, guard, remember
from .jsonio import loads
from .status import ModelNotReady, RequestTooLarge, UnknownModel
from .v2codec import MAX_RANK, BadRequest

#: The one signature a deploykit model has, under TF Serving's default name.
SIGNATURE = "serving_default"
METHOD_NAME = "tensorflow/serving/predict"

#: numpy dtype name -> TF Serving's ``DataType`` enum name (object/str/bytes: ``DT_STRING``).
_TF_DTYPE = {"bool": "DT_BOOL", "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32",
             "int64": "DT_INT64", "uint8": "DT_UINT8", "uint16": "DT_UINT16", "uint32": "DT_UINT32",
             "uint64": "DT_UINT64", "float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE",
             "complex64": "DT_COMPLEX64", "complex128": "DT_COMPLEX128"}


def routes(plane: DataPlane, *, max_body_bytes: int, max_elements: int) -> list[Route]:
    """The TF Serving REST routes over ``plane``."""

    def guarded(handler: Handler, counted: bool = False) -> Handler:
        return guard(handler, plane, error, "tfserving", counted)

    async def model_status(request: Request) -> Response:
        name, version = _target(plane, request)
        versions = [_version_number(name, version)] if version is not None else None
        return _json({"model_version_status": _statuses(plane, name, versions)})

    async def model_metadata(request: Request) -> Response:
        name, version = _target(plane, request)
        served = plane.get(name, version)
        signature = {"inputs": {s.name: _tensor_info(s) for s in served.inputs},
                     "outputs": {s.name: _tensor_info(s) for s in served.engine.outputs},
                     "method_name": METHOD_NAME}
        return _json({"model_spec": {"name": name, "signature_name": "", "version": str(served.version)},
                      "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature}}}})

    async def predict(request: Request) -> Response:
        name, version = _target(plane, request)
        body = _parse(await read_body(request, max_body_bytes))
        served = plane.get(name, version)
        row, feeds = _feeds(body, served.inputs, max_elements)
        done = await plane.infer(name, served.version, feeds)
        remember(request, done)
        outputs = done.outputs
        return _json({"predictions": _rows(outputs)} if row else {"outputs": _columns(outputs)})

    async def unsupported(request: Request) -> Response:
        raise BadRequest(f"Malformed request: {request.method} {request.path}; this server answers "
                         "GET /v1/models/<name>[/versions/<v>|/labels/<label>][/metadata] and POST "
                         "...:predict (not :classify nor :regress)")

    table: list[Route] = []
    for prefix in ("/v1/models/{name}", "/v1/models/{name}/versions/{version}",
                   "/v1/models/{name}/labels/{label}"):
        table += [Route(prefix, guarded(model_status), methods=["GET"]),
                  Route(prefix + "/metadata", guarded(model_metadata), methods=["GET"]),
                  Route(prefix + ":predict", guarded(predict, counted=True), methods=["POST"])]
    # last: anything else under /v1/models gets an {"error"} body rather than a plain-text 404/405
    return [*table, Route("/v1/models/{rest:path}", guarded(unsupported), methods=["GET", "POST"])]


def error(status: int, message: str, retry: str | None = None) -> Response:
    """TF Serving's error body: ``{"error": message}`` (with Retry-After when the error says when)."""
    return json_response({"error": message}, status, {"Retry-After": retry} if retry is not None else None)


def _json(payload: Any) -> Response:
    # NaN and Infinity are written as tokens, as TF Serving does (its "JSON conformance" section)
    return json_response(payload)


# ------------------------------------------------------------------------------------ path and status

def _target(plane: DataPlane, request: Request) -> tuple[str, int | None]:
    """The model name and the version the path names (a label resolved; None: the newest)."""
    name = request.path_params["name"]
    label = request.path_params.get("label")
    version = request.path_params.get("version")
    if label is not None:
        plane.versions(name)  # UnknownModel (404) naming the served models
        return name, plane.repository.models[name].version_for_label(label)
    return name, None if version is None else _version_number(name, version)


def _version_number(name: str, version: str | int) -> int:
    text = str(version)
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 10**18:
        raise UnknownModel(f"model {name!r}: a version is a positive integer, got {text!r}")
    return int(text)


def _statuses(plane: DataPlane, name: str, versions: list[int] | None) -> list[dict[str, Any]]:
    """TF Serving's ``ModelVersionStatus`` list: AVAILABLE, LOADING, or END with the load error."""
    entry = plane.repository.models.get(name)
    loaded = plane.versions(name)  # UnknownModel (404) for a model not served
    served = entry.served_versions() if entry is not None else []
    wanted = sorted(set(served) | set(loaded)) if versions is None else versions
    for number in wanted:
        if number not in served and number not in loaded:
            raise UnknownModel(f"model {name!r} has no version {number}; served versions: "
                               f"{', '.join(map(str, sorted(set(served) | set(loaded)))) or '(none)'}")
    failures = plane.failures
    out = []
    for number in wanted:
        state, code, message = "LOADING", "OK", ""
        failed = failures.get(f"{name}/{number}")
        if failed is not None:
            state, code, message = "END", "UNKNOWN", failed
        elif number in loaded:
            try:
                plane.get(name, number)
                state = "AVAILABLE"
            except ModelNotReady:
                state = "UNLOADING"
        out.append({"version": str(number), "state": state,
                    "status": {"error_code": code, "error_message": message}})
    return out


def _tensor_info(spec: TensorSpec) -> dict[str, Any]:
    """A ``TensorInfo`` as TF Serving writes it (int64 sizes as strings, -1 for a dynamic size)."""
    kind = "DT_STRING" if spec.dtype.kind in "OUS" else _TF_DTYPE.get(spec.dtype.name, "DT_INVALID")
    if spec.shape is None:
        shape: dict[str, Any] = {"dim": [], "unknown_rank": True}
    else:
        dims = [{"size": str(d) if isinstance(d, int) else "-1", "name": d if isinstance(d, str) else ""}
                for d in spec.shape]
        shape = {"dim": dims, "unknown_rank": False}
    return {"dtype": kind, "tensor_shape": shape, "name": spec.name}


# ------------------------------------------------------------------------------------------- request

def _parse(body: bytes) -> dict[str, Any]:
    """The predict request object: ``instances`` or ``inputs`` (not both), optional ``signature_name``."""
    try:
        data = loads(body)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the request body must be a JSON object, got {_kind(data)}")
    unknown = sorted(set(data) - {"signature_name", "instances", "inputs"})
    if unknown:
        raise BadRequest(f"unknown key(s) {', '.join(map(repr, unknown))}; a predict request has "
                         "'instances' or 'inputs' and optionally 'signature_name'")
    if ("instances" in data) == ("inputs" in data):
        raise BadRequest("a predict request has either 'instances' (row format) or 'inputs' (columnar "
                         "format), " + ("not both" if "inputs" in data else "and it has neither"))
    signature = data.get("signature_name", SIGNATURE)
    if signature not in ("", SIGNATURE):
        raise BadRequest(f"Serving signature name: {json.dumps(signature)} not found in signature def; "
                         f"this model has one signature, {SIGNATURE!r}")
    return data


def _feeds(data: dict[str, Any], inputs: list[TensorSpec], max_elements: int) -> tuple[bool, dict[str, Any]]:
    """(row format?, feeds): the request's tensors as arrays, stacked along a new first axis for
    ``instances``; the Engine then checks and converts them as it does in-process."""
    budget = [max_elements]
    names = [s.name for s in inputs]
    if "inputs" in data:
        value = data["inputs"]
        if _named(value):
            return False, {k: _array(v, f"inputs[{k!r}]", budget, max_elements) for k, v in value.items()}
        return False, {_single(names, "inputs"): _array(value, "inputs", budget, max_elements)}
    instances = data["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest("'instances' must be a non-empty list (one item per example), got "
                         + _kind(instances))
    if not all(_named(i) for i in instances):
        if any(_named(i) for i in instances):
            raise BadRequest("'instances' mixes objects (named inputs) and plain values; use one or "
                             "the other")
        return True, {_single(names, "instances"): _array(instances, "instances", budget, max_elements)}
    keys = list(instances[0])
    for i, instance in enumerate(instances):
        if set(instance) != set(keys):
            raise BadRequest(f"instances[{i}] names inputs {sorted(instance)}, instances[0] names "
                             f"{sorted(keys)}; every instance names the same inputs (else use 'inputs')")
    return True, {k: _array([i[k] for i in instances], f"instances[*][{k!r}]", budget, max_elements)
                  for k in keys}


def _named(value: Any) -> bool:
    """An object of named inputs (a ``{"b64": ...}`` object is a value, not a name)."""
    return isinstance(value, dict) and not _is_b64(value)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and list(value) == ["b64"]


def _single(names: list[str], where: str) -> str:
    if len(names) != 1:
        raise BadRequest(f"'{where}' gives one unnamed tensor but the model has {len(names)} inputs "
                         f"({', '.join(map(repr, names))}); give an object input name -> value")
    return names[0]


def _array(value: Any, where: str, budget: list[int], max_elements: int) -> np.ndarray:
    """One tensor from nested JSON lists: rectangular, at most ``MAX_RANK`` deep, its elements counted
    against what is left of ``max_elements`` before any array is made."""
    shape: list[int] = []
    level = [value]
    while level and all(isinstance(v, list) for v in level):
        lengths = {len(v) for v in level}
        if len(lengths) > 1:
            raise BadRequest(f"{where}: ragged nested lists (lengths {sorted(lengths)[:4]} at depth "
                             f"{len(shape) + 1}); every row of a tensor has the same length")
        if len(shape) == MAX_RANK:
            raise BadRequest(f"{where}: nested more than {MAX_RANK} levels deep")
        shape.append(lengths.pop())
        level = [item for v in level for item in v]
        if len(level) > budget[0]:
            raise RequestTooLarge(f"{where}: the request's tensors hold more than {max_elements} elements "
                                  "(the server's limit)")
    if level and any(isinstance(v, list) for v in level):
        raise BadRequest(f"{where}: ragged nested lists (lists and values mixed at depth {len(shape) + 1})")
    budget[0] -= max(len(level), 1)
    return _leaves([_leaf(v, where) for v in level], shape, where)


def _leaf(value: Any, where: str) -> Any:
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise BadRequest(f"{where}: {{\"b64\": ...}} holds no valid base64 string") from None
    if isinstance(value, (bool, int, float, str)):
        return value
    raise BadRequest(f"{where}: got {_kind(value)} where a number, string, true/false or "
                     '{"b64": ...} goes')


def _leaves(items: list[Any], shape: list[int], where: str) -> np.ndarray:
    kinds = {type(v) for v in items}
    if kinds & {str, bytes}:
        if kinds - {str, bytes}:
            raise BadRequest(f"{where}: strings mixed with numbers or booleans")
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return array.reshape(shape)
    if bool in kinds and len(kinds) > 1:
        raise BadRequest(f"{where}: booleans mixed with numbers")
    array = np.array(items)
    if array.dtype == object:
        raise BadRequest(f"{where}: an integer outside the 64-bit range")
    return array.reshape(shape)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


# ------------------------------------------------------------------------------------------ response

def _columns(outputs: dict[str, np.ndarray]) -> Any:
    """``outputs``: the only output's value, else an object output name -> value."""
    values = {k: _value(k, v) for k, v in outputs.items()}
    return next(iter(values.values())) if len(values) == 1 else values


def _rows(outputs: dict[str, np.ndarray]) -> Any:
    """``predictions``: the only output's list per example, else one object per example."""
    if len(outputs) == 1:
        return _columns(outputs)
    sizes = {k: int(np.shape(v)[0]) if np.ndim(v) else -1 for k, v in outputs.items()}
    batch = next(iter(sizes.values()))
    if len(set(sizes.values())) != 1 or batch < 0:
        raise BadRequest("the outputs do not share a batch size ("
                         + ", ".join(f"{k}: {v}" for k, v in sizes.items())
                         + "), so they cannot be split into rows; send the columnar format ('inputs')")
    columns = {k: _value(k, v) for k, v in outputs.items()}
    return [{k: column[i] for k, column in columns.items()} for i in range(batch)]


def _value(name: str, array: np.ndarray) -> Any:
    """An output as nested JSON lists; strings as text, or ``{"b64": ...}`` for bytes that are not
    UTF-8 and for outputs named ``*_bytes``."""
    array = np.asarray(array)
    if array.dtype.kind not in "OSU":
        return array.tolist()
    binary = name.endswith("_bytes")
    flat = [_string(v, binary) for v in array.ravel().tolist()]
    return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]


def _string(value: Any, binary: bool) -> Any:
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if not binary:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(raw).decode("ascii")}


__all__ = ["METHOD_NAME", "SIGNATURE", "error", "routes"]
