"""What every request goes through before the endpoints: a request id, the access log, and an optional
bearer token — one plain ASGI middleware (Starlette's ``BaseHTTPMiddleware`` costs tens of µs a
request; this costs a few).

- **Request id**: ``X-Request-ID`` is taken when it is 1..128 visible ASCII characters, else a new one
  is made; it comes back in the response headers and handlers read it from ``request.state.request_id``
  or ``current_request_id()``.
- **Access log**: one line per request on ``deploykit.serve.access`` at INFO (method, path, status,
  milliseconds, request id, client), plain text or JSON lines; nothing is built when INFO is off.
- **Bearer token**: when ``token`` is set, every path but ``public_paths`` (the health probes, for
  orchestrators) needs ``Authorization: Bearer <token>``, compared in constant time: none -> 401 with
  ``WWW-Authenticate: Bearer``, a wrong one -> 403, both as ``{"error": ...}``. The token is never
  logged.
"""

from __future__ import annotations

import contextvars
import hmac
import itertools
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument
from .asgi import app_path

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: A refused request: (status, message, whether to answer ``WWW-Authenticate: Bearer``).
Refusal = tuple[int, str, bool]

access_log = logging.getLogger("deploykit.serve.access")

#: Paths that never need the token: orchestrators probe them without credentials.
HEALTH_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
#: The longest ``X-Request-ID`` taken as it comes.
MAX_REQUEST_ID = 128

_VISIBLE = bytes(range(0x21, 0x7F))  # visible ASCII: no spaces, so a plain log line stays parseable
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("deploykit_request_id",
                                                                         default=None)


def current_request_id() -> str | None:
    """The id of the request being answered in this context (None outside a request)."""
    return _request_id.get()


class RequestIds:
    """Fresh request ids: a random per-process prefix and a counter (unique, and ~0.2 µs each)."""

    def __init__(self) -> None:
        self._prefix, self._counter = secrets.token_hex(6), itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"


def valid_request_id(value: bytes) -> bool:
    """True for 1..``MAX_REQUEST_ID`` visible ASCII characters."""
    return 0 < len(value) <= MAX_REQUEST_ID and not value.translate(None, _VISIBLE)


class AccessMiddleware:
    """Request ids, the access log and the optional bearer token around ``app`` (see the module)."""

    def __init__(self, app: ASGIApp, *, token: str | None = None, json_logs: bool = False,
                 public_paths: Iterable[str] = HEALTH_PATHS) -> None:
        self.app = app
        self.json_logs = json_logs
        self.public_paths = frozenset(public_paths)
        self._token = _check_token(token, "token").encode() if token is not None else None
        self._new_id = RequestIds()

    def __repr__(self) -> str:  # never the token
        return (f"AccessMiddleware(token={'set' if self._token else 'unset'}, json_logs={self.json_logs}, "
                f"public_paths={sorted(self.public_paths)})")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket" and self._token is not None:  # no token check there: refuse
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id, authorization = None, None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value
            elif name == b"authorization":
                authorization = value
        rid = request_id.decode("ascii") if request_id and valid_request_id(request_id) else self._new_id()
        scope.setdefault("state", {})["request_id"] = rid
        reset = _request_id.set(rid)
        rid_header = (b"x-request-id", rid.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            refusal = None if self._token is None else self._refusal(self._token, scope, authorization)
            if refusal is None:
                await self.app(scope, receive, send_with_id)
            else:
                await _answer(send_with_id, *refusal)
        finally:
            _request_id.reset(reset)
            if access_log.isEnabledFor(logging.INFO):
                self._log(scope, status, time.perf_counter() - start, rid)

    def _refusal(self, token: bytes, scope: Scope, authorization: bytes | None) -> Refusal | None:
        """None when the request may pass; else why not."""
        if app_path(scope) in self.public_paths:
            return None
        scheme, _, presented = (authorization or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not presented.strip():
            return 401, "this server needs a bearer token: send 'Authorization: Bearer <token>'", True
        if not hmac.compare_digest(presented.strip(), token):
            return 403, "the bearer token is not valid for this server", False
        return None

    def _log(self, scope: Scope, status: int, seconds: float, rid: str) -> None:
        raw = scope.get("raw_path")  # percent-encoded as it came: no newline can reach the log
        path = raw.decode("latin-1") if raw else scope["path"].encode("unicode_escape").decode("ascii")
        client = scope.get("client")
        peer = f"{client[0]}:{client[1]}" if client else "-"
        args: tuple[Any, ...] = ()
        if self.json_logs:
            message = json.dumps({"method": scope["method"], "path": path, "status": status,
                                  "duration_ms": round(seconds * 1e3, 3), "request_id": rid,
                                  "client": peer})
        else:
            message = "%s %s %d %.3f ms id=%s client=%s"
            args = (scope["method"], path, status, seconds * 1e3, rid, peer)
        # makeRecord + handle is what Logger.info does, without walking the stack for the caller
        access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, __file__, 0, message, args,
                                                None, "access"))


async def _answer(send: Send, status: int, message: str, challenge: bool) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if challenge:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def token_from_env(name: str) -> str:
    """The bearer token held by environment variable ``name`` (surrounding whitespace dropped)."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise InvalidArgument(f"environment variable {name} holds no bearer token; set it, or give the "
                              f"token another way")
    return _check_token(value, f"environment variable {name}")


def token_from_file(path: str | Path) -> str:
    """The bearer token in the file at ``path`` (one trailing newline dropped). A file others may
    read is served, with a warning."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        mode = file.stat().st_mode
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"cannot read the bearer token file {file}: {e}") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise InvalidArgument(f"the bearer token file {file} is empty; write the token into it")
    if os.name == "posix" and mode & (stat.S_IRGRP | stat.S_IROTH):
        logging.getLogger("deploykit.serve").warning(
            "the bearer token file %s can be read by other users (mode %o); chmod 600 it", file,
            stat.S_IMODE(mode))
    return _check_token(text, f"the bearer token file {file}")


def _check_token(token: str, where: str) -> str:
    """``token`` when a client can send it (visible ASCII, no spaces); the message never shows it."""
    if not isinstance(token, str) or not token:
        raise InvalidArgument(f"{where}: a bearer token is a non-empty string")
    if not token.isascii() or token.encode().translate(None, _VISIBLE):
        raise InvalidArgument(f"{where}: a bearer token is visible ASCII characters without spaces or "
                              f"line breaks (the token is not shown here)")
    return token


__all__ = ["HEALTH_PATHS", "MAX_REQUEST_ID", "AccessMiddleware", "RequestIds", "access_log",
           "current_request_id", "token_from_env", "token_from_file", "valid_request_id"]
