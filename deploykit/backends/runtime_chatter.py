"""Native runtimes' start-up chatter on file descriptor 2, silenced by default.

LiteRT's C++ logger writes ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` straight to
fd 2 the first time a process creates the delegate: past ``sys.stderr``, so neither ``logging`` nor
``warnings`` filters reach it, and Jupyter shows it as a red box. ai-edge-litert 2.3.0 offers no way
to lower its log severity: no Python API, no exported C symbol (its logger is linked in privately),
and none of ``TF_CPP_MIN_LOG_LEVEL``, ``TF_CPP_MAX_VLOG_LEVEL``, ``GLOG_minloglevel`` or
``TFLITE_LOG_LEVEL``-like variables changes it (each checked by a real load in a subprocess).

So :func:`silenced` points fd 2 at a temporary file for the length of a block (interpreter creation,
first allocation), puts it back, and sorts what was written meanwhile: the lines ``chatter`` matches
(the runtime logger's ``INFO:``/``VERBOSE:`` lines) go to the given logger at DEBUG; everything else
-- a runtime's ``WARNING:``/``ERROR:`` line, or what another thread wrote to fd 2 in the window -- is
written back to fd 2, in the order written, when the block ends: delayed, never lost (a line another
thread writes just as the block ends may come out before them). One process-wide lock serializes
the swaps (a nested block in the same thread joins the outer one); a child forked while another
thread is in a block gets its fd 2 back and a lock of its own.

``DEPLOYKIT_LOG_RUNTIME=1`` turns it off (read at every block): the runtime then writes as it likes.
The file is made once per process and reused (a block then costs about 40 us, not the 0.3 ms of
creating a file); it is removed at exit. Should the process die inside a block (a crash in the
runtime), what was written in that block is left in ``<tempdir>/deploykit-runtime-stderr-<pid>-*.txt``.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from .. import settings

#: Lines of the TFLite/LiteRT minimal logger below WARNING (``INFO: ...``, ``VERBOSE: ...``).
CHATTER = re.compile(rb"(INFO|VERBOSE): ")
_ON = ("1", "true", "yes", "on")
_FD = 2
_LOCK = threading.Lock()
_local = threading.local()
#: (pid, fd, path) of the capture file, see _sink
_file: tuple[int, int, str] | None = None
#: fd 2 as it was, while a block has it swapped (for a child forked meanwhile)
_saved: int | None = None


def _after_fork_in_child() -> None:
    """A child forked while another thread held a block: give it its stderr and a free lock."""
    global _LOCK, _local, _saved
    _LOCK = threading.Lock()
    _local = threading.local()
    if _saved is not None:
        with suppress(OSError):
            os.dup2(_saved, _FD)
            os.close(_saved)
        _saved = None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def shown() -> bool:
    """True when ``DEPLOYKIT_LOG_RUNTIME`` asks for the runtimes' own output."""
    return settings.get("DEPLOYKIT_LOG_RUNTIME").lower() in _ON


@contextmanager
def silenced(logger: logging.Logger, chatter: re.Pattern[bytes] = CHATTER) -> Iterator[None]:
    """Run the block with fd 2 captured; log ``chatter`` lines at DEBUG, write the rest back."""
    if shown() or getattr(_local, "active", False):
        yield
        return
    said: list[bytes] = []
    try:
        with _LOCK:
            _local.active = True
            swap = None  # stays None without fd 2 or a temporary file: the output is left alone
            try:
                swap = _swap()
                yield
            finally:
                _local.active = False
                if swap is not None:
                    said = _restore(*swap, chatter)
    finally:  # outside the lock: a handler may write to stderr, or take its time
        for line in said:
            logger.debug("runtime: %s", line.decode("utf-8", "replace").rstrip())


def _sink() -> int | None:
    """The capture file's fd: one file per process, made at the first block and reused (under
    ``_LOCK``), removed at exit; None where no temporary file can be made."""
    global _file
    pid = os.getpid()
    if _file is not None and _file[0] == pid:
        return _file[1]
    try:  # a forked child makes its own: the parent's shares its offset
        fd, path = tempfile.mkstemp(prefix=f"deploykit-runtime-stderr-{pid}-", suffix=".txt")
    except OSError:
        return None
    if _file is None:
        atexit.register(_remove_file)
    _file = (pid, fd, path)
    return fd


def _remove_file() -> None:
    if _file is not None and _file[0] == os.getpid():
        os.close(_file[1])
        _unlink(_file[2])


def _swap() -> tuple[int, int] | None:
    """Point fd 2 at the (empty) capture file: (saved fd 2, the file's fd), or None.

    ``sys.stderr`` is not flushed here nor at the end: it is line-buffered, so what it holds is
    the start of a line another thread is still printing, and flushing it would split that line
    between the terminal and the capture (a complete line is already out; a partial one goes out
    with its end, wherever fd 2 then points, and is never lost)."""
    fd = _sink()
    if fd is None:
        return None
    try:
        saved = os.dup(_FD)
    except OSError:  # fd 2 is closed: nothing to protect
        return None
    try:
        os.dup2(fd, _FD)
    except OSError:
        os.close(saved)
        return None
    global _saved
    _saved = saved
    return saved, fd


def _restore(saved: int, fd: int, chatter: re.Pattern[bytes]) -> list[bytes]:
    """Put fd 2 back, write back what is not chatter, and return the chatter lines."""
    global _saved
    try:
        os.dup2(saved, _FD)
    finally:
        _saved = None
        os.close(saved)
    try:
        data = _read_all(fd)
    finally:  # empty again: a file left by a crash holds only what its last block wrote
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
    said: list[bytes] = []
    kept: list[bytes] = []
    for line in data.splitlines(keepends=True):
        (said if chatter.match(line) else kept).append(line)
    if kept:
        _write_all(_FD, b"".join(kept))
    return said


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks: list[bytes] = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    with suppress(OSError):  # stderr went away meanwhile: nowhere left to write
        while view:
            view = view[os.write(fd, view):]


def _unlink(path: str) -> None:
    with suppress(OSError):
        os.unlink(path)


__all__ = ["CHATTER", "shown", "silenced"]
