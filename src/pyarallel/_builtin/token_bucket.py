"""Built-in plugin: the rate limiter that ``rate_limit=RateLimit(...)`` (or a number) gives a
call, a private :class:`~pyarallel.Limiter` of that one limit.

Pacing is smooth: with the default ``burst=1``, one call every ``1 / rate`` seconds and
no burst, not even at the start (the first call goes at once, the second one interval
later), so a service counting calls in any sliding window never sees one too many.
"""

from __future__ import annotations

from pyarallel._options import RateLimit
from pyarallel.hookspecs import hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyarallel._limiting import Limiter


@hookimpl
def pyarallel_rate_limiter(rate_limit: object) -> Limiter | None:
    if isinstance(rate_limit, RateLimit):
        from pyarallel._limiting import Limiter  # with the first rate-limited call, not the plugin

        return Limiter(rate_limit)
    return None
