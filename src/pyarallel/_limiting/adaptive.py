"""An adaptive rate: backs off when the service throttles, recovers while calls succeed.

The algorithm is CUBIC's window growth, applied to a rate as botocore's adaptive client
rate limiter does, with the constants scaled to the rate so that they mean the same for
10 calls a second as for 90,000 tokens a minute:

- on a throttle, ``peak`` becomes the rate in force, or the rate that really succeeded
  over the last ``MEASURE_SECONDS`` (after a first cut) when that is lower still than
  ``BETA`` times it (right after a start far above the service's quota, the rate in
  force says little), and the rate drops to ``BETA * peak`` (a 15 % cut);
- after that, on each success ``t`` seconds after the cut, the rate is
  ``peak * (1 + SCALE * (t - K) ** 3)`` with ``K = ((1 - BETA) / SCALE) ** (1 / 3)``
  (``RECOVERY_SECONDS``, 2 s): it climbs back quickly at first, flattens out near
  ``peak`` (where the service throttled last time), then probes beyond it, ever faster;
- it never exceeds the configured rate, nor falls below ``FLOOR`` of it;
- a throttle of a call granted before the last cut, or within ``COOLDOWN`` seconds of
  it, says nothing new (the cut had not taken effect at the service yet), so it is
  ignored: a burst of throttled answers to calls already in flight counts as one
  signal, not one cut each.
"""

from __future__ import annotations

from collections import deque

__all__ = ["BETA", "COOLDOWN", "FLOOR", "MEASURE_SECONDS", "RECOVERY_SECONDS", "AdaptiveRate"]

BETA = 0.85
RECOVERY_SECONDS = 2.0  # from a cut back to the peak it was made at
SCALE = (1 - BETA) / RECOVERY_SECONDS**3
FLOOR = 0.001  # the lowest rate, as a fraction of the configured one
COOLDOWN = 0.1  # seconds after a cut during which throttles are not counted
MEASURE_SECONDS = 1.0  # how far back the rate that succeeded is measured


class AdaptiveRate:
    """The rate in force for one budget whose ceiling (the configured rate) is ``ceiling``."""

    __slots__ = ("_cut_at", "_peak", "_successes", "ceiling", "rate")

    def __init__(self, ceiling: float) -> None:
        self.ceiling = ceiling
        self.rate = ceiling
        self._peak = ceiling
        self._cut_at = float("-inf")
        self._successes: deque[tuple[float, float]] = deque()  # (time, units), the last second

    @property
    def recovered(self) -> bool:
        """True when the rate is back at its ceiling."""
        return self.rate >= self.ceiling

    def throttled(self, granted_at: float, now: float) -> None:
        """A call granted at ``granted_at`` was throttled at ``now``."""
        if granted_at < self._cut_at or now < self._cut_at + COOLDOWN:
            return  # sent before the last cut took effect, or too soon after it
        peak = self.rate
        measured = self._measured(now)
        if measured is not None and measured < BETA * peak:  # far above what the service takes
            peak = measured
        self._peak = peak
        self.rate = max(peak * BETA, self.ceiling * FLOOR)
        self._cut_at = now

    def succeeded(self, now: float, units: float) -> None:
        """A call of ``units`` succeeded at ``now``: the rate follows the cubic curve
        since the last cut."""
        successes = self._successes
        successes.append((now, units))
        while successes[0][0] < now - MEASURE_SECONDS:
            successes.popleft()
        if self.rate >= self.ceiling:
            return
        since = now - self._cut_at - RECOVERY_SECONDS
        self.rate = min(self.ceiling, max(self.rate, self._peak * (1 + SCALE * since**3)))

    def _measured(self, now: float) -> float | None:
        """Units per second that succeeded over the last ``MEASURE_SECONDS`` (or since the
        first success, if more recent), or None before the first cut."""
        if self._cut_at == float("-inf") or not self._successes:
            return None
        since = max(self._successes[0][0], now - MEASURE_SECONDS)
        if now - since < COOLDOWN:
            return None
        return sum(units for at, units in self._successes if at >= since) / (now - since)
