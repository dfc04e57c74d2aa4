"""What this machine lets this process use. (The full hardware report grows here.)"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def usable_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota.

    A container on a 64-core host with ``--cpus=2`` gets 2, not 64; so does a process pinned by
    ``taskset -c 0,1``. Runtimes default to the host count and oversubscribe; we do not.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup"),
                     proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota (in CPUs) of this process's cgroup, v2 or v1; None when unlimited/unknown."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":  # cgroup v2 unified hierarchy
            limit = _walk_up(root / rel, root, _v2_limit)
        elif "cpu" in controllers.split(","):
            base = next((root / d for d in ("cpu", "cpu,cpuacct", "cpuacct,cpu")
                         if (root / d).is_dir()), None)
            limit = None if base is None else _walk_up(base / rel, base, _v1_limit)
        else:
            continue
        if limit is not None:
            return limit
    return None


def _walk_up(path: Path, top: Path, read: Callable[[Path], float | None]) -> float | None:
    """Smallest limit on the way from ``path`` up to ``top`` (a parent's quota binds its children)."""
    best: float | None = None
    cur = path
    while True:
        value = read(cur)
        if value is not None:
            best = value if best is None else min(best, value)
        if cur == top or top not in cur.parents:
            return best
        cur = cur.parent


def _v2_limit(d: Path) -> float | None:
    try:
        quota, period = (d / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def _v1_limit(d: Path) -> float | None:
    try:
        quota = int((d / "cpu.cfs_quota_us").read_text())
        period = int((d / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period
