"""Built-in plugin: rate limiters, retry policies and plugin specs passed as they are.

``rate_limit=`` accepts a :class:`~pyarallel.contracts.RateLimiter` (used as it is, so
calls given the same object share one budget) or a
:class:`~pyarallel.contracts.RateLimitSpec` (asked for the limiter of each call);
``retry=`` accepts a :class:`~pyarallel.contracts.RetryPolicy` or a
:class:`~pyarallel.contracts.RetrySpec` the same way. Registered last (``trylast``), so a
plugin that wants to handle such an object itself is asked first.
"""

from __future__ import annotations

from pyarallel.contracts import RateLimiter, RateLimitSpec, RetryPolicy, RetrySpec
from pyarallel.hookspecs import hookimpl


@hookimpl(trylast=True)
def pyarallel_rate_limiter(rate_limit: object) -> RateLimiter | None:
    if isinstance(rate_limit, RateLimitSpec):
        return rate_limit.as_rate_limiter()
    return rate_limit if isinstance(rate_limit, RateLimiter) else None


@hookimpl(trylast=True)
def pyarallel_retry_policy(retry: object) -> RetryPolicy | None:
    if isinstance(retry, RetrySpec):
        return retry.as_retry_policy()
    return retry if isinstance(retry, RetryPolicy) else None
