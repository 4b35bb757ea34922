"""``Limiter``: the built-in rate limiter, one budget that many calls can share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from pyarallel._limiting.bucket import Bucket
from pyarallel._options import RateLimit, check_non_negative_number, check_positive_number
from pyarallel._result import ItemResult

__all__ = ["Limiter"]

# A keyed limit forgets the keys at rest (see ``Bucket.at_rest``: forgetting them changes
# nothing) once it holds more than this many, or twice as many as after the last sweep,
# and at least every ``SWEEP_SECONDS``: memory stays proportional to the busy keys.
SWEEP_KEYS = 1024
SWEEP_SECONDS = 60.0

# Budgets whose wait is within this of the longest are what a refused call waits for:
# it queues for them (see ``Bucket.hold``).
BINDING_SLACK = 0.001


class Limiter:
    """A rate limiter that several calls, decorated functions, threads and event loops
    share: pass the same ``Limiter`` as ``rate_limit=`` and they draw on one budget.

    ``limits`` are :class:`~pyarallel.RateLimit` objects (or numbers of calls per second)
    that must all allow a call before it starts, for example
    ``Limiter(RateLimit(500, "minute"), RateLimit(90_000, "minute", cost=tokens, burst=8_000))``.
    The reservation is atomic: no limit is debited while another still makes the call
    wait, and a waiter that gives up (a timeout, a cancelled or stopped run) takes
    nothing. A limit with ``key=`` keeps a budget per key; keys at rest are forgotten.
    A waiter that a limit refused first is served first by that limit, so a large call is
    never starved by a stream of small ones.

    With ``adaptive=True`` a throttle from the service (an HTTP 429, a ``Retry-After``,
    any retry decision marked ``throttled``) lowers the rate of the limits the call drew
    on (its key only, for a keyed limit) and the rate recovers while calls succeed, never
    above the configured one; see ``pyarallel._limiting.adaptive`` for the algorithm.

    The limiter never blocks: a call that may not start yet is told how long to wait
    (see :class:`pyarallel.contracts.RateLimiter`). It is safe to use from any thread.
    """

    def __init__(self, *limits: RateLimit | float, adaptive: bool = False) -> None:
        if not limits:
            raise ValueError(
                "Limiter needs at least one limit, e.g. Limiter(RateLimit(10)) for 10 calls per second"
            )
        self.limits: tuple[RateLimit, ...] = tuple(_as_rate_limit(limit, n) for n, limit in enumerate(limits))
        if not isinstance(adaptive, bool):
            raise TypeError(f"Limiter adaptive must be True or False; got {adaptive!r}")
        self.adaptive = adaptive
        self._lock = threading.Lock()
        self._clock: Callable[[], float] = time.monotonic
        self._paused_until = float("-inf")
        self._shared = [None if limit.key else self._new_bucket(limit) for limit in self.limits]
        self._keyed: list[dict[Hashable, Bucket] | None] = [
            {} if limit.key else None for limit in self.limits
        ]
        self._keyed_limits = tuple(n for n, limit in enumerate(self.limits) if limit.key)
        self._unit_costs = tuple(1.0 for _ in self.limits)
        self._simple = all(limit.cost is None and limit.key is None for limit in self.limits)
        self._single = self._shared[0] if self._simple and len(self.limits) == 1 else None
        self._sweep_size = SWEEP_KEYS
        self._swept_at = float("-inf")

    def __repr__(self) -> str:
        limits = ", ".join(map(repr, self.limits))
        return f"Limiter({limits}{', adaptive=True' if self.adaptive else ''})"

    # -- the contract -------------------------------------------------------------------

    def request(self, item: object) -> _Reservation:
        """A reservation for one attempt of ``item`` (see ``pyarallel.contracts``).

        Raises :class:`~pyarallel.RateLimitCostError` when a ``cost`` or ``key`` function
        fails or gives a bad value, or when the cost exceeds a limit's ``burst``."""
        if self._simple:
            return _Reservation(self, item, self._unit_costs, None)
        keys = tuple(limit.key_of(item) for limit in self.limits)
        costs = tuple(limit.cost_of(item) for limit in self.limits)
        lane = tuple(keys[n] for n in self._keyed_limits) if self._keyed_limits else None
        return _Reservation(self, item, costs, keys, lane)

    # -- what users call ----------------------------------------------------------------

    def pause(self, seconds: float, *, key: Hashable | None = None) -> None:
        """Start nothing for ``seconds`` from now (a service said so): every caller of this
        limiter, or with ``key`` only the calls of that key in its keyed limits. The
        furthest deadline wins, and calls resume at the steady rate, without a burst."""
        seconds = check_non_negative_number("Limiter.pause seconds", seconds)
        if key is not None and not self._keyed_limits:
            raise ValueError(
                f"Limiter.pause(key={key!r}) needs a keyed limit (a RateLimit with key=); "
                f"{self!r} has none: call pause(seconds) to pause it all"
            )
        with self._lock:
            until = self._clock() + seconds
            if key is None:
                self._paused_until = max(self._paused_until, until)
                for bucket in self._every_bucket():
                    bucket.pause(until)
            else:
                for bucket in self._key_buckets(key):
                    bucket.pause(until)

    def current_rates(self, key: Hashable | None = None) -> tuple[float, ...]:
        """The rate in force for each limit (units per second), for ``key`` in the keyed
        ones: the configured rate, or less while ``adaptive`` backs off."""
        with self._lock:
            rates = []
            for n, limit in enumerate(self.limits):
                bucket = self._shared[n]
                keyed = self._keyed[n]
                if keyed is not None:
                    bucket = keyed.get(key)
                rates.append(bucket.current_rate if bucket is not None else limit.per_second)
            return tuple(rates)

    # -- what reservations call (under the lock) ----------------------------------------

    def _try_acquire(self, reservation: _Reservation) -> float:
        if self._single is not None:
            return self._try_acquire_single(self._single, reservation)
        with self._lock:
            now = self._clock()
            if self._paused_until > now:
                return self._paused_until - now
            buckets = self._buckets(reservation.keys)
            costs = reservation.costs
            waits = [bucket.wait(cost, now, reservation) for bucket, cost in zip(buckets, costs, strict=True)]
            longest = max(wait for wait, _ in waits)
            if longest > 0:
                for bucket, cost, (wait, own) in zip(buckets, costs, waits, strict=True):
                    if own and wait >= longest - BINDING_SLACK:
                        bucket.hold(reservation, now + longest, cost)
                return longest
            for bucket, cost in zip(buckets, costs, strict=True):
                bucket.take(cost, now)
                bucket.release(reservation)
            reservation.granted_at = now
            reservation.buckets = buckets
            if self._keyed_limits:
                self._sweep(now)
            return 0.0

    def _try_acquire_single(self, bucket: Bucket, reservation: _Reservation) -> float:
        """``_try_acquire`` for a limiter of one limit without cost or key (the common
        case, and the one paced at a high rate): the same steps, without the lists."""
        with self._lock:
            now = self._clock()
            if self._paused_until > now:
                return self._paused_until - now
            wait, own = bucket.wait(1.0, now, reservation)
            if wait > 0:
                if own:
                    bucket.hold(reservation, now + wait, 1.0)
                return wait
            bucket.take(1.0, now)
            bucket.release(reservation)
            reservation.granted_at = now
            reservation.buckets = [bucket]
            return 0.0

    def _cancel(self, reservation: _Reservation) -> None:
        with self._lock:
            for bucket in self._buckets(reservation.keys, create=False):
                bucket.release(reservation)

    def _throttled(self, reservation: _Reservation, pause: float | None) -> None:
        with self._lock:
            now = self._clock()
            buckets = self._buckets(reservation.keys)
            if self._keyed_limits:  # the keys only: one throttled host must not stop the others
                buckets = [buckets[n] for n in self._keyed_limits]
            for bucket in buckets:
                if pause is not None:
                    bucket.pause(now + pause)
                bucket.throttled(reservation.granted_at, now)

    def _finished(self, reservation: _Reservation, result: ItemResult[Any]) -> bool:
        adjustments = [
            (n, limit.settled(reservation.item, result) - reservation.costs[n])
            for n, limit in enumerate(self.limits)
            if limit.settle is not None
        ]
        if not adjustments and not (self.adaptive and result.ok):
            return False
        with self._lock:
            now = self._clock()
            self._restore_swept(reservation)
            buckets = self._buckets(reservation.keys)
            for n, units in adjustments:
                buckets[n].adjust(units, now)
            if self.adaptive and result.ok:
                for bucket, units in zip(buckets, reservation.costs, strict=True):
                    bucket.succeeded(now, units)
        return any(units < 0 for _, units in adjustments)

    # -- buckets --------------------------------------------------------------------------

    def _new_bucket(self, limit: RateLimit) -> Bucket:
        bucket = Bucket(limit.per_second, float(limit.burst), self.adaptive)
        if self._paused_until > self._clock():  # a key first seen while it all is paused
            bucket.pause(self._paused_until)
        return bucket

    def _buckets(self, keys: tuple[Hashable, ...] | None, *, create: bool = True) -> list[Bucket]:
        """The budget of each limit for a call with ``keys`` (one per limit, or None)."""
        buckets: list[Bucket] = []
        for n, shared in enumerate(self._shared):
            if shared is not None:
                buckets.append(shared)
                continue
            keyed = self._keyed[n]
            assert keyed is not None
            assert keys is not None
            bucket = keyed.get(keys[n])
            if bucket is None:
                if not create:
                    continue
                bucket = keyed[keys[n]] = self._new_bucket(self.limits[n])
            buckets.append(bucket)
        return buckets

    def _restore_swept(self, reservation: _Reservation) -> None:
        """Put back the keyed budgets a granted call drew on, if they were forgotten while
        it ran, so that reconciling it charges the right budget."""
        if reservation.buckets is None or reservation.keys is None:
            return
        for n in self._keyed_limits:
            keyed = self._keyed[n]
            assert keyed is not None
            keyed.setdefault(reservation.keys[n], reservation.buckets[n])

    def _key_buckets(self, key: Hashable) -> list[Bucket]:
        """The budgets of ``key`` in every keyed limit (made if need be)."""
        buckets = []
        for n in self._keyed_limits:
            keyed = self._keyed[n]
            assert keyed is not None
            bucket = keyed.get(key)
            if bucket is None:
                bucket = keyed[key] = self._new_bucket(self.limits[n])
            buckets.append(bucket)
        return buckets

    def _every_bucket(self) -> list[Bucket]:
        buckets = [bucket for bucket in self._shared if bucket is not None]
        for keyed in self._keyed:
            if keyed is not None:
                buckets.extend(keyed.values())
        return buckets

    def _sweep(self, now: float) -> None:
        """Forget the keys at rest, when there are many or it has been a while."""
        size = max(len(keyed) for keyed in self._keyed if keyed is not None)
        if size <= self._sweep_size and now - self._swept_at < SWEEP_SECONDS:
            return
        for keyed in self._keyed:
            if keyed is not None:
                for key in [key for key, bucket in keyed.items() if bucket.at_rest(now)]:
                    del keyed[key]
        remaining = max(len(keyed) for keyed in self._keyed if keyed is not None)
        self._sweep_size = max(SWEEP_KEYS, 2 * remaining)
        self._swept_at = now

    def key_count(self) -> int:
        """How many keys the keyed limits remember now (for tests and monitoring)."""
        with self._lock:
            return sum(len(keyed) for keyed in self._keyed if keyed is not None)


class _Reservation:
    """One attempt's claim on a :class:`Limiter` (see ``pyarallel.contracts.Reservation``)."""

    __slots__ = ("_limiter", "buckets", "costs", "granted_at", "item", "keys", "lane")

    def __init__(
        self,
        limiter: Limiter,
        item: object,
        costs: tuple[float, ...],
        keys: tuple[Hashable, ...] | None,
        lane: Hashable = None,
    ) -> None:
        self._limiter = limiter
        self.item = item
        self.costs = costs
        self.keys = keys
        self.lane = lane
        self.granted_at = float("-inf")
        self.buckets: list[Bucket] | None = None  # the budgets it was granted from

    def try_acquire(self) -> float:
        return self._limiter._try_acquire(self)

    def cancel(self) -> None:
        self._limiter._cancel(self)

    def throttled(self, pause: float | None) -> None:
        self._limiter._throttled(self, pause)

    def finished(self, result: ItemResult[Any]) -> bool:
        return self._limiter._finished(self, result)


def _as_rate_limit(limit: object, position: int) -> RateLimit:
    if isinstance(limit, RateLimit):
        return limit
    if isinstance(limit, int | float) and not isinstance(limit, bool):
        return RateLimit(check_positive_number(f"Limiter limit {position}", limit))
    raise TypeError(
        f"Limiter limits must be RateLimit objects or numbers of calls per second; "
        f"limit {position} is {limit!r}"
    )
