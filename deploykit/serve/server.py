"""``dk.serve.Server(model, port=0)``: the app on uvicorn in a background thread of this process, for
notebooks and tests (``with Server(...) as s: s.url``); ``deploykit serve`` runs it in the foreground."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from ..arguments import check_number
from ..errors import InvalidArgument
from .application import app

#: Seconds a stopping server keeps answering (503, not ready) before it closes its socket.
DRAIN_GRACE = 0.5


class Server:
    """An in-process server on ``host:port`` (port 0: a free one); ready when ``start`` returns."""

    def __init__(self, repository: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                 startup_timeout: float = 120.0, drain_timeout: float = 30.0, **settings: Any) -> None:
        check_number(port, "port", minimum=0, integer=True)
        if port > 65535:
            raise InvalidArgument(f"port must be 0..65535, got {port}")
        check_number(startup_timeout, "startup_timeout", above=0)
        check_number(drain_timeout, "drain_timeout", minimum=0)
        self._drain = drain_timeout
        self.app = app(repository, **settings)
        self.host, self._port, self._timeout = host, port, startup_timeout
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise InvalidArgument("the server is not started")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Server:
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio turns TCP_NODELAY on only for sockets that say they are TCP;
        # without it every response waited ~40 ms for the client's delayed ACK (Nagle)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._port))
        except OSError as e:
            sock.close()
            raise InvalidArgument(f"cannot listen on {self.host}:{self._port}: {e.strerror or e}") from e
        self._socket = sock
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=int(self._drain) or None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="deploykit-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise InvalidArgument(f"the server did not start within {self._timeout:g} s")
            time.sleep(0.01)
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
        if self._server is not None:
            time.sleep(min(DRAIN_GRACE, self._drain))
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["Server"]
