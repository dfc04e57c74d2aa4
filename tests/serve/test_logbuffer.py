"""serve.logbuffer.BufferedStreamHandler: lines in order, warnings at once, the rest within the
interval or at close, a closed stream tolerated — and no deadlock between a logging thread's flush
and the background one."""

from __future__ import annotations

import io
import logging
import threading
import time

from deploykit.serve.logbuffer import BufferedStreamHandler


def logger_with(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(f"deploykit.test.logbuffer.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_lines_wait_for_the_interval_warnings_do_not_and_close_writes_the_rest() -> None:
    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, interval=3600)  # no background flush during the test
    log = logger_with(handler, "order")
    log.info("one")
    log.info("two")
    assert stream.getvalue() == ""  # held in the buffer
    log.warning("three")  # a warning writes what is held, in order, with it
    assert stream.getvalue() == "one\ntwo\nthree\n"
    log.info("four")
    handler.close()
    assert stream.getvalue().endswith("three\nfour\n")


def test_the_background_thread_writes_within_the_interval() -> None:
    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, interval=0.05)
    logger_with(handler, "tick").info("soon")
    deadline = time.monotonic() + 5
    while "soon" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    handler.close()
    assert stream.getvalue() == "soon\n"


def test_a_closed_stream_loses_lines_but_raises_nothing() -> None:
    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, interval=3600)
    log = logger_with(handler, "closed")
    stream.close()
    log.warning("nowhere to go")
    handler.close()


def test_flushes_from_logging_threads_and_the_background_thread_never_deadlock() -> None:
    handler = BufferedStreamHandler(io.StringIO(), interval=0.0005, capacity=64)
    log = logger_with(handler, "stress")

    def write() -> None:
        for i in range(2000):
            (log.warning if i % 3 == 0 else log.info)("line %d", i)

    threads = [threading.Thread(target=write, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a logging thread is stuck (deadlock)"
    handler.close()
