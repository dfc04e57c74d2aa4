"""The HTTP layer under the endpoints: a small ASGI app, its router, requests and responses.

Measured (docs/serving.md, "Why this stack"): Starlette's routing, request and response objects and
exception middleware cost ~100 µs a request on the development machine, more than the digits model's
inference; this layer does what the endpoints need in a few µs. What it does:

- routes are path templates (``/v2/models/{name}/infer``, ``{rest:path}`` for the rest of a path),
  tried in table order after an exact-path lookup; a GET route answers HEAD too; a path no route
  matches, or a method its routes do not take, goes to ``not_found(request, status, allowed)``;
- a handler takes a :class:`Request` and returns a :class:`Response`; an exception it does not handle
  is logged with its traceback and answered 500 ``{"error": ...}`` — never a traceback to the client;
- a client that disconnects before its body arrived gets no response and costs no log line;
- the ASGI lifespan runs the ``lifespan(app)`` async context manager (startup before the server
  accepts, shutdown after it stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextlib import AbstractAsyncContextManager
from types import SimpleNamespace
from typing import Any

from .jsonio import dumps

log = logging.getLogger("deploykit.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[["Request"], Awaitable["Response"]]
#: ``not_found(request, status, allowed_methods)``: the answer to a path or method no route takes.
NotFound = Callable[["Request", int, "list[str]"], "Response"]
Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]

JSON = "application/json"
_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(:path)?}")


class Disconnected(Exception):
    """The client went away before its request body arrived: nobody is left to answer."""


def app_path(scope: Scope) -> str:
    """The request's path within this app: ASGI's ``path`` holds the ``root_path`` the app is mounted
    under (Ray Serve's route prefix, uvicorn's ``--root-path``), which routing must not see."""
    path, root = str(scope["path"]), str(scope.get("root_path", ""))
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("", "/"):
        return path[len(root):] or "/"
    return path


class Request:
    """One HTTP request: method, path, path parameters, headers (lower-case names), its body."""

    __slots__ = ("_headers", "path_params", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive, path_params: dict[str, str] | None = None) -> None:
        self.scope, self.receive = scope, receive
        self.path_params = path_params or {}
        self._headers: dict[str, str] | None = None

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        """The path within this app (``app_path``)."""
        return app_path(self.scope)

    @property
    def headers(self) -> dict[str, str]:
        """Header names in lower case -> the first value sent (latin-1, as HTTP/1.1 carries them)."""
        if self._headers is None:
            headers: dict[str, str] = {}
            for name, value in self.scope["headers"]:
                headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
            self._headers = headers
        return self._headers

    @property
    def state(self) -> SimpleNamespace:
        """Per-request values the middleware and handlers share (``request_id``, ...)."""
        state = self.scope.get("state")
        if not isinstance(state, SimpleNamespace):
            state = SimpleNamespace(**(state or {}))
            self.scope["state"] = state
        return state


class Response:
    """A complete response: status, body bytes, headers (Content-Type and Content-Length added)."""

    __slots__ = ("body", "headers", "media_type", "status_code")

    def __init__(self, body: bytes = b"", status_code: int = 200, media_type: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.body, self.status_code, self.media_type = body, status_code, media_type
        self.headers = headers if headers is not None else {}

    async def send(self, send: Send, head: bool = False) -> None:
        raw = [(b"content-length", str(len(self.body)).encode())]
        if self.media_type is not None:
            raw.append((b"content-type", self.media_type.encode()))
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status_code, "headers": raw})
        await send({"type": "http.response.body", "body": b"" if head else self.body})


def json_response(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``payload`` as a JSON response."""
    return Response(dumps(payload), status_code, JSON, headers)


class Route:
    """A path template, the methods it takes (GET takes HEAD too) and its handler."""

    __slots__ = ("handler", "methods", "params", "path", "pattern")

    def __init__(self, path: str, handler: Handler, methods: Iterable[str] = ("GET",)) -> None:
        self.path, self.handler = path, handler
        self.methods = frozenset(methods) | ({"HEAD"} if "GET" in methods else set())
        self.params = bool(_PARAM.search(path))
        self.pattern = _compile(path)

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        return None if found is None else found.groupdict()

    def __repr__(self) -> str:
        return f"Route({self.path!r}, methods={sorted(self.methods)})"


def _compile(template: str) -> re.Pattern[str]:
    """``/a/{name}/b/{rest:path}`` -> a regex: ``{x}`` is one non-empty segment, ``{x:path}`` the rest."""
    parts, last = [], 0
    for found in _PARAM.finditer(template):
        parts.append(re.escape(template[last:found.start()]))
        parts.append(f"(?P<{found.group(1)}>{'.*' if found.group(2) else '[^/]+'})")
        last = found.end()
    parts.append(re.escape(template[last:]))
    return re.compile("^" + "".join(parts) + "$", re.DOTALL)


class App:
    """The ASGI app: ``routes`` (first match wins), ``not_found`` for the rest, one optional
    ``lifespan`` context and ASGI middleware wrapped around the routing (first = outermost)."""

    def __init__(self, routes: list[Route], not_found: NotFound, *, lifespan: Lifespan | None = None,
                 middleware: Iterable[tuple[Callable[..., Any], dict[str, Any]]] = ()) -> None:
        self.routes = list(routes)
        self.state = SimpleNamespace()
        self._not_found, self._lifespan = not_found, lifespan
        self._exact: dict[str, list[Route]] = {}
        for route in self.routes:
            if not route.params:
                self._exact.setdefault(route.path, []).append(route)
        inner: Callable[[Scope, Receive, Send], Awaitable[None]] = self._route
        for make, options in reversed(list(middleware)):
            inner = make(inner, **options)
        self._entry = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._run_lifespan(receive, send)
        elif kind in ("http", "websocket"):
            await self._entry(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no websocket endpoints: refuse the handshake
            await send({"type": "websocket.close", "code": 1000})
            return
        method, path = scope["method"], app_path(scope)
        handler: Handler | None = None
        params: dict[str, str] = {}
        allowed: list[str] = []
        for route in self._exact.get(path, ()):
            if method in route.methods:
                handler = route.handler
                break
            allowed += route.methods
        if handler is None:
            for route in self.routes:
                if route.params and (found := route.match(path)) is not None:
                    if method in route.methods:
                        handler, params = route.handler, found
                        break
                    allowed += route.methods
        request = Request(scope, receive, params)
        try:
            if handler is None:
                response = self._not_found(request, 405 if allowed else 404, sorted(set(allowed)))
            else:
                response = await handler(request)
        except Disconnected:
            return
        except Exception:
            log.exception("%s %s: unhandled error", method, scope.get("raw_path", path))
            response = json_response({"error": "internal server error (the server log has the details)"},
                                     500)
        await response.send(send, head=method == "HEAD")

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """The app's startup and shutdown as an async context manager, for a parent app that mounts
        this one (Starlette's and FastAPI's mounts pass no lifespan events to the apps they mount):
        ``async with child.lifespan(): yield`` in the parent's own lifespan."""
        return self._lifespan(self) if self._lifespan is not None else contextlib.nullcontext()

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        context = self.lifespan()
        try:
            await context.__aenter__()
        except BaseException as e:  # a model repository that cannot be served: say why, then stop
            log.exception("startup failed")
            await send({"type": "lifespan.startup.failed", "message": str(e)})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()  # lifespan.shutdown
        try:
            await context.__aexit__(None, None, None)
        except Exception as e:
            log.exception("shutdown failed")
            await send({"type": "lifespan.shutdown.failed", "message": str(e)})
            return
        await send({"type": "lifespan.shutdown.complete"})


async def in_thread(function: Callable[[], Any]) -> Any:
    """``function()`` in the loop's default executor, awaited (the event loop never blocks on it)."""
    return await asyncio.get_running_loop().run_in_executor(None, function)


__all__ = ["JSON", "App", "Disconnected", "Handler", "NotFound", "Request", "Response", "Route", "app_path",
           "in_thread", "json_response"]
