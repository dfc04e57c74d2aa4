"""HTTP/1.1 connections for any ASGI app, on asyncio, with httptools (uvicorn's parser) doing the parsing.

Why not uvicorn: measured on the digits model (docs/serving.md, "Why this stack"), uvicorn writes each
response in two socket writes (head, then body) and checks every header with two regexes; this writes
one, and the server's CPU per request fell 0.41 -> 0.25 ms. What a connection does:

- keep-alive (HTTP/1.1 by default, HTTP/1.0 when asked), pipelining (requests answered in order: the
  next one waits, and reading pauses, until the current one is answered), ``Expect: 100-continue``;
- request bodies stream to the app (``receive``); reading pauses while more than ``BODY_HIGH_WATER``
  bytes wait unread, so a client cannot fill memory faster than the app reads;
- bounded: request line + headers past ``max_head_bytes`` -> 431; a malformed request -> 400; both as
  ``{"error": ...}`` and the connection closed; an idle connection closes after ``keep_alive_s``;
- a response with Content-Length goes out in one write when the app sends its body in one message;
  without one, chunked; a response sent before the request body was read closes the connection
  afterwards (the rest of that body is not read); an app that fails before answering -> 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

import httptools

from .jsonio import dumps

log = logging.getLogger("deploykit.serve")

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                    Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]

#: Body bytes held for the app before reading from the socket pauses.
BODY_HIGH_WATER = 1 << 20
#: Default bound on a request's line + headers.
MAX_HEAD_BYTES = 64 * 1024
#: Default idle time before a keep-alive connection is closed.
KEEP_ALIVE_S = 5.0

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_STATUS_LINES = {code: b"HTTP/1.1 %d %b\r\n" % (code, reason) for code, reason in _REASONS.items()}


class HeadTooLarge(Exception):
    """A request's line and headers are over the server's bound (answered 431)."""


@dataclass
class ServerState:
    """What the connections of one server share: the app, its limits, who is connected and busy."""

    app: ASGIApp
    max_head_bytes: int = MAX_HEAD_BYTES
    keep_alive_s: float = KEEP_ALIVE_S
    #: the lifespan's state, copied into each request's scope (ASGI "state")
    state: dict[str, Any] = field(default_factory=dict)
    connections: set[Connection] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    server_address: tuple[str, int] | None = None
    _date: tuple[int, bytes] = (0, b"")

    async def sweep_idle(self) -> None:
        """Close connections silent for ``keep_alive_s`` while not computing an answer: idle between
        requests, or stalled in a request's headers or body (checked every ``keep_alive_s / 4``
        seconds: one task per server rather than a timer set and cancelled per request)."""
        if self.keep_alive_s <= 0:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.05, self.keep_alive_s / 4))
            cutoff = loop.time() - self.keep_alive_s
            for conn in [c for c in self.connections if c.last_data < cutoff and c.stalled()]:
                conn.close()

    def date_header(self) -> bytes:
        """``date: ...`` for this second (formatted once a second)."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, b"date: " + email.utils.formatdate(now, usegmt=True).encode() + b"\r\n")
        return self._date[1]


class Connection(asyncio.Protocol):
    """One client connection: parses requests, runs the app for each in turn, writes the answers."""

    def __init__(self, server: ServerState) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.running: Cycle | None = None  # the request being answered
        self.parsing: Cycle | None = None  # the request whose body is being read
        self.waiting: deque[Cycle] = deque()  # pipelined requests, parsed, not started
        self.head_bytes = 0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._reading_paused = False
        self._writable: asyncio.Event | None = None
        #: loop time of the last bytes received (or of the last answer sent)
        self.last_data = 0.0
        self.closing = False

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass, but is one
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # one write per response: never held for a delayed ACK
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None
        self.server.connections.add(self)
        self.last_data = asyncio.get_running_loop().time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        for cycle in (self.running, self.parsing, *self.waiting):
            if cycle is not None:
                cycle.disconnect()
        self.waiting.clear()
        if self._writable is not None:
            self._writable.set()

    def data_received(self, data: bytes) -> None:
        self.last_data = asyncio.get_running_loop().time()
        if self.parsing is None:  # still in a request's line and headers: bounded
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except HeadTooLarge:
            self.refuse(431, f"request line and headers over {self.server.max_head_bytes} bytes")
        except httptools.HttpParserUpgrade:
            self.refuse(400, "protocol upgrades are not supported by this server")
        except httptools.HttpParserError as e:
            if isinstance(e.__context__, HeadTooLarge):  # raised in a callback: httptools wraps it
                self.refuse(431, f"request line and headers over {self.server.max_head_bytes} bytes")
            else:
                self.refuse(400, f"malformed HTTP request: {str(e) or type(e).__name__}")
        else:
            if self.parsing is None and self.head_bytes > self.server.max_head_bytes:
                self.refuse(431, f"request line and headers over {self.server.max_head_bytes} bytes")

    def eof_received(self) -> bool | None:
        return None  # close our side too (a half-closed client gets no more answers)

    def pause_writing(self) -> None:
        self._writable = asyncio.Event()

    def resume_writing(self) -> None:
        if self._writable is not None:
            self._writable.set()
            self._writable = None

    # -- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url, self._headers, self._head_size = b"", [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self._count_head(len(name) + len(value) + 4)

    def _count_head(self, size: int) -> None:
        """Bound one request's line and headers (also when they arrive whole in one read)."""
        self._head_size += size
        if self._head_size > self.server.max_head_bytes:
            raise HeadTooLarge()

    def on_headers_complete(self) -> None:
        self.head_bytes = 0
        cycle = Cycle(self, self._scope(), keep_alive=self.parser.should_keep_alive())
        self.parsing = cycle
        if self.running is None:
            self._start(cycle)
        else:  # pipelined: answered after the one running; read nothing more meanwhile
            self.waiting.append(cycle)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is None or cycle.response_complete:
            return  # answered already: the rest of the body is dropped (the connection will close)
        cycle.chunks.append(body)
        cycle.buffered += len(body)
        cycle.event.set()
        if cycle.buffered > BODY_HIGH_WATER:
            self.pause_reading()

    def on_message_complete(self) -> None:
        cycle = self.parsing
        self.parsing = None
        if cycle is not None:
            cycle.body_complete = True
            cycle.event.set()

    # -- requests -----------------------------------------------------------------------------
    def _scope(self) -> dict[str, Any]:
        raw = self._url
        path, _, query = raw.partition(b"?")
        path = path.partition(b"#")[0]
        if path.startswith((b"http://", b"https://")):  # absolute-form: keep the path
            path = b"/" + path.split(b"/", 3)[-1] if path.count(b"/") >= 3 else b"/"
        version = self.parser.get_http_version()
        return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": version if version in ("1.0", "1.1") else "1.1",
                "method": self.parser.get_method().decode("ascii", "replace"), "scheme": "http",
                "path": unquote(path.decode("latin-1")), "raw_path": path, "query_string": query,
                "root_path": "", "headers": self._headers, "client": self.client,
                "server": self.server.server_address, "state": dict(self.server.state)}

    def _start(self, cycle: Cycle) -> None:
        self.running = cycle
        task = asyncio.get_running_loop().create_task(cycle.run())
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    def finished(self, cycle: Cycle) -> None:
        """``cycle`` has been answered: close, or go on with the next request."""
        self.running = None
        if self.transport is None or self.closing:
            return
        if not cycle.keep_alive or not cycle.body_complete:
            self.close()
            return
        if self.waiting:
            self._start(self.waiting.popleft())
        else:
            self.resume_reading()
            self.last_data = asyncio.get_running_loop().time()

    def refuse(self, status: int, message: str) -> None:
        """Answer a request the parser could not take (``{"error": ...}``), then close."""
        if self.running is None and self.transport is not None and not self.closing:
            body = dumps({"error": message})
            self.write(_head(status, self.server.date_header(),
                             [(b"content-type", b"application/json"),
                              (b"content-length", str(len(body)).encode()), (b"connection", b"close")])
                       + body)
        self.close()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        while self._writable is not None and not self.closing:
            await self._writable.wait()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def stalled(self) -> bool:
        """True unless the app is answering a request it has read whole (its time is its own)."""
        return self.running is None or not self.running.body_complete

    def close_if_idle(self) -> bool:
        """Close unless a request is being answered (for a stopping server); True when closed."""
        if self.running is None and self.parsing is None:
            self.close()
            return True
        return False

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closing:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closing:
            self._reading_paused = False
            self.transport.resume_reading()


class Cycle:
    """One request on a connection: the app's ``receive`` and ``send``."""

    __slots__ = (
        "body_complete",
        "buffered",
        "chunked",
        "chunks",
        "connection",
        "continue_sent",
        "disconnected",
        "event",
        "head",
        "keep_alive",
        "response_complete",
        "scope",
    )

    def __init__(self, connection: Connection, scope: dict[str, Any], keep_alive: bool) -> None:
        self.connection, self.scope, self.keep_alive = connection, scope, keep_alive
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.body_complete = self.response_complete = self.disconnected = self.chunked = False
        self.event = asyncio.Event()
        self.head: bytes | None = None  # the response head, held until the first body bytes
        self.continue_sent = not any(n == b"expect" and v.lower() == b"100-continue"
                                     for n, v in scope["headers"])

    async def run(self) -> None:
        try:
            await self.connection.server.app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("%s %s: the app failed", self.scope["method"], self.scope["raw_path"])
            if self.head is None and not self.response_complete:
                body = dumps({"error": "internal server error (the server log has the details)"})
                await self.send({"type": "http.response.start", "status": 500,
                                 "headers": [(b"content-type", b"application/json"),
                                             (b"content-length", str(len(body)).encode())]})
                await self.send({"type": "http.response.body", "body": body})
        if not self.response_complete:  # the app returned mid-response or without one: cannot recover
            if self.head is None and not self.disconnected:
                log.error("%s %s: the app returned without a response", self.scope["method"],
                          self.scope["raw_path"])
            self.keep_alive = False
            self.response_complete = True
        self.connection.finished(self)

    def disconnect(self) -> None:
        self.disconnected = True
        self.event.set()

    async def receive(self) -> dict[str, Any]:
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        if not self.continue_sent:
            self.continue_sent = True
            self.connection.write(_CONTINUE)
        while not self.chunks and not self.body_complete and not self.disconnected:
            self.connection.resume_reading()
            self.event.clear()
            await self.event.wait()
        if self.disconnected:
            return {"type": "http.disconnect"}
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks, self.buffered = [], 0
        if not self.body_complete:
            self.connection.resume_reading()
        return {"type": "http.request", "body": body, "more_body": not self.body_complete}

    async def send(self, message: dict[str, Any]) -> None:
        if self.disconnected or self.response_complete:
            return
        kind = message["type"]
        if kind == "http.response.start":
            if self.head is not None:
                raise RuntimeError("http.response.start sent twice")
            headers = list(message.get("headers", ()))
            self.chunked = not any(n.lower() == b"content-length" for n, _ in headers)
            if self.chunked:
                headers.append((b"transfer-encoding", b"chunked"))
            if not self.body_complete:  # answered before its body was read: the rest is not read
                self.keep_alive = False
            if not self.keep_alive:
                headers.append((b"connection", b"close"))
            self.head = _head(int(message["status"]), self.connection.server.date_header(), headers)
            return
        if kind != "http.response.body" or self.head is None:
            raise RuntimeError(f"unexpected ASGI message {kind!r} (http.response.start comes first)")
        body = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if self.scope["method"] == "HEAD":
            body = b""
        elif self.chunked:
            body = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + (b"" if more else b"0\r\n\r\n")
        if self.head:
            body, self.head = self.head + body, b""
        await self.connection.drain()
        self.connection.write(body)
        if not more:
            self.response_complete = True


def _head(status: int, date: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d %b\r\n" % (status, _REASONS.get(status, b""))
    head = b"".join([line, date, *(b"%b: %b\r\n" % pair for pair in headers), b"\r\n"])
    lines = len(headers) + 3  # status, date, headers, the blank line: one CR and one LF each
    if head.count(b"\n") != lines or head.count(b"\r") != lines:  # a CR or LF inside a header
        raise RuntimeError(f"a response header holds a line break: {headers!r}"[:300])
    return head


__all__ = ["BODY_HIGH_WATER", "KEEP_ALIVE_S", "MAX_HEAD_BYTES", "Connection", "Cycle", "HeadTooLarge",
           "ServerState"]
