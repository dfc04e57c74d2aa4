"""``dk.serve.app(repository)``: an ASGI app serving a model repository (or one model file), to run
with any ASGI server or mount in an existing service."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..arguments import check_number
from ..errors import BackendUnavailable

log = logging.getLogger("deploykit.serve")

#: Default request limits: a body (after decompression) and the elements of one request's tensors.
MAX_BODY_BYTES = 64 * 2**20
MAX_ELEMENTS = 16 * 2**20


def app(repository: str | Path, *, max_body_bytes: int = MAX_BODY_BYTES,
        max_elements: int = MAX_ELEMENTS) -> Any:
    """A Starlette app speaking KServe v2 REST over ``repository`` (``repo/<model>/<version>/...``, or
    one model file). Models load and warm up at startup, before ``/v2/health/ready`` says so."""
    try:
        from starlette.applications import Starlette
    except ImportError as e:
        raise BackendUnavailable(f"serving needs the serve extra: pip install 'deploykit[serve]' "
                                 f"({e})") from e

    from . import kserve
    from .dataplane import DataPlane

    check_number(max_body_bytes, "max_body_bytes", minimum=1, integer=True)
    check_number(max_elements, "max_elements", minimum=1, integer=True)
    plane = DataPlane(repository)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        plane.load_all()
        try:
            yield
        finally:
            plane.close()

    routes = kserve.routes(plane, max_body_bytes=max_body_bytes, max_elements=max_elements)
    application = Starlette(routes=routes, lifespan=lifespan)
    application.state.plane = plane
    return application


__all__ = ["MAX_BODY_BYTES", "MAX_ELEMENTS", "app"]
