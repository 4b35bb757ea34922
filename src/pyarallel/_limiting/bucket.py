"""One budget: the state of one ``RateLimit`` (for one key, when it is keyed).

A generic cell-rate algorithm (GCRA), the token bucket without a refill thread: the
bucket keeps ``full_at``, the moment it will be full again. A call of ``cost`` units is
allowed at ``now`` when ``max(full_at, now) + cost / rate`` lies no more than
``burst / rate`` ahead of ``now``; taking it moves ``full_at`` there. With ``burst=1``
and calls of one unit, two calls are never closer than ``1 / rate`` seconds, so a
service counting calls in any sliding window never sees one too many.

Two more parts of the state keep waiting fair and obey the service:

- a *queue* of waiters: the waiters a bucket refused, when the bucket is what they wait
  for, are served in the order they were first refused: a waiter is refused while
  another is ahead of it, until that one has been granted (or has given up, or missed
  its turn by ``HOLD_GRACE`` seconds). So a large call is not starved by a stream of
  small ones, and two runs sharing a limiter take turns;
- a *pause*: nothing is granted before ``paused_until`` and the bucket restarts empty
  then (no burst on resume).
"""

from __future__ import annotations

from pyarallel._limiting.adaptive import AdaptiveRate

__all__ = ["HOLD_GRACE", "Bucket"]

# How long a place in the queue outlives the moment its waiter was told to come back: the
# thread (or event loop) of that waiter may wake a little late, and a waiter that vanished
# without cancelling must not block the others for long.
HOLD_GRACE = 0.1

# How often the others ask while the waiter at the head of the queue is late for its turn.
LATE_HOLDER_POLL = 0.001

# Floating-point slack when comparing moments: a waiter told to wait w seconds and asking
# again exactly w seconds later is granted.
EPSILON = 1e-9


class Bucket:
    """The budget of one limit (one key of it): ``rate`` units per second, ``burst`` at once.

    Not thread-safe by itself: the ``Limiter`` owning it serialises access. Times are on
    the limiter's clock (``time.monotonic`` unless a test gives another).
    """

    __slots__ = ("_adaptive", "_full_at", "_queue", "burst", "paused_until", "rate")

    def __init__(self, rate: float, burst: float, adaptive: bool) -> None:
        self.rate = rate
        self.burst = burst
        self._full_at = float("-inf")
        self.paused_until = float("-inf")
        # Waiters refused, in order, each with the moment it was told to come back and the
        # units it waits for (a dict keeps insertion order: the first key is the head). A
        # place lapses ``HOLD_GRACE`` after that moment.
        self._queue: dict[object, tuple[float, float]] = {}
        self._adaptive = AdaptiveRate(rate) if adaptive else None

    @property
    def current_rate(self) -> float:
        """The rate in force: the configured one, or less while an adaptive limit backs off."""
        return self._adaptive.rate if self._adaptive is not None else self.rate

    def wait(self, cost: float, now: float, waiter: object) -> tuple[float, bool]:
        """Seconds before ``cost`` units could be taken for ``waiter`` (0.0: now), and
        whether it should queue for this bucket (the budget, or waiters ahead of it, are
        what it waits for; not a pause)."""
        if self.paused_until > now:
            return self.paused_until - now, False
        head = self._head(now) if self._queue else None
        if head is not None and head is not waiter:
            return self._wait_behind(head, cost, now, waiter), True
        rate = self.current_rate
        wait = max(self._full_at, now) + (cost - self.burst) / rate - now
        return (wait, True) if wait > EPSILON else (0.0, True)

    def _wait_behind(self, head: object, cost: float, now: float, waiter: object) -> float:
        """How long ``waiter`` waits behind the queue: until the waiters ahead of it have
        been granted their units, at the rate in force (polling while the head is late)."""
        head_due = self._queue[head][0]
        if head_due <= now:
            return LATE_HOLDER_POLL
        ahead = 0.0
        for queued, (_, queued_cost) in self._queue.items():
            if queued is waiter:
                break
            ahead += queued_cost
        rate = self.current_rate
        return max(head_due + (ahead + cost - self.burst) / rate, head_due) - now

    def _head(self, now: float) -> object | None:
        """The first waiter whose place has not lapsed (lapsed ones leave the queue)."""
        queue = self._queue
        while queue:
            head = next(iter(queue))
            if queue[head][0] + HOLD_GRACE > now:
                return head
            del queue[head]
        return None

    def hold(self, waiter: object, until: float, cost: float) -> None:
        """Queue ``waiter`` for ``cost`` units (or keep its place): it was told to come
        back at ``until``."""
        self._queue[waiter] = (until, cost)

    def release(self, waiter: object) -> None:
        """``waiter`` was granted, or gave up: it leaves the queue."""
        self._queue.pop(waiter, None)

    def take(self, cost: float, now: float) -> None:
        """Take ``cost`` units at ``now`` (after ``wait`` said 0.0 for them)."""
        self._full_at = max(self._full_at, now) + cost / self.current_rate

    def adjust(self, units: float, now: float) -> None:
        """Charge ``units`` more (negative: refund them) for a call already granted. A
        refund never fills the bucket beyond full."""
        rate = self.current_rate
        floor = now - self.burst / rate
        if self.paused_until > now:  # still paused: restart with one unit ready, whatever the refund
            floor = max(floor, self.paused_until + (self.burst - 1) / rate)
        self._full_at = max(self._full_at + units / rate, floor)

    def pause(self, until: float) -> None:
        """Grant nothing before ``until`` (the furthest pause wins); restart empty then,
        with one unit's worth ready, so calls resume at the steady rate, not in a burst."""
        if until > self.paused_until:
            self.paused_until = until
            restart = until + (self.burst - 1) / self.current_rate
            self._full_at = max(self._full_at, restart)

    def throttled(self, granted_at: float, now: float) -> None:
        """A call granted at ``granted_at`` was throttled by the service: back off."""
        if self._adaptive is not None:
            old = self._adaptive.rate
            self._adaptive.throttled(granted_at, now)
            self._rescale(old, now)

    def _rescale(self, old: float, now: float) -> None:
        """Keep the units owed when the rate changes: only how fast they are repaid changes."""
        new = self.current_rate
        base = max(now, self.paused_until)
        if new != old and self._full_at > base:
            self._full_at = base + (self._full_at - base) * old / new

    def succeeded(self, now: float, units: float) -> None:
        """A call of ``units`` succeeded: an adaptive rate recovers a little."""
        if self._adaptive is not None:
            old = self._adaptive.rate
            self._adaptive.succeeded(now, units)
            self._rescale(old, now)

    def at_rest(self, now: float) -> bool:
        """True when forgetting this bucket changes nothing: full, not paused, nobody
        queued, the rate fully recovered."""
        return (
            self._full_at <= now
            and self.paused_until <= now
            and self._head(now) is None
            and (self._adaptive is None or self._adaptive.recovered)
        )
