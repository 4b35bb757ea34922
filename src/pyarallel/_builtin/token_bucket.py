"""Built-in plugin: the token-bucket rate limiter that ``RateLimit`` configures.

Pacing is smooth: one call every ``1 / rate`` seconds and no burst, not even at the
start (the first call goes at once, the second one interval later).
"""

from __future__ import annotations

import threading
import time

from pyarallel._options import RateLimit
from pyarallel.hookspecs import hookimpl

# A caller that wakes a little late for its token (the OS timer, a busy scheduler) may
# make that time up on the next call, so the average rate is the one asked for rather
# than drifting slow by the wake-up latency. Only this fraction of an interval can be made
# up, so two calls are never closer than (1 - CATCH_UP) intervals, and after an idle
# spell no burst builds up.
CATCH_UP = 0.0


class TokenBucket:
    """A thread-safe limiter granting at most one call per ``1 / rate`` seconds.

    Implemented as a generic cell-rate algorithm with a bucket of one token: it keeps
    the earliest time the next call may start, so no background refill is needed.
    Granted calls keep to a grid one interval apart as long as callers keep up; see
    ``CATCH_UP`` for what happens when they wake late.
    """

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._clock = time.monotonic
        self._next_start = float("-inf")
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        with self._lock:
            now = self._clock()
            wait = self._next_start - now
            if wait > 0:
                return wait
            # Slightly late for the token that was due: stay on the grid. Idle, or first call:
            # start a new grid from now, so no credit (no burst) builds up.
            on_grid = -wait <= CATCH_UP * self.interval
            self._next_start = (self._next_start if on_grid else now) + self.interval
            return 0.0


@hookimpl
def pyarallel_rate_limiter(rate_limit: object) -> TokenBucket | None:
    if isinstance(rate_limit, RateLimit):
        return TokenBucket(rate_limit.per_second)
    return None
