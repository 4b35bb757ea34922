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

# A blocked lane is asked again a little late: the driver wakes on time, but its way from
# there to the question takes tens of microseconds, and under strict pacing every one of
# them lowers the rate for good. So a lane is due this fraction of that lateness (a moving
# average, at most MAX_LEAD) before the limiter's time, unless the wait is that short;
# asked a little early, it is refused and asked again at once. Measured at 100 calls/s on
# threads, grants came 60 us late on the median without it, 35-40 us with it.
LEAD = 0.8
LATENESS_SMOOTHING = 0.1
MAX_LEAD = 0.0005

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
        self._late = 0.0  # seconds: how late blocked lanes are asked again, a moving average

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
        if blocked and blocked[0][0] > now:
            now = max(now, self._clock())  # dues were set by the clock after ``now`` was read
        released = None
        while blocked and blocked[0][0] <= now:
            released, _, lane = heapq.heappop(blocked)
            asking.append(lane)
        if released is not None:  # how late the last lane due is asked (the limiter's own clock)
            late = min(max(self._clock() - released, 0.0), MAX_LEAD)
            self._late += LATENESS_SMOOTHING * (late - self._late)
        while asking:
            lane = asking.popleft()
            queue = self._lanes[lane]
            item = queue[0]
            assert item.reservation is not None
            wait = item.reservation.try_acquire()
            if wait > 0:
                self._sequence += 1
                lead = LEAD * self._late
                due = self._clock() + (wait - lead if wait > 2 * lead else wait)
                heapq.heappush(blocked, (due, self._sequence, lane))
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
