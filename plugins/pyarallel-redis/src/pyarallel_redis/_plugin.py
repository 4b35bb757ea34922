"""The ``pyarallel`` entry point: ``rate_limit=RedisRateLimit(...)`` becomes its
:class:`~pyarallel_redis.RedisLimiter`.

pyarallel would serve the spec without this hook too (it is a ``RateLimitSpec``); the
hook makes the plugin visible in ``pyarallel plugins`` and answers before pyarallel's
generic handling. A ``RedisLimiter`` object passed as ``rate_limit=`` needs no hook at all.

Registered when pyarallel builds its plugin manager, so this module imports neither redis
nor the rest of this package: a ``RedisRateLimit`` can only exist once its module has been
imported, and a process that never uses Redis pays nothing for this plugin.
"""

from __future__ import annotations

import sys

import pyarallel
from pyarallel.contracts import RateLimiter


@pyarallel.hookimpl
def pyarallel_rate_limiter(rate_limit: object) -> RateLimiter | None:
    spec = sys.modules.get("pyarallel_redis._spec")
    if spec is None or not isinstance(rate_limit, spec.RedisRateLimit):
        return None
    limiter: RateLimiter = rate_limit.as_rate_limiter()
    return limiter
