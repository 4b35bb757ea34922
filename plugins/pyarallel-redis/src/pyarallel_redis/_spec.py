"""``RedisRateLimit``: a Redis rate limit described by value, built into a
:class:`~pyarallel_redis.RedisLimiter` on first use.

This module imports neither redis nor the limiter until a limiter is built, so that the
plugin's entry point (which checks for this class) costs nothing to load.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from pyarallel import RateLimit
from pyarallel_redis._validation import as_rate_limit, check_name, check_positive_number

if TYPE_CHECKING:
    from pyarallel_redis._limiter import OnUnavailable, RedisLimiter

__all__ = ["RedisRateLimit"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"  # as pyarallel_redis._limiter.DEFAULT_URL


class RedisRateLimit:
    """A shared rate limit in Redis, as a value: ``RedisRateLimit(RateLimit(50), name="api",
    url="redis://cache:6379/0")``. A :class:`pyarallel.contracts.RateLimitSpec`: pass it as
    ``rate_limit=`` (the plugin's hook, or pyarallel's own handling of specs, asks it for
    its limiter).

    It takes the arguments of :class:`~pyarallel_redis.RedisLimiter` except ``client`` (a
    spec holds no connection), checked at once. The limiter is built on first use, once
    per spec: every call given the same spec uses the same limiter and connection pool, and
    equal specs in other processes share its budget in Redis (the budget is the ``name``'s,
    not the object's). Making a spec connects to nothing, so it suits
    ``@pyarallel.parallel(rate_limit=...)`` at import time.
    """

    __slots__ = ("_built", "_lock", "limits", "name", "on_unavailable", "timeout", "url")

    def __init__(
        self,
        *limits: RateLimit | float,
        url: str = DEFAULT_URL,
        name: str = "default",
        on_unavailable: OnUnavailable = "fail_closed",
        timeout: float = 0.5,
    ) -> None:
        if not limits:
            raise ValueError(
                "RedisRateLimit needs at least one limit, e.g. RedisRateLimit(RateLimit(10), name=...)"
            )
        self.limits = tuple(as_rate_limit(limit, n, "RedisRateLimit") for n, limit in enumerate(limits))
        if not isinstance(url, str):
            raise TypeError(f"RedisRateLimit url must be a string such as {DEFAULT_URL!r}; got {url!r}")
        self.url = url
        self.name = check_name(name)
        if on_unavailable not in ("fail_closed", "fail_open"):
            raise ValueError(
                f'RedisRateLimit on_unavailable must be "fail_closed" or "fail_open"; got {on_unavailable!r}'
            )
        self.on_unavailable: OnUnavailable = on_unavailable
        self.timeout = check_positive_number("RedisRateLimit timeout", timeout)
        self._lock = threading.Lock()
        self._built: RedisLimiter | None = None

    def as_rate_limiter(self) -> RedisLimiter:
        """This spec's limiter (the same object every time)."""
        with self._lock:
            if self._built is None:
                from pyarallel_redis._limiter import RedisLimiter

                self._built = RedisLimiter(
                    *self.limits,
                    url=self.url,
                    name=self.name,
                    on_unavailable=self.on_unavailable,
                    timeout=self.timeout,
                )
            return self._built

    def _value(self) -> tuple[object, ...]:
        return (self.limits, self.url, self.name, self.on_unavailable, self.timeout)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RedisRateLimit):
            return NotImplemented
        return self._value() == other._value()

    def __hash__(self) -> int:
        return hash(self._value())

    def __repr__(self) -> str:
        limits = ", ".join(map(repr, self.limits))
        return (
            f"RedisRateLimit({limits}, url={self.url!r}, name={self.name!r}, "
            f"on_unavailable={self.on_unavailable!r}, timeout={self.timeout!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, self._value())


def _rebuild(
    limits: tuple[RateLimit, ...], url: str, name: str, on_unavailable: OnUnavailable, timeout: float
) -> RedisRateLimit:
    return RedisRateLimit(*limits, url=url, name=name, on_unavailable=on_unavailable, timeout=timeout)
