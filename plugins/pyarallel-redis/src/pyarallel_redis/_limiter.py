"""``RedisLimiter``: a rate limiter whose budgets live in Redis, shared by every process and
host that uses the same name.

Every reservation is decided by one Lua script on the server (see ``_script.py``), in one
round trip (``EVALSHA``; redis-py's ``Script`` loads the script again after a ``NOSCRIPT``,
so a restarted or flushed server costs one extra round trip, once).
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import threading
import time
from collections.abc import Hashable, Sequence
from typing import Any, Literal, TypeAlias

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from pyarallel import ItemResult, RateLimit
from pyarallel_redis._script import SCRIPT
from pyarallel_redis._validation import (
    as_rate_limit,
    check_name,
    check_non_negative_number,
    check_positive_number,
    encode_key,
    encoded_key_of,
)

__all__ = [
    "DEFAULT_URL",
    "UNAVAILABLE_ERRORS",
    "UNAVAILABLE_WAIT",
    "OnUnavailable",
    "RedisClient",
    "RedisLimiter",
    "RedisReservation",
]

logger = logging.getLogger("pyarallel_redis")

DEFAULT_URL = "redis://127.0.0.1:6379/0"

RedisClient: TypeAlias = redis.Redis | RedisCluster
OnUnavailable: TypeAlias = Literal["fail_closed", "fail_open"]

# With on_unavailable="fail_closed", how long a call waits before asking again while Redis
# cannot be reached.
UNAVAILABLE_WAIT = 0.5

# A refused call is told when its budget comes due on the server, but its next question
# reaches the server a round trip after the answer left: the wait handed to the scheduler
# is shortened by this many round trips (a moving average of the acquires'), so the
# question arrives about when the budget does. Measured at 100 calls/s against a local
# server: 0.8 gave 97.7 calls/s, 1.0 98.4-98.8, 1.3 98.2-98.5 (early questions are refused
# and cost a round trip more).
ROUND_TRIP_LEAD = 1.0
ROUND_TRIP_SMOOTHING = 0.2  # weight of the newest round trip in the moving average
SHORTEST_WAIT = 1e-6  # the contract wants a positive wait for a refusal

# What "Redis cannot be reached" means: the connection failed or timed out (a
# ``BusyLoadingError`` while a restarted server loads its data is a ``ConnectionError``),
# the cluster is down or moving slots, or the server is a replica that cannot write.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
)


class RedisLimiter:
    """A rate limiter whose budgets live in one Redis server (or cluster), so that every
    process and host using the same ``name`` and limits shares one budget.

    ``limits`` are :class:`~pyarallel.RateLimit` objects (or numbers of calls per second)
    with the semantics of the local :class:`pyarallel.Limiter`: all must allow a call
    before it starts, and the reservation is atomic (no limit is debited while another
    still makes the call wait); ``burst``, ``cost=``, ``key=`` and ``settle=`` mean what they
    mean there, and the waiters a limit refused are served in the order it first refused
    them, whichever process they are in. Every decision is one Lua script on the server,
    on the server's clock. ``cost``, ``key`` and ``settle`` functions run in this process;
    a call whose cost exceeds a limit's ``burst`` fails at once with
    :class:`~pyarallel.RateLimitCostError`, and a key must be a ``str``, ``bytes``, number,
    ``bool``, ``None`` or a tuple of them (it must name the same budget in every process).
    Adaptive rates are not supported (there is no ``adaptive=``).

    ``client``: a ``redis.Redis`` or ``redis.cluster.RedisCluster`` to use (its timeouts and
    retries are yours); else one is made from ``url`` with ``timeout`` seconds to connect
    and to answer, and one retry of a broken connection. ``name`` names the shared budget:
    every key of it starts with ``{pyarallel:<name>}``, one Redis Cluster hash slot.
    Processes sharing a name must give the same limits in the same order (a limit's budget
    is known by its position).

    ``on_unavailable``: what a call does when Redis cannot be reached. ``"fail_closed"``
    (the default): it waits (asking again every :data:`UNAVAILABLE_WAIT` seconds), so
    nothing starts until Redis is back. ``"fail_open"``: it starts at once, unlimited, and a
    warning is logged once per outage.

    The limiter is safe to use from any thread; pass the same object as ``rate_limit=`` to
    many calls, or make one per process. Making one connects to nothing: the first
    ``try_acquire`` does.
    """

    def __init__(
        self,
        *limits: RateLimit | float,
        client: RedisClient | None = None,
        url: str | None = None,
        name: str = "default",
        on_unavailable: OnUnavailable = "fail_closed",
        timeout: float = 0.5,
    ) -> None:
        if not limits:
            raise ValueError(
                "RedisLimiter needs at least one limit, "
                "e.g. RedisLimiter(RateLimit(10)) for 10 calls per second"
            )
        self.limits: tuple[RateLimit, ...] = tuple(
            as_rate_limit(limit, n, "RedisLimiter") for n, limit in enumerate(limits)
        )
        self.name = check_name(name)
        if on_unavailable not in ("fail_closed", "fail_open"):
            raise ValueError(
                f'RedisLimiter on_unavailable must be "fail_closed" or "fail_open"; got {on_unavailable!r}'
            )
        self.on_unavailable: OnUnavailable = on_unavailable
        seconds = check_positive_number("RedisLimiter timeout", timeout)
        self.url: str | None
        if client is None:
            self.url = DEFAULT_URL if url is None else url
            if not isinstance(self.url, str):
                raise TypeError(f"RedisLimiter url must be a string such as {DEFAULT_URL!r}; got {url!r}")
            client = redis.Redis.from_url(
                self.url,
                socket_timeout=seconds,
                socket_connect_timeout=seconds,
                retry=Retry(NoBackoff(), 1),
            )
            self._owns_client = True
        else:
            if url is not None:
                raise TypeError("RedisLimiter takes a client or a url, not both")
            if not isinstance(client, RedisClient):
                raise TypeError(
                    f"RedisLimiter client must be a redis.Redis or a redis.cluster.RedisCluster; "
                    f"got {client!r}"
                )
            self.url = None
            self._owns_client = False
        self.client: RedisClient = client
        self._script = client.register_script(SCRIPT)

        prefix = "{pyarallel:" + self.name + "}"
        self.key_prefix = prefix
        self._pause_key = prefix + ":pause"
        self._bucket_prefixes = tuple(f"{prefix}:{n}" for n in range(len(self.limits)))
        # what the script is told of each limit: its rate, its burst, and whether it has no keys
        self._params = tuple(
            (repr(limit.per_second), repr(float(limit.burst)), "0" if limit.key else "1")
            for limit in self.limits
        )
        self._keyed_limits = tuple(n for n, limit in enumerate(self.limits) if limit.key)
        self._settled_limits = tuple(n for n, limit in enumerate(self.limits) if limit.settle)
        self._simple = all(limit.cost is None and limit.key is None for limit in self.limits)
        self._simple_amounts = tuple(
            arg for n in range(len(self.limits)) for arg in self._bucket_args(n, "1.0")
        )
        # the longest any limit takes to refill its burst after a pause (see _script.py)
        self._refill = repr(max(0.0, *((float(limit.burst) - 1) / limit.per_second for limit in self.limits)))
        self._waiters = itertools.count()
        self._waiter_prefix = f"{os.getpid():x}.{secrets.token_hex(4)}."
        self._lock = threading.Lock()
        self._down = False
        self._round_trip = 0.0  # seconds: moving average of an acquire's round trip

    def __repr__(self) -> str:
        limits = ", ".join(map(repr, self.limits))
        return f"RedisLimiter({limits}, name={self.name!r}, on_unavailable={self.on_unavailable!r})"

    # -- the contract -------------------------------------------------------------------

    def request(self, item: object) -> RedisReservation:
        """A reservation for one attempt of ``item`` (see ``pyarallel.contracts``); asks
        nothing of Redis. Raises :class:`~pyarallel.RateLimitCostError` when a ``cost`` or
        ``key`` function fails or gives a bad value (a key must be made of strings, bytes,
        numbers, booleans, ``None`` and tuples of them), or when a cost exceeds a limit's
        ``burst``."""
        waiter = self._waiter_prefix + str(next(self._waiters))
        if self._simple:
            return RedisReservation(
                self,
                item,
                waiter=waiter,
                buckets=self._bucket_prefixes,
                amounts=self._simple_amounts,
                costs=(1.0,) * len(self.limits),
                lane=None,
            )
        keys: list[Hashable] = []
        buckets: list[str] = []
        costs: list[float] = []
        amounts: list[str] = []
        for n, limit in enumerate(self.limits):
            if limit.key is None:
                keys.append(None)
                buckets.append(self._bucket_prefixes[n])
            else:
                key, encoded = encoded_key_of(limit, item)
                keys.append(key)
                buckets.append(f"{self._bucket_prefixes[n]}:{encoded}")
        for n, limit in enumerate(self.limits):
            cost = limit.cost_of(item)
            costs.append(cost)
            amounts += self._bucket_args(n, repr(cost))
        lane = tuple(keys[n] for n in self._keyed_limits) if self._keyed_limits else None
        return RedisReservation(
            self,
            item,
            waiter=waiter,
            buckets=tuple(buckets),
            amounts=tuple(amounts),
            costs=tuple(costs),
            lane=lane,
        )

    # -- what users call ----------------------------------------------------------------

    def pause(self, seconds: float, *, key: Hashable | None = None) -> None:
        """Start nothing for ``seconds`` from now (on the server's clock), in every process
        sharing this limiter's name: every call, or with ``key`` only the calls of that key
        in the keyed limits. The furthest deadline wins, and calls resume at the steady
        rate, without a burst. Raises redis-py's exception if Redis cannot be reached."""
        seconds = check_non_negative_number("RedisLimiter.pause seconds", seconds)
        if key is None:
            self._call((self._pause_key,), ("pause_all", "", repr(seconds), self._refill))
            return
        encoded = encode_key(key)
        buckets = [f"{self._bucket_prefixes[n]}:{encoded}" for n in self._keyed_limits]
        amounts = [arg for n in self._keyed_limits for arg in self._bucket_args(n, "0")]
        if buckets:
            self._call(self._script_keys(buckets), ("pause", "", repr(seconds), "0", *amounts))

    def bucket_keys(self, item: object = None) -> tuple[str, ...]:
        """The Redis keys (hashes) of the budgets a call of ``item`` draws on, one per limit:
        for monitoring and tests. Each has a queue of waiters beside it (the same key with
        ``:q``), and the limiter a pause key, :attr:`pause_key`."""
        return self.request(item).buckets

    @property
    def pause_key(self) -> str:
        """The Redis key holding the deadline of a pause of the whole limiter."""
        return self._pause_key

    def close(self) -> None:
        """Close the connections of the client this limiter made (not of one given to it)."""
        if self._owns_client:
            self.client.close()

    # -- what reservations call ---------------------------------------------------------

    def _script_keys(self, buckets: Sequence[str]) -> list[str]:
        """The script's keys for these buckets: the pause key, then each hash and queue."""
        keys = [self._pause_key]
        for bucket in buckets:
            keys += (bucket, bucket + ":q")
        return keys

    def _bucket_args(self, n: int, amount: str) -> tuple[str, str, str, str]:
        """The script's arguments for the bucket of limit ``n``: rate, burst, amount, shared."""
        rate, burst, shared = self._params[n]
        return rate, burst, amount, shared

    def _call(self, keys: Sequence[str], args: Sequence[str]) -> list[Any]:
        answer: list[Any] = self._script(keys=keys, args=args)
        if self._down:
            self._back()
        return answer

    def _timed_acquire(self, keys: Sequence[str], args: Sequence[str]) -> list[Any]:
        """``_call`` for an acquire, keeping the moving average of its round trip."""
        began = time.monotonic()
        answer = self._call(keys, args)
        took = time.monotonic() - began
        self._round_trip += ROUND_TRIP_SMOOTHING * (took - self._round_trip)
        return answer

    def _lead_wait(self, wait: float) -> float:
        """The wait to hand the scheduler for a refusal the server timed at ``wait``."""
        return max(wait - ROUND_TRIP_LEAD * self._round_trip, SHORTEST_WAIT)

    def _unreachable(self, error: Exception, what: str) -> None:
        with self._lock:
            first, self._down = not self._down, True
        if first:
            mode = (
                "calls start unlimited until it is back (fail_open)"
                if self.on_unavailable == "fail_open"
                else f"calls wait until it is back, asking every {UNAVAILABLE_WAIT:g} s (fail_closed)"
            )
            logger.warning("%r: Redis cannot be reached (%s: %r); %s", self, what, error, mode)

    def _back(self) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            logger.warning("%r: Redis can be reached again", self)


class RedisReservation:
    """One attempt's claim on a :class:`RedisLimiter` (see ``pyarallel.contracts.Reservation``).

    ``granted_at``: when it was granted, on the Redis server's clock (seconds since the
    epoch), or ``None`` (not granted, or granted without Redis under ``fail_open``)."""

    __slots__ = (
        "_amounts",
        "_keys",
        "_limiter",
        "_refused",
        "buckets",
        "costs",
        "granted",
        "granted_at",
        "item",
        "lane",
        "unlimited",
        "waiter",
    )

    def __init__(
        self,
        limiter: RedisLimiter,
        item: object,
        *,
        waiter: str,
        buckets: tuple[str, ...],
        amounts: tuple[str, ...],
        costs: tuple[float, ...],
        lane: Hashable,
    ) -> None:
        self._limiter = limiter
        self.item = item
        self.waiter = waiter
        self.buckets = buckets  # the hash of each limit's budget for this item
        self._keys = limiter._script_keys(buckets)
        self._amounts = amounts
        self.costs = costs
        self.lane = lane
        self._refused = False  # refused once at least: a bucket may serve it first
        self.granted = False
        self.unlimited = False  # granted without Redis (fail_open)
        self.granted_at: float | None = None

    def __repr__(self) -> str:
        return f"<RedisReservation {self.waiter} of {self.item!r}>"

    def try_acquire(self) -> float:
        limiter = self._limiter
        try:
            granted, wait, at = limiter._timed_acquire(
                self._keys, ("acquire", self.waiter, "0", "0", *self._amounts)
            )
        except UNAVAILABLE_ERRORS as error:
            limiter._unreachable(error, "acquire")
            if limiter.on_unavailable == "fail_open":
                self.granted = self.unlimited = True
                return 0.0
            return UNAVAILABLE_WAIT
        if granted:
            self.granted = True
            self.granted_at = float(at)
            return 0.0
        self._refused = True
        return limiter._lead_wait(float(wait))

    def cancel(self) -> None:
        if not self._refused or self.granted:
            return  # in no bucket's queue
        self._best_effort("release", "0", self._amounts)

    def throttled(self, pause: float | None) -> None:
        if pause is None or not self.granted or self.unlimited:
            return  # an adaptive limiter would slow down here; this one only pauses
        limiter = self._limiter
        # a keyed limiter pauses the call's keys only: one throttled key must not stop the others
        positions = limiter._keyed_limits or range(len(limiter.limits))
        buckets = [self.buckets[n] for n in positions]
        amounts = [arg for n in positions for arg in limiter._bucket_args(n, "0")]
        self._best_effort("pause", repr(max(0.0, float(pause))), amounts, limiter._script_keys(buckets))

    def finished(self, result: ItemResult[Any]) -> bool:
        """Reconcile ``settle=``: True when budget was given back (a refund), so that this
        process's waiting attempts ask again now. Waiters in other processes ask at the
        time they were given."""
        limiter = self._limiter
        if not limiter._settled_limits or self.unlimited:
            return False
        buckets: list[str] = []
        amounts: list[str] = []
        refunded = False
        for n in limiter._settled_limits:
            units = limiter.limits[n].settled(self.item, result) - self.costs[n]
            if units:
                buckets.append(self.buckets[n])
                amounts += limiter._bucket_args(n, repr(units))
                refunded = refunded or units < 0
        if not buckets:
            return False
        return self._best_effort("adjust", "0", amounts, limiter._script_keys(buckets)) and refunded

    def _best_effort(
        self, op: str, seconds: str, amounts: Sequence[str], keys: Sequence[str] | None = None
    ) -> bool:
        """Tell Redis what happened: True if it was told, False if it could not be reached
        (what happened is then lost, with a warning)."""
        limiter = self._limiter
        try:
            limiter._call(self._keys if keys is None else keys, (op, self.waiter, seconds, "0", *amounts))
        except UNAVAILABLE_ERRORS as error:
            limiter._unreachable(error, op)
            return False
        return True
