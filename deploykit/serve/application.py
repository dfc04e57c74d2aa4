"""``dk.serve.app(repository)``: an ASGI app serving a model repository (or one model file), to run
with any ASGI server or mount in an existing service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..arguments import check_bool, check_number
from ..errors import DeployKitError, require

log = logging.getLogger("deploykit.serve")

#: Default request limits: a body (after decompression) and the elements of one request's tensors.
MAX_BODY_BYTES = 64 * 2**20
MAX_ELEMENTS = 16 * 2**20


def app(repository: str | Path, *, max_body_bytes: int = MAX_BODY_BYTES,
        max_elements: int = MAX_ELEMENTS, max_queue: int | None = None, repository_api: bool = False,
        watch_interval: float | None = None, token: str | None = None, json_logs: bool = False,
        public_metrics: bool = False, cpus: int | None = None) -> Any:
    """An ASGI app speaking KServe v2 REST and TF Serving REST over ``repository``
    (``repo/<model>/<version>/...``, or one model file). Models load and warm up at startup, before
    ``/v2/health/ready`` says so.
    ``max_queue``: requests a model version holds at once (default 64 per instance; then 503).
    ``repository_api``: enable the index/load/unload endpoints (off: 403). ``watch_interval``:
    rescan the repository every so many seconds and swap versions as it changes (off by default).
    ``token``: every request but the health checks needs ``Authorization: Bearer <token>`` (and
    ``/metrics`` too unless ``public_metrics``). ``json_logs``: the access log as JSON lines.
    ``cpus``: the CPUs the engines' threads share (default: those this process may use; on Ray
    Serve, the replica's). Prometheus metrics at ``/metrics``."""
    # the serve extra's (uvicorn is needed only to listen)
    require("prometheus_client", "serving needs the serve extra: pip install 'deploykit[serve]'")

    from . import kserve, tfserving
    from .asgi import App, Response, Route, in_thread
    from .dataplane import DataPlane

    check_number(max_body_bytes, "max_body_bytes", minimum=1, integer=True)
    check_number(max_elements, "max_elements", minimum=1, integer=True)
    check_number(max_queue, "max_queue", minimum=1, integer=True, allow_none=True)
    check_number(watch_interval, "watch_interval", above=0, allow_none=True)
    check_number(cpus, "cpus", minimum=1, integer=True, allow_none=True)
    repository_api = check_bool(repository_api, "repository_api")
    json_logs = check_bool(json_logs, "json_logs")
    public_metrics = check_bool(public_metrics, "public_metrics")
    from .metrics import CONTENT_TYPE, Metrics
    from .middleware import HEALTH_PATHS, AccessMiddleware

    metrics = Metrics()
    plane = DataPlane(repository, max_queue=max_queue, metrics=metrics, cpus=cpus)

    @contextlib.asynccontextmanager
    async def lifespan(_: App) -> AsyncIterator[None]:
        plane.load_all()
        watcher = asyncio.create_task(_watch(plane, watch_interval)) if watch_interval else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            plane.close()

    routes = kserve.routes(plane, max_body_bytes=max_body_bytes, max_elements=max_elements,
                           repository_api=repository_api)
    routes += tfserving.routes(plane, max_body_bytes=max_body_bytes, max_elements=max_elements)

    async def exposition(request: Any) -> Response:  # built in a thread: a big scrape takes ms
        return Response(await in_thread(metrics.exposition), 200, CONTENT_TYPE)

    routes.append(Route("/metrics", exposition, ["GET"]))
    public = [*HEALTH_PATHS, "/metrics"] if public_metrics else list(HEALTH_PATHS)
    access = {"token": token, "json_logs": json_logs, "public_paths": public}
    application = App(routes, _off_route, lifespan=lifespan, middleware=[(AccessMiddleware, access)])
    application.state.plane = plane
    application.state.metrics = metrics
    return application


def _off_route(request: Any, status: int, allowed: list[str]) -> Any:
    """A path no route serves, or a method it does not take: the protocols' ``{"error": ...}`` body
    (405 with ``Allow``)."""
    from .asgi import json_response

    message = f"{request.method} {request.path}: " + (
        "no such endpoint" if status == 404 else "method not allowed here")
    return json_response({"error": message}, status, {"Allow": ", ".join(allowed)} if allowed else None)


async def _watch(plane: Any, interval: float) -> None:
    """Rescan the repository every ``interval`` seconds and serve what it says (errors logged)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await plane.reload()
        except DeployKitError as e:  # a half-copied version, a bad config: keep serving what runs
            log.warning("repository rescan failed: %s", e)


__all__ = ["MAX_BODY_BYTES", "MAX_ELEMENTS", "app"]
