"""Built-in plugin: the exponential-backoff retry policy that ``Retry`` configures."""

from __future__ import annotations

from pyarallel._options import Retry
from pyarallel.contracts import FailedAttempt
from pyarallel.hookspecs import hookimpl


class ExponentialBackoff:
    """Retries up to ``retry.attempts`` attempts in all, waiting
    ``min(backoff * 2 ** (n - 1), max_delay)`` after failed attempt ``n``, multiplied by a
    random factor in [0.5, 1.0] when ``retry.jitter`` is set. Only exceptions matching
    ``retry.on`` (every ``Exception`` when ``None``) are retried.
    """

    def __init__(self, retry: Retry) -> None:
        self.retry = retry
        self._retry_on: tuple[type[BaseException], ...] = retry.on if retry.on is not None else (Exception,)

    def decide(self, failed: FailedAttempt) -> float | None:
        attempt = failed.attempt
        if attempt >= self.retry.attempts or not isinstance(failed.error, self._retry_on):
            return None
        delay = self.retry.delay(attempt)
        if self.retry.jitter:
            import random  # on the first retry, not with the plugin: a first call needs no random numbers

            delay *= random.uniform(0.5, 1.0)
        return delay


@hookimpl
def pyarallel_retry_policy(retry: object) -> ExponentialBackoff | None:
    return ExponentialBackoff(retry) if isinstance(retry, Retry) else None
