"""A logging handler that writes in batches: what ``deploykit serve`` logs through.

Measured on the digits model at 32 clients (docs/serving.md): one write per access-log line cost
~95 µs of server CPU per request and a quarter of the throughput — each write is a system call, and
the event loop's thread gives up the GIL to the inference thread on every one. This handler formats
on the caller's thread, appends to a buffer, and writes it out when it holds ``capacity`` bytes,
when a record of ``flush_level`` or above comes (warnings and errors are never held back), and at
least every ``interval`` seconds (a background thread); ``close`` (``logging.shutdown`` at exit)
writes what is left.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TextIO

#: Seconds a line may wait in the buffer.
INTERVAL = 0.2
#: Bytes held before they are written at once.
CAPACITY = 64 * 1024


class BufferedStreamHandler(logging.Handler):
    """``logging.StreamHandler`` with writes batched (see the module)."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = INTERVAL, capacity: int = CAPACITY,
                 flush_level: int = logging.WARNING) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr
        self.interval, self.capacity, self.flush_level = interval, capacity, flush_level
        self._lines: list[str] = []
        self._size = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="deploykit-log", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]  # made by createLock() in Handler.__init__
            self._lines.append(line)
            self._size += len(line)
            due = self._size >= self.capacity or record.levelno >= self.flush_level
        if due:
            self.flush()

    def flush(self) -> None:
        # the handler's own lock, which logging already holds around emit(): one lock, so a flush from
        # emit and one from the background thread cannot wait on each other; lines stay in order
        with self.lock:  # type: ignore[union-attr]
            lines, self._lines, self._size = self._lines, [], 0
            if not lines:
                return
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except (OSError, ValueError):  # the stream is gone (closed pipe, closed file): drop them
                pass

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()


def log_to_stderr(json_logs: bool) -> None:
    """The server's logs (access log included, at INFO) on stderr, as a server in a container does,
    through a ``BufferedStreamHandler``: for a process that is the server (``deploykit serve``, a
    Ray Serve replica). Its records need no thread or process names (~5 µs a record)."""
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logger = logging.getLogger("deploykit.serve")
    if any(isinstance(h, BufferedStreamHandler) for h in logger.handlers):
        return
    handler = BufferedStreamHandler()
    layout = "%(message)s" if json_logs else "%(asctime)s %(name)s %(message)s"
    handler.setFormatter(logging.Formatter(layout))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


__all__ = ["CAPACITY", "INTERVAL", "BufferedStreamHandler", "log_to_stderr"]
