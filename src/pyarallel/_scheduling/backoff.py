"""Items waiting out a retry delay; they occupy no worker meanwhile."""

from __future__ import annotations

import heapq

from pyarallel._scheduling.items import Item

__all__ = ["Backoff"]


class Backoff:
    """A heap of items ordered by the moment they may run again."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Item]] = []  # (ready time, index, item)

    def __len__(self) -> int:
        return len(self._heap)

    def wait(self, item: Item, ready_at: float) -> None:
        """``item`` may run again from ``ready_at`` on."""
        heapq.heappush(self._heap, (ready_at, item.index, item))

    def release(self, now: float) -> list[Item]:
        """The items whose delay has ended by ``now``, earliest first."""
        heap, released = self._heap, []
        while heap and heap[0][0] <= now:
            released.append(heapq.heappop(heap)[2])
        return released

    @property
    def next_ready(self) -> float | None:
        """When the next item's delay ends, if any item is waiting."""
        return self._heap[0][0] if self._heap else None

    def drain(self) -> list[Item]:
        """Every waiting item, now taken out (the run is ending)."""
        items = [item for _, _, item in self._heap]
        self._heap.clear()
        return items
