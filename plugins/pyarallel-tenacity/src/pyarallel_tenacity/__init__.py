"""pyarallel-tenacity: tenacity's stop, wait and retry strategies as pyarallel's per-item
retry policy.

Installed, it lets ``retry=tenacity.Retrying(...)`` (or ``tenacity.AsyncRetrying(...)``)
be passed to ``parallel_map`` & co. For code checked with mypy, :class:`TenacityRetry`
and :func:`from_tenacity` are the typed spellings of the same thing (a
:class:`pyarallel.contracts.RetrySpec`).

Names are loaded on first access: pyarallel imports this package to register the plugin,
and that must not import tenacity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyarallel_tenacity._policy import (
        RetryStrategy,
        StateCallback,
        StopStrategy,
        TenacityPolicy,
        TenacityRetry,
        WaitStrategy,
        from_tenacity,
    )

__version__ = "0.1.0"

__all__ = [
    "RetryStrategy",
    "StateCallback",
    "StopStrategy",
    "TenacityPolicy",
    "TenacityRetry",
    "WaitStrategy",
    "from_tenacity",
]


def __getattr__(name: str) -> object:
    if name in __all__:
        from pyarallel_tenacity import _policy

        value = getattr(_policy, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
