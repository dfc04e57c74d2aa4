"""The one table from deploykit's errors to protocol statuses, and the data plane's own errors.

``deploykit.errors`` knows nothing of HTTP; this table is the only place that does. A class not in
the table takes its nearest listed ancestor's status (method resolution order), so a subclass added
later is answered sensibly.
"""

from __future__ import annotations

import math

from ..errors import (
    BackendError,
    BackendUnavailable,
    DeployKitError,
    EngineClosed,
    InputMismatch,
    InvalidArgument,
    ModelLoadError,
)
from .repository import NotInRepository


class UnknownModel(DeployKitError, LookupError):
    """A model name or version the server does not serve (the message lists what it serves)."""


class ModelNotReady(DeployKitError, RuntimeError):
    """The model is known but not ready (loading, failed to load, or unloading)."""


class RequestTooLarge(InvalidArgument):
    """A request body or tensor over the server's limits."""


class QueueFull(DeployKitError, RuntimeError):
    """A model holds as many requests as it may (backpressure): answered 503 with Retry-After."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


#: error class -> HTTP status; looked up along the raised class's MRO, first match wins.
HTTP_STATUS: dict[type[BaseException], int] = {
    RequestTooLarge: 413,
    UnknownModel: 404,
    NotInRepository: 404,
    InputMismatch: 400,
    InvalidArgument: 400,
    ModelNotReady: 503,
    QueueFull: 503,
    EngineClosed: 503,
    BackendUnavailable: 503,
    ModelLoadError: 500,
    BackendError: 500,
    DeployKitError: 500,
}


def http_status(error: BaseException) -> int:
    """The HTTP status for ``error`` (500 for anything the table does not know)."""
    for cls in type(error).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 500


def retry_after(error: BaseException) -> str | None:
    """The Retry-After header value (whole seconds) for an error that carries one."""
    seconds = getattr(error, "retry_after", None)
    return None if seconds is None else str(max(1, math.ceil(float(seconds))))


__all__ = ["HTTP_STATUS", "ModelNotReady", "QueueFull", "RequestTooLarge", "UnknownModel", "http_status",
           "retry_after"]
