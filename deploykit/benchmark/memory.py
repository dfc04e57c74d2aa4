"""Peak resident memory over a stretch of code, measured by the kernel where it can be.

On Linux the kernel keeps the process's resident high-water mark (``VmHWM``); writing ``5`` to
``/proc/self/clear_refs`` resets it to the current RSS, so ``VmHWM`` read afterwards is the true
peak over the stretch, however short the spike. Where that reset is refused, a thread samples
``/proc/self/statm`` every few milliseconds (spikes shorter than that are missed). Elsewhere
there is no honest number and the peak is ``None``.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType

from ..arguments import check_number

_MIB = 1 << 20


def current_rss() -> int | None:
    """Resident bytes of this process now (Linux), else None."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _hwm() -> int | None:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _hwm() is not None


class PeakRSS:
    """``with PeakRSS() as m: ...`` then ``m.peak_mib``: peak RSS during the block minus the RSS at
    its start, in MiB; ``m.method`` says how it was measured ("VmHWM", "sampled", "unavailable")."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = check_number(interval, "interval (seconds)", above=0)
        self.method = "unavailable"
        self.baseline: int | None = None
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRSS:
        self.baseline = current_rss()
        if self.baseline is None:
            return self
        if _reset_hwm():
            self.method = "VmHWM"
            self.baseline = current_rss()
        else:
            self.method = "sampled"
            self.peak = self.baseline
            self._thread = threading.Thread(target=self._sample, name="deploykit-rss", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = current_rss()
            if rss is not None and self.peak is not None and rss > self.peak:
                self.peak = rss

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.method == "VmHWM":
            self.peak = _hwm()
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            rss = current_rss()
            if rss is not None and self.peak is not None:
                self.peak = max(self.peak, rss)

    @property
    def peak_mib(self) -> float | None:
        if self.peak is None or self.baseline is None:
            return None
        return max(0, self.peak - self.baseline) / _MIB
