"""pyarallel-redis: a rate limiter shared by many processes and hosts through one Redis
server, with the semantics of :class:`pyarallel.Limiter` (burst, composite, weighted and
keyed limits, pauses, ``settle=``).

- :class:`RedisLimiter`: a :class:`pyarallel.contracts.RateLimiter`; pass it as
  ``rate_limit=``. Every process using the same ``name`` and limits shares one budget.
- :class:`RedisRateLimit`: the same as a value (a :class:`pyarallel.contracts.RateLimitSpec`),
  built into its limiter on first use.

Names are loaded on first access: pyarallel imports this package to register the plugin,
and that must not import redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyarallel_redis._limiter import (
        DEFAULT_URL,
        UNAVAILABLE_ERRORS,
        UNAVAILABLE_WAIT,
        OnUnavailable,
        RedisClient,
        RedisLimiter,
        RedisReservation,
    )
    from pyarallel_redis._spec import RedisRateLimit

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "UNAVAILABLE_ERRORS",
    "UNAVAILABLE_WAIT",
    "OnUnavailable",
    "RedisClient",
    "RedisLimiter",
    "RedisRateLimit",
    "RedisReservation",
]

_SPEC_NAMES = ("RedisRateLimit",)


def __getattr__(name: str) -> object:
    if name in __all__:
        import importlib

        module = importlib.import_module(
            "pyarallel_redis._spec" if name in _SPEC_NAMES else "pyarallel_redis._limiter"
        )
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
