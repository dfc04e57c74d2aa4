"""KServe v2 (Open Inference Protocol) REST endpoints: HTTP in, the data plane, HTTP out.

Health, server and model metadata, model readiness, Triton's model configuration (which its client
tools read), and inference with JSON or binary tensors (``v2codec``); gzip/deflate request bodies.
Every failure is ``{"error": message}`` with the status of ``status.http_status``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..spec import TensorSpec
from ..version import __version__
from . import v2codec
from .asgi import Request, Response, Route, json_response
from .bodies import read_body
from .dataplane import DataPlane
from .handlers import Handler, guard, remember

#: Triton's names for the model configuration endpoint's data types.
_CONFIG_TYPE = {"BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16", "UINT32": "TYPE_UINT32",
                "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8", "INT16": "TYPE_INT16", "INT32": "TYPE_INT32",
                "INT64": "TYPE_INT64", "FP16": "TYPE_FP16", "FP32": "TYPE_FP32", "FP64": "TYPE_FP64",
                "BYTES": "TYPE_STRING"}


def routes(plane: DataPlane, *, max_body_bytes: int, max_elements: int,
           repository_api: bool = False) -> list[Route]:
    """The v2 routes over ``plane``; the repository extension (index, load, unload) answers 403
    unless ``repository_api``."""

    def guarded(handler: Handler, counted: bool = False) -> Handler:
        return guard(handler, plane, error, "kserve", counted)

    async def live(request: Request) -> Response:
        return json_response({"live": True})

    async def ready(request: Request) -> Response:
        return json_response({"ready": plane.ready}, 200 if plane.ready else 503)

    async def server_metadata(request: Request) -> Response:
        return json_response({"name": "deploykit", "version": __version__,
                             "extensions": ["binary_tensor_data", "model_configuration"]})

    async def model_metadata(request: Request) -> Response:
        name, version = _path(request)
        served = plane.get(name, version)
        return json_response({"name": name, "versions": [str(v) for v in plane.versions(name)],
                             "platform": served.engine.backend,
                             "inputs": [_tensor_metadata(s) for s in served.inputs],
                             "outputs": [_tensor_metadata(s) for s in served.engine.outputs]})

    async def model_ready(request: Request) -> Response:
        name, version = _path(request)
        plane.get(name, version)  # 404 / 503 when not
        return json_response({"name": name, "ready": True})

    async def model_config(request: Request) -> Response:
        name, version = _path(request)
        served = plane.get(name, version)
        return json_response({"name": name, "platform": served.engine.backend, "max_batch_size": 0,
                             "input": [_config_tensor(s) for s in served.inputs],
                             "output": [_config_tensor(s) for s in served.engine.outputs]})

    async def infer(request: Request) -> Response:
        name, version = _path(request)
        body = await read_body(request, max_body_bytes)
        header = request.headers.get("inference-header-content-length")
        parsed = v2codec.decode_request(body, v2codec.parse_header_length(header), max_elements=max_elements)
        done = await plane.infer(name, version, parsed.inputs, parsed.outputs)
        remember(request, done)
        data, json_size = v2codec.encode_response(done.served.name, str(done.served.version), parsed.id,
                                                  done.outputs, parsed.binary_outputs)
        if json_size is None:
            return Response(data, 200, "application/json")
        return Response(data, 200, "application/octet-stream",
                        {"Inference-Header-Content-Length": str(json_size)})

    def repository(action: Callable[[Request], Awaitable[Any]]) -> Handler:
        async def handle(request: Request) -> Response:
            if not repository_api:
                return error(403, "the model repository API is disabled; start the server with "
                                  "repository_api=True (deploykit serve --repository-api) to enable it")
            return json_response(await action(request))
        return handle

    async def index(request: Request) -> Any:
        return plane.index()

    async def load_model(request: Request) -> Any:
        await plane.reload(only=request.path_params["name"])
        return {}

    async def unload_model(request: Request) -> Any:
        await plane.unload(request.path_params["name"])
        return {}

    table: list[tuple[str, Handler, list[str]]] = [
        ("/v2/models/{name}/infer", infer, ["POST"]),
        ("/v2/models/{name}/versions/{version}/infer", infer, ["POST"]),
        ("/v2/repository/index", repository(index), ["POST"]),
        ("/v2/repository/models/{name}/load", repository(load_model), ["POST"]),
        ("/v2/repository/models/{name}/unload", repository(unload_model), ["POST"]),
        ("/v2/health/live", live, ["GET"]),
        ("/v2/health/ready", ready, ["GET"]),
        ("/v2", server_metadata, ["GET"]),
    ]
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        table += [(prefix, model_metadata, ["GET"]), (prefix + "/ready", model_ready, ["GET"]),
                  (prefix + "/config", model_config, ["GET"])]
    return [Route(path, guarded(handler, counted=handler is infer), methods=methods)
            for path, handler, methods in table]


def error(status: int, message: str, retry: str | None = None) -> Response:
    """The protocol's error body: ``{"error": message}`` (with Retry-After when the error says when)."""
    headers = {"Retry-After": retry} if retry is not None else None
    return Response(v2codec.error_body(message), status, "application/json", headers)


def _path(request: Request) -> tuple[str, str | None]:
    return request.path_params["name"], request.path_params.get("version")


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": v2codec.datatype_of(spec.dtype), "shape": _dims(spec)}


def _config_tensor(spec: TensorSpec) -> dict[str, Any]:
    kind = _CONFIG_TYPE.get(v2codec.datatype_of(spec.dtype), "TYPE_INVALID")
    return {"name": spec.name, "data_type": kind, "dims": _dims(spec)}


def _dims(spec: TensorSpec) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in (spec.shape or ())]


__all__ = ["error", "routes"]
