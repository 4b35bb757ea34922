"""Rate-limit pacing: every attempt draws a token before it starts."""

from __future__ import annotations

from pyarallel.contracts import RateLimiter

__all__ = ["Pacer"]


class Pacer:
    """Draws the rate-limiter's tokens for one run and remembers when the next is due."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self.token_due: float | None = None  # when the limiter said to ask again

    def draw(self, now: float) -> bool:
        """Take a token for one attempt starting now; False (and ``token_due`` set) if the
        limiter says to wait."""
        wait = self._limiter.try_acquire()
        if wait > 0:
            self.token_due = now + wait
            return False
        self.token_due = None
        return True
