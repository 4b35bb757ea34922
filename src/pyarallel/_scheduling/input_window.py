"""The input side of a run: reads items lazily, numbers them, and bounds how many are
taken ahead of completion."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from pyarallel._scheduling.items import Item, Task

__all__ = ["InputWindow"]

# Iterators over objects already in memory: reading them never blocks, so a block of them
# is read in one go, without looking at the clock between items.
_FAST_ITERATORS = frozenset(
    type(iterator)
    for iterator in (
        iter([]),
        iter(()),
        iter(range(0)),
        iter(range(1 << 70)),
        iter({}),
        iter(set()),
        iter(frozenset()),
        iter(""),
        iter(b""),
        reversed([]),
    )
)


class InputWindow:
    """Takes items from ``source`` (``None``: the driver admits them one by one) and keeps
    count of them.

    ``window`` bounds how many items are *open* (taken and not finished) at once
    (``None``: no bound). Reading stops at ``deadline`` (by ``clock``): once it has passed
    nothing more is read, and with a deadline a block of several items from an iterator
    that may block (a generator, a file, a socket) is read looking at the clock after each
    item. Such a block is also read for at most ``read_seconds``, so a slow input never
    holds the scheduler away from the workers for long; without a deadline, the clock is
    looked at only once reads have proved slow (from how long the last read took per
    item), so a quick generator is read in one go.

    A sized input may not give the number of items its ``len()`` said (it changed while
    being read, or its ``__len__`` is wrong): then ``size_mismatch`` is set and ``total``
    becomes what was really read (``None`` while it is giving more than it said).
    """

    def __init__(
        self,
        source: Iterator[Any] | None,
        *,
        total: int | None,
        window: int | None,
        clock: Callable[[], float],
        deadline: float | None = None,
        read_seconds: float = 0.01,
    ) -> None:
        self._source = source
        self.total = total
        self.declared_total = total  # what len() said when the run started
        self.size_mismatch = False
        self._window = window
        self._clock = clock
        self._deadline = deadline
        self._read_seconds = read_seconds
        self._fast = type(source) in _FAST_ITERATORS
        self._seconds_per_read = 0.0  # how long one item took to read, lately
        self.seen = 0  # items taken from the input
        self.open = 0  # items taken and not finished
        self.exhausted = False

    def has_room(self) -> bool:
        """True while the input may still give items and the window has room for one."""
        return not self.exhausted and (self._window is None or self.open < self._window)

    def take(self, size: int) -> Task | None:
        """A block of up to ``size`` fresh items, or None when there is nothing to take
        (no input of its own, exhausted, the window full, or the deadline passed)."""
        source, window = self._source, self._window
        if source is None or self.exhausted:
            return None
        if window is not None:
            size = min(size, window - self.open)
            if size <= 0:
                return None
        if self._deadline is not None and self._clock() >= self._deadline:
            return None
        payloads = self._read(source, size)
        count = len(payloads)
        self.seen += count
        self.open += count
        declared = self.declared_total
        if declared is not None and (
            self.size_mismatch or self.seen > declared or (self.exhausted and self.seen < declared)
        ):
            self._sized_wrongly()
        if not payloads:
            return None
        return Task(payloads, start=self.seen - count)

    def _sized_wrongly(self) -> None:
        """The input has given more items than its len() said, or ended before."""
        self.size_mismatch = True
        self.total = self.seen if self.exhausted else None

    def admit(self, payload: Any) -> Item:
        """Take one more item from a driver-fed input."""
        item = Item(self.seen, payload)
        self.seen += 1
        self.open += 1
        return item

    def close(self) -> None:
        """The input is exhausted (a driver-fed input, or the run is ending)."""
        self.exhausted = True

    def finished(self, count: int) -> None:
        """``count`` open items have finished."""
        self.open -= count

    def remaining(self, ready: int) -> int | None:
        """Items not started yet, when the input's size is known (``ready`` were taken
        and are waiting)."""
        if self.total is None:
            return None
        return self.total - self.seen + ready

    def untaken(self) -> range:
        """The indices of a sized input that were never taken (empty when unsized)."""
        return range(self.seen, self.total) if self.total is not None else range(0)

    def _read(self, source: Iterator[Any], size: int) -> list[Any]:
        if self._fast:
            payloads = list(islice(source, size))
        else:
            clock = self._clock
            began = clock()
            if size == 1 or (self._deadline is None and self._seconds_per_read * size <= self._read_seconds):
                payloads = list(islice(source, size))  # reads have been quick
            else:
                return self._read_watching_the_clock(source, size, began)
            if payloads:
                self._seconds_per_read = (clock() - began) / len(payloads)
        if len(payloads) < size:
            self.exhausted = True
        return payloads

    def _read_watching_the_clock(self, source: Iterator[Any], size: int, began: float) -> list[Any]:
        """Read up to ``size`` items, stopping after ``read_seconds`` or at the deadline."""
        clock = self._clock
        stop_at = began + self._read_seconds
        if self._deadline is not None:
            stop_at = min(stop_at, self._deadline)
        payloads: list[Any] = []
        append = payloads.append
        for payload in source:
            append(payload)
            if len(payloads) >= size or clock() >= stop_at:
                break
        else:
            self.exhausted = True
        if payloads:
            self._seconds_per_read = (clock() - began) / len(payloads)
        return payloads
