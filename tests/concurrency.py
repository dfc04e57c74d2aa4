"""One way to hammer a shared object from several threads in the tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_in_threads(fn: Callable[[int], T], threads: int, calls: int) -> list[list[T]]:
    """Call ``fn(thread_index)`` ``calls`` times on each of ``threads`` threads, started together
    behind a barrier; return each thread's results in order. The first error any thread hit is
    re-raised here, so a failure cannot pass silently."""
    results: list[list[T]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(calls):
                results[i].append(fn(i))
        except BaseException as e:  # re-raised below, in the test's thread
            errors.append(e)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return results
