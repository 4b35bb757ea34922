"""Built-in plugin: the exponential-backoff retry policy that ``Retry`` configures."""

from __future__ import annotations

from pyarallel._options import RETRY_BUDGET_FLOOR, Retry, _as_float
from pyarallel.contracts import FailedAttempt, RetryDecision
from pyarallel.hookspecs import hookimpl

THROTTLE_STATUS = 429  # Too Many Requests: the service throttles the caller


class ExponentialBackoff:
    """Retries up to ``retry.attempts`` attempts in all, waiting
    ``min(backoff * 2 ** (n - 1), max_delay)`` after failed attempt ``n``, multiplied by a
    random factor in [0.5, 1.0] when ``retry.jitter`` is set. Only exceptions matching
    ``retry.on`` (every ``Exception`` when neither ``on`` nor ``statuses`` is given) or
    carrying one of ``retry.statuses`` are retried, within ``retry.budget``. A wait
    ``retry.wait_from`` reads from the exception replaces the backoff and pauses what
    shares the quota; a 429 is reported as a throttle.
    """

    def __init__(self, retry: Retry) -> None:
        self.retry = retry
        if retry.on is not None:
            self._retry_on: tuple[type[BaseException], ...] = retry.on
        else:
            self._retry_on = () if retry.statuses is not None else (Exception,)

    def decide(self, failed: FailedAttempt) -> RetryDecision | float | None:
        retry, error = self.retry, failed.error
        status = _status(error) if retry.statuses is not None else None
        if failed.attempt >= retry.attempts or not self._retries(error, status):
            return None
        if retry.budget is not None and failed.run_retries >= max(
            RETRY_BUDGET_FLOOR, retry.budget * failed.run_calls
        ):
            return None
        throttled = status == THROTTLE_STATUS
        asked = retry.wait_from(error) if retry.wait_from is not None else None
        if asked is not None:
            return _asked_wait(retry, asked)
        delay = retry.delay(failed.attempt)
        if retry.jitter:
            import random  # on the first retry, not with the plugin: a first call needs no random numbers

            delay *= random.uniform(0.5, 1.0)
        return RetryDecision(delay, throttled=True) if throttled else delay

    def _retries(self, error: BaseException, status: int | None) -> bool:
        statuses = self.retry.statuses
        return isinstance(error, self._retry_on) or (statuses is not None and status in statuses)


def _status(error: BaseException) -> int | None:
    from pyarallel._http_errors import http_status

    return http_status(error)


def _asked_wait(retry: Retry, asked: object) -> RetryDecision:
    """The decision for a wait the service asked for (``wait_from``): that long, pausing."""
    if isinstance(asked, bool) or not isinstance(asked, int | float) or not asked >= 0:
        raise TypeError(
            f"Retry wait_from={retry.wait_from!r} returned {asked!r}; it must return None or a "
            "number of seconds >= 0"
        )
    return RetryDecision(_as_float(asked), pause=True, throttled=True)


@hookimpl
def pyarallel_retry_policy(retry: object) -> ExponentialBackoff | None:
    return ExponentialBackoff(retry) if isinstance(retry, Retry) else None
