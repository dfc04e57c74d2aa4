"""``dk.serve.Server(model, port=0)``: the app served over HTTP/1.1 from a background thread of this
process (``connection``: httptools + asyncio, uvloop when installed), for notebooks and tests
(``with Server(...) as s: s.url``); ``deploykit serve`` runs the same in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ..arguments import check_number
from ..errors import InvalidArgument
from .application import app
from .connection import KEEP_ALIVE_S, MAX_HEAD_BYTES, Connection, ServerState

log = logging.getLogger("deploykit.serve")

#: Seconds a stopping server keeps answering (503, not ready) before it closes its socket.
DRAIN_GRACE = 0.5


class Server:
    """An in-process server on ``host:port`` (port 0: a free one); ready when ``start`` returns (every
    model loaded and warm). ``keep_alive``: seconds an idle connection stays open."""

    def __init__(self, repository: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                 startup_timeout: float = 120.0, drain_timeout: float = 30.0,
                 keep_alive: float = KEEP_ALIVE_S, **settings: Any) -> None:
        check_number(port, "port", minimum=0, integer=True)
        if port > 65535:
            raise InvalidArgument(f"port must be 0..65535, got {port}")
        if not isinstance(host, str) or not host:
            raise InvalidArgument(f"host must be an address or a host name, got {host!r}")
        check_number(startup_timeout, "startup_timeout", above=0)
        check_number(drain_timeout, "drain_timeout", minimum=0)
        check_number(keep_alive, "keep_alive", minimum=0)
        self._drain = drain_timeout
        self.app = app(repository, **settings)
        self.host, self._port, self._timeout = host, port, startup_timeout
        self._state = ServerState(self.app, max_head_bytes=MAX_HEAD_BYTES, keep_alive_s=keep_alive)
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: str | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise InvalidArgument("the server is not started")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Server:
        if self._thread is not None:
            raise InvalidArgument("the server is already started")
        self._socket = _listen(self.host, self._port)
        self._state.server_address = (self.host, self.port)
        self._thread = threading.Thread(target=self._run, name="deploykit-serve", daemon=True)
        self._thread.start()
        if not self._started.wait(self._timeout) or self._failure is not None:
            why = self._failure or f"not ready within {self._timeout:g} s"
            self.stop()
            raise InvalidArgument(f"the server did not start: {why}")
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or ``timeout`` seconds pass); True when it has stopped."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def stop(self) -> None:
        """Report not-ready (new requests get 503 for a short grace, so that a load balancer polling
        readiness moves away and connections already queued are answered), stop accepting, let the
        requests in flight finish (up to ``drain_timeout`` seconds), then release the models."""
        self.app.state.plane.draining = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            time.sleep(min(DRAIN_GRACE, self._drain))
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout=self._drain + 30)
        if self._socket is not None:
            self._socket.close()
        self._thread = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the server's thread -----------------------------------------------------------------------
    def _run(self) -> None:
        loop = _new_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:
            self._failure = self._failure or f"{type(e).__name__}: {e}"
            log.exception("the server stopped on an error")
        finally:
            self._started.set()
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        lifespan = Lifespan(self.app)
        failure = await lifespan.startup()
        if failure is not None:
            self._failure = failure
            return
        self._state.state = lifespan.state
        assert self._socket is not None
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Connection(self._state), sock=self._socket, backlog=2048)
        sweeper = loop.create_task(self._state.sweep_idle())
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            sweeper.cancel()
            server.close()
            await self._drained()
            await lifespan.shutdown()

    async def _drained(self) -> None:
        """Close idle connections, wait for the requests being answered, then close the rest."""
        deadline = time.monotonic() + self._drain
        while True:
            for conn in list(self._state.connections):
                conn.close_if_idle()
            if not self._state.tasks or time.monotonic() >= deadline:
                break
            left = max(0.0, min(0.1, deadline - time.monotonic()))
            await asyncio.wait(set(self._state.tasks), timeout=left)
        for conn in list(self._state.connections):
            conn.close()
        if self._state.tasks:
            log.warning("%d request(s) still running after the %g s drain timeout were cut off",
                        len(self._state.tasks), self._drain)
            for task in list(self._state.tasks):
                task.cancel()


class Lifespan:
    """Runs an ASGI app's lifespan protocol: ``startup`` (None, or why it failed), then ``shutdown``."""

    def __init__(self, application: Callable[..., Coroutine[Any, Any, None]]) -> None:
        self.app = application
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> str | None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}, "state": self.state}
        self._task = asyncio.get_running_loop().create_task(
            self.app(scope, self._inbox.get, self._replies.put))
        await self._inbox.put({"type": "lifespan.startup"})
        reply = await self._reply()
        if reply["type"] == "lifespan.startup.complete":
            return None
        return str(reply.get("message") or "the app's startup failed")

    async def shutdown(self) -> None:
        if self._task is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        reply = await self._reply()
        if reply["type"] == "lifespan.shutdown.failed":
            log.error("the app's shutdown failed: %s", reply.get("message", ""))

    async def _reply(self) -> dict[str, Any]:
        assert self._task is not None
        getter = asyncio.ensure_future(self._replies.get())
        await asyncio.wait({getter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        error = self._task.exception() if not self._task.cancelled() else None
        return {"type": "lifespan.startup.failed", "message": f"the app's lifespan ended: {error!r}"}


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, UnicodeError) as e:
        sock.close()
        raise InvalidArgument(f"cannot listen on {host}:{port}: {getattr(e, 'strerror', None) or e}") from e
    sock.setblocking(False)
    return sock


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (the serve extra; ~1.3x asyncio's on this server), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


__all__ = ["DRAIN_GRACE", "Lifespan", "Server"]
