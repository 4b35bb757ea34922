"""Rate-limit pacing: items waiting for their reservation, in lanes.

Under a rate limit every attempt asks the limiter before it starts (a ``Reservation``,
see ``pyarallel.contracts``). Attempts whose reservations share a ``lane`` (the same key)
wait in order behind the first of the lane; lanes take turns, so an item whose key is out
of budget never holds up items of other keys.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable

from pyarallel._scheduling.items import Item
from pyarallel.contracts import RateLimiter

__all__ = ["LOOKAHEAD", "Lanes"]

# How many items a run with keyed limits reads ahead of the one it cannot start, looking
# for items of other keys (the input window, ``batch_size``, bounds it as well).
LOOKAHEAD = 1000


class Lanes:
    """The items of one run waiting for their rate-limit reservation, in lanes.

    A lane is *asking* (its first item may be granted now) or *blocked* until the moment
    the limiter gave; asking lanes are asked in turn, and a lane goes to the back of the
    turn after each grant.
    """

    def __init__(self, limiter: RateLimiter, clock: Callable[[], float]) -> None:
        self._limiter = limiter
        self._clock = clock  # a wait runs from when the limiter answered, not from ``now``
        self._lanes: dict[Hashable, deque[Item]] = {}
        self._asking: deque[Hashable] = deque()
        self._blocked: list[tuple[float, int, Hashable]] = []  # (due, sequence, lane): a heap
        self._sequence = 0
        self.count = 0  # items waiting in every lane
        self.keyed = False  # a reservation has had a lane other than None

    def add(self, item: Item) -> Exception | None:
        """Queue ``item`` in its lane, with a new reservation; or return the exception the
        limiter raised for it (the item can never be granted)."""
        try:
            reservation = self._limiter.request(item.payload)
        except Exception as error:
            return error
        item.reservation = reservation
        lane = reservation.lane
        if lane is not None:
            self.keyed = True
        queue = self._lanes.get(lane)
        if queue is None:
            queue = self._lanes[lane] = deque()
            self._asking.append(lane)
        queue.append(item)
        self.count += 1
        return None

    def take(self, now: float) -> Item | None:
        """The next item whose reservation the limiter grants now, lanes in turn; None if
        no lane may start one now (see ``due``)."""
        blocked, asking = self._blocked, self._asking
        while blocked and blocked[0][0] <= now:
            asking.append(heapq.heappop(blocked)[2])
        while asking:
            lane = asking.popleft()
            queue = self._lanes[lane]
            item = queue[0]
            assert item.reservation is not None
            wait = item.reservation.try_acquire()
            if wait > 0:
                self._sequence += 1
                heapq.heappush(blocked, (self._clock() + wait, self._sequence, lane))
                continue
            queue.popleft()
            self.count -= 1
            if queue:
                asking.append(lane)
            else:
                del self._lanes[lane]
            return item
        return None

    def wake(self) -> None:
        """Ask every lane again at the next ``take``: a call has ended, and the budget it
        reconciled (a refund) may let a waiting item start earlier than it was told."""
        asking = self._asking
        asking.extend(lane for _, _, lane in sorted(self._blocked))
        self._blocked.clear()

    @property
    def all_blocked(self) -> bool:
        """True when every lane waits for a moment the limiter gave."""
        return not self._asking

    @property
    def due(self) -> float | None:
        """When the first blocked lane may ask again, if no lane may ask now."""
        if self._asking or not self._blocked:
            return None
        return self._blocked[0][0]

    def drain(self) -> list[Item]:
        """Every waiting item, now taken out; their reservations are cancelled (the run is
        ending, so they will never start)."""
        items = [item for queue in self._lanes.values() for item in queue]
        for item in items:
            if item.reservation is not None:
                item.reservation.cancel()
                item.reservation = None
        self._lanes.clear()
        self._asking.clear()
        self._blocked.clear()
        self.count = 0
        return items
