"""Measuring helpers the workloads share: clocks, memory peaks, pacing statistics and
result checks. Standard library only."""

from __future__ import annotations

import importlib
import resource
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = [
    "PeakMemory",
    "WrongResultError",
    "expect_equal",
    "max_in_window",
    "median",
    "timed",
    "user_imports",
]

T = TypeVar("T")

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class WrongResultError(AssertionError):
    """A contender returned something other than the expected result."""


def expect_equal(what: str, actual: object, expected: object) -> None:
    """Raise ``WrongResultError`` unless ``actual == expected``."""
    if actual != expected:
        raise WrongResultError(f"wrong {what}: got {actual!r}, expected {expected!r}")


def user_imports(*specs: str) -> None:
    """Do the imports a user's script does at its top, so that no clock includes them.

    A spec is ``"module"`` or ``"module:name"`` (``from module import name``; this matters
    for packages that load their public names lazily). Work a library defers to its first
    call (pyarallel's "process" executor imports loky there) stays in the timed part.
    """
    for spec in specs:
        module_name, _, name = spec.partition(":")
        module = importlib.import_module(module_name)
        if name:
            getattr(module, name)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Call ``fn()``; return its result and the seconds it took (``perf_counter``)."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def median(values: Iterable[float]) -> float:
    return statistics.median(values)


def max_in_window(times: Sequence[float], width: float) -> int:
    """The largest number of ``times`` falling in any half-open window ``[t, t + width)``."""
    ordered = sorted(times)
    best, first = 0, 0
    for last, t in enumerate(ordered):
        while t - ordered[first] >= width:
            first += 1
        best = max(best, last - first + 1)
    return best


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak resident memory growth of this process over a stretch of code.

    On Linux the kernel's high-water mark (``VmHWM``) is reset to the current RSS when the
    stretch starts (``/proc/self/clear_refs``), so the growth is ``VmHWM`` at the end minus
    ``VmRSS`` at the start. Where that reset is not possible the growth is measured against
    the earlier peak (``VmHWM`` or ``ru_maxrss``), which can only under-report.
    """

    def __init__(self) -> None:
        self.method = ""
        self._start_kib = 0

    def start(self) -> None:
        try:
            _CLEAR_REFS.write_text("5")
            rss = _status_kib("VmRSS")
            if rss is not None:
                self.method, self._start_kib = "VmHWM reset, minus VmRSS at start", rss
                return
        except OSError:
            pass
        hwm = _status_kib("VmHWM")
        if hwm is not None:
            self.method, self._start_kib = "VmHWM after minus VmHWM before", hwm
        else:
            self.method, self._start_kib = "ru_maxrss after minus before", _maxrss_kib()

    def growth_mib(self) -> float:
        """MiB the peak grew since ``start()``."""
        peak = _maxrss_kib() if self.method.startswith("ru_maxrss") else (_status_kib("VmHWM") or 0)
        return max(0, peak - self._start_kib) / 1024


def _maxrss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
