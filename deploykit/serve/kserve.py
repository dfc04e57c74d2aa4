"""KServe v2 (Open Inference Protocol) REST endpoints: HTTP in, the data plane, HTTP out.

Health, server and model metadata, model readiness, Triton's model configuration (which its client
tools read), and inference with JSON or binary tensors (``v2codec``); gzip/deflate request bodies.
Every failure is ``{"error": message}`` with the status of ``status.http_status``.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import DeployKitError
from ..spec import TensorSpec
from ..version import __version__
from . import v2codec
from .dataplane import DataPlane
from .status import RequestTooLarge, http_status

Handler = Callable[[Request], Awaitable[Response]]

#: Triton's names for the model configuration endpoint's data types.
_CONFIG_TYPE = {"BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16", "UINT32": "TYPE_UINT32",
                "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8", "INT16": "TYPE_INT16", "INT32": "TYPE_INT32",
                "INT64": "TYPE_INT64", "FP16": "TYPE_FP16", "FP32": "TYPE_FP32", "FP64": "TYPE_FP64",
                "BYTES": "TYPE_STRING"}


def routes(plane: DataPlane, *, max_body_bytes: int, max_elements: int) -> list[Route]:
    """The v2 routes over ``plane``."""

    def guarded(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except DeployKitError as e:
                return error(http_status(e), str(e))
        return run

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": plane.ready}, status_code=200 if plane.ready else 503)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "deploykit", "version": __version__,
                             "extensions": ["binary_tensor_data", "model_configuration"]})

    async def model_metadata(request: Request) -> Response:
        name, version = _path(request)
        served = plane.get(name, version)
        return JSONResponse({"name": name, "versions": [str(v) for v in plane.versions(name)],
                             "platform": served.engine.backend,
                             "inputs": [_tensor_metadata(s) for s in served.engine.inputs],
                             "outputs": [_tensor_metadata(s) for s in served.engine.outputs]})

    async def model_ready(request: Request) -> Response:
        name, version = _path(request)
        plane.get(name, version)  # 404 / 503 when not
        return JSONResponse({"name": name, "ready": True})

    async def model_config(request: Request) -> Response:
        name, version = _path(request)
        served = plane.get(name, version)
        return JSONResponse({"name": name, "platform": served.engine.backend, "max_batch_size": 0,
                             "input": [_config_tensor(s) for s in served.engine.inputs],
                             "output": [_config_tensor(s) for s in served.engine.outputs]})

    async def infer(request: Request) -> Response:
        name, version = _path(request)
        body = await _body(request, max_body_bytes)
        header = request.headers.get("inference-header-content-length")
        parsed = v2codec.decode_request(body, v2codec.parse_header_length(header), max_elements=max_elements)
        served, outputs = await plane.infer(name, version, parsed.inputs, parsed.outputs)
        data, json_size = v2codec.encode_response(served.name, str(served.version), parsed.id, outputs,
                                                  parsed.binary_outputs)
        headers = {}
        if json_size is not None:
            headers["Inference-Header-Content-Length"] = str(json_size)
        media = "application/octet-stream" if json_size is not None else "application/json"
        return Response(data, media_type=media, headers=headers)

    table: list[tuple[str, Handler, list[str]]] = [
        ("/v2/health/live", live, ["GET"]),
        ("/v2/health/ready", ready, ["GET"]),
        ("/v2", server_metadata, ["GET"]),
    ]
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        table += [(prefix, model_metadata, ["GET"]), (prefix + "/ready", model_ready, ["GET"]),
                  (prefix + "/config", model_config, ["GET"]), (prefix + "/infer", infer, ["POST"])]
    return [Route(path, guarded(handler), methods=methods) for path, handler, methods in table]


def error(status: int, message: str) -> Response:
    """The protocol's error body: ``{"error": message}``."""
    return Response(v2codec.error_body(message), status_code=status, media_type="application/json")


def _path(request: Request) -> tuple[str, str | None]:
    return request.path_params["name"], request.path_params.get("version")


async def _body(request: Request, limit: int) -> bytes:
    """The request body, decompressed (gzip, deflate), refused past ``limit`` bytes either way."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body of {declared} bytes is over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise v2codec.BadRequest(f"Content-Encoding {encoding!r} is not supported; use gzip or deflate")
    try:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS)
        out = inflater.decompress(body, limit + 1)  # bounded: a zip bomb stops at the limit
    except (zlib.error, gzip.BadGzipFile) as e:
        raise v2codec.BadRequest(f"the {encoding} request body does not decompress: {e}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise RequestTooLarge(f"request body over the limit of {limit} bytes once decompressed")
    return out


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": v2codec.datatype_of(spec.dtype), "shape": _dims(spec)}


def _config_tensor(spec: TensorSpec) -> dict[str, Any]:
    kind = _CONFIG_TYPE.get(v2codec.datatype_of(spec.dtype), "TYPE_INVALID")
    return {"name": spec.name, "data_type": kind, "dims": _dims(spec)}


def _dims(spec: TensorSpec) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in (spec.shape or ())]


__all__ = ["error", "routes"]
