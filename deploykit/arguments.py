"""Argument checks shared by the public functions: each refuses a bad value with an
``InvalidArgument`` that names the argument, what came and what is accepted.

One helper per idea, so that ``dk.load``, ``dk.bench``, ``dk.tune``, ``dk.compare`` and the
backends say the same thing about the same mistake.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection
from typing import Any

import numpy as np

from .errors import DeployKitWarning, InvalidArgument, warn
from .hostinfo import usable_cpus

#: ``threads`` above this many times the machine's logical CPUs is refused: no runtime gains from
#: it, and each thread costs a stack and start-up time (10,000 threads ran for minutes).
MAX_THREADS_PER_CPU = 4


def check_threads(threads: Any, name: str = "threads", *, warn_above_usable: bool = True,
                  default: str = "the CPUs this process may use") -> int | None:
    """``threads`` as an int >= 1 (numpy integers accepted), or None (the CPUs this process may
    use). Refused above ``MAX_THREADS_PER_CPU`` x the logical CPUs; a ``DeployKitWarning`` above the
    CPUs this process may use (oversubscription: slower, never faster, on CPU runtimes) unless
    ``warn_above_usable=False`` (a backend re-checking what ``dk.load`` already checked)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise InvalidArgument(f"{name} must be an int >= 1 (or None: {default}), got {threads!r}")
    n = int(threads)
    logical = os.cpu_count() or 1
    cap = MAX_THREADS_PER_CPU * logical
    if n > cap:
        raise InvalidArgument(f"{name}={n} is more than {MAX_THREADS_PER_CPU}x this machine's {logical} "
                              f"logical CPUs ({cap}); pass at most {cap}, or None for the "
                              f"{usable_cpus()} CPUs this process may use")
    usable = usable_cpus()
    if n > usable and warn_above_usable:
        warn(f"{name}={n} is more than the {usable} CPUs this process may use; the threads will "
             "compete for them (usually slower)", DeployKitWarning)
    return n


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is a bool (numpy's included); else ``InvalidArgument``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidArgument(f"{name} must be True or False, got {value!r}")


def check_choice(value: Any, name: str, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices`` (compared by equality, bools not taken for ints)."""
    for c in choices:
        if type(value) is type(c) and value == c:
            return value
    raise InvalidArgument(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_number(value: Any, name: str, *, minimum: float | None = None, above: float | None = None,
                 integer: bool = False, allow_none: bool = False) -> Any:
    """A real number (int/float, numpy's too, not bool, finite) within the bounds given."""
    if value is None and allow_none:
        return None
    kinds: tuple[type, ...] = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    what = "an int" if integer else "a number"
    ok = isinstance(value, kinds) and not isinstance(value, (bool, np.bool_)) and math.isfinite(float(value))  # type: ignore[arg-type]
    if ok and minimum is not None and value < minimum:
        ok = False
    if ok and above is not None and not value > above:
        ok = False
    if not ok:
        bound = f" >= {minimum:g}" if minimum is not None else f" > {above:g}" if above is not None else ""
        raise InvalidArgument(f"{name} must be {what}{bound}{' (or None)' if allow_none else ''}, "
                              f"got {value!r}")
    return int(value) if integer else value


__all__ = ["MAX_THREADS_PER_CPU", "check_bool", "check_choice", "check_number", "check_threads"]
