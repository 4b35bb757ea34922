"""How many items one task carries."""

from __future__ import annotations

__all__ = ["ChunkSizer"]


class ChunkSizer:
    """Chooses how many items one task carries, from the measured time per item.

    Tiny items are grouped so that a task lasts about ``task_seconds`` (the backend's
    preferred task length, which amortises its per-task overhead); an item that takes
    longer than that travels alone, so grouping never delays a slow item behind others.

    The measurement may be wrong (items can turn slow), so a task of a sized input never
    carries more than its share of what is left: ``remaining / tasks`` while that is
    at least ``MIN_FRACTION`` of a preferred task (``MAX_SIZE`` at most), so that every worker keeps
    getting work while input remains and an item that turns out slow holds few others
    back. Below that, shrinking further would cost more round trips than it saves, so the
    rest is cut once into one equal share per worker (``remaining / workers``), which
    still gives every worker some. A task that runs far longer than planned stops early
    and gives its unstarted items back (``TaskFunction.budget``, reclaim on threads), so
    a wrong measurement costs at most that long. The input window is shared by every
    task in flight.
    """

    MAX_SIZE = 10_000
    MIN_FRACTION = 0.25

    def __init__(self, task_seconds: float) -> None:
        self._task_seconds = task_seconds
        self._item_seconds: float | None = None  # moving average of the time per item
        self._final_share: int | None = None  # once the rest has been cut into shares

    def observe(self, seconds: float, items: int) -> None:
        """A task of ``items`` items ran for ``seconds``."""
        per_item = seconds / items
        previous = self._item_seconds
        self._item_seconds = per_item if previous is None else 0.7 * previous + 0.3 * per_item

    def size(self, remaining: int | None, tasks: int, workers: int, window: int | None) -> int:
        """Items for the next task, when up to ``tasks`` tasks can be in flight at once on
        ``workers`` workers."""
        if self._item_seconds is None:
            return 1  # measure one item per task first
        size = min(self.MAX_SIZE, int(self._task_seconds / max(self._item_seconds, 1e-9)))
        if remaining is not None:
            share = -(-remaining // tasks)
            if share >= size * self.MIN_FRACTION:
                self._final_share = None
            elif self._final_share is None:
                self._final_share = -(-remaining // workers)
            size = min(size, share if self._final_share is None else self._final_share)
        if window is not None:
            size = min(size, window // tasks)
        return max(1, size)
