"""What every endpoint handler shares, whatever its protocol: errors answered with the protocol's body
and the status table's code, and each inference request counted in the metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import DeployKitError
from .asgi import Handler, Request, Response
from .dataplane import DataPlane, Inference
from .metrics import outcome_of
from .status import http_status, retry_after

#: ``error(status, message, retry_after)``: the protocol's error response.
ErrorResponse = Callable[[int, str, "str | None"], Response]
#: The model label of requests for a model the server does not serve (client text never becomes one).
UNKNOWN_MODEL = "_unknown"


def guard(handler: Handler, plane: DataPlane, error: ErrorResponse, protocol: str,
          counted: bool = False) -> Handler:
    """``handler`` with every ``DeployKitError`` answered by ``error``; ``counted``: an inference
    endpoint, observed in the metrics (outcome, total, queue and compute time)."""

    async def run(request: Request) -> Response:
        start = time.perf_counter()
        try:
            response = await handler(request)
        except DeployKitError as e:
            response = error(http_status(e), str(e), retry_after(e))
        if counted and plane.metrics is not None:
            _observe(plane, request, protocol, response.status_code, time.perf_counter() - start)
        return response

    return run


def remember(request: Request, done: Inference) -> None:
    """Keep an inference's figures on the request for the metrics."""
    request.scope["deploykit.inference"] = done


def _observe(plane: DataPlane, request: Request, protocol: str, status: int, total_s: float) -> None:
    assert plane.metrics is not None
    name = request.path_params.get("name", "")
    done: Inference | None = request.scope.get("deploykit.inference")
    model = name if name in plane.repository.models else UNKNOWN_MODEL
    version = str(done.served.version) if done is not None else ""
    plane.metrics.observe_request(model, version, protocol, outcome_of(status), total_s,
                                  None if done is None else done.queue_s,
                                  None if done is None else done.compute_s)


__all__ = ["UNKNOWN_MODEL", "ErrorResponse", "Handler", "guard", "remember"]
