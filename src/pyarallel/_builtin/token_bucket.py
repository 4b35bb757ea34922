"""Built-in plugin: the token-bucket rate limiter that ``RateLimit`` configures.

Pacing is smooth: one call every ``1 / rate`` seconds and no burst, not even at the
start (the first call goes at once, the second one interval later).
"""

from __future__ import annotations

import threading
import time

from pyarallel._options import RateLimit
from pyarallel.hookspecs import hookimpl


class TokenBucket:
    """A thread-safe limiter granting at most one call per ``1 / rate`` seconds.

    Implemented as a generic cell-rate algorithm with a bucket of one token: it keeps
    the earliest time the next call may start, so no background refill is needed.
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
            self._next_start = now + self.interval
            return 0.0


@hookimpl
def pyarallel_rate_limiter(rate_limit: object) -> TokenBucket | None:
    if isinstance(rate_limit, RateLimit):
        return TokenBucket(rate_limit.per_second)
    return None
