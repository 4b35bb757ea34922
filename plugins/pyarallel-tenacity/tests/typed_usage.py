"""A typed user's script: ``mypy --strict`` must accept it as it is (``test_typing`` checks
that, with ``--warn-unused-ignores``, so every ``type: ignore`` below must be needed: those
lines are the forms that are type errors by design). It also runs."""

from __future__ import annotations

import asyncio
import logging

import tenacity
from pyarallel_tenacity import TenacityRetry, from_tenacity
from tenacity import (
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_fixed,
)

import pyarallel
from pyarallel.contracts import RetryPolicy, RetrySpec

logger = logging.getLogger(__name__)

# The typed spelling: the strategies as keyword arguments; tenacity's defaults for the rest.
retry = TenacityRetry(
    stop=stop_after_attempt(5) | stop_after_delay(30),
    wait=wait_exponential(multiplier=0.01, max=0.05) + tenacity.wait_random(0, 0.01),
    retry=retry_if_exception_type((ConnectionError, TimeoutError)),
    before_sleep=tenacity.before_sleep_log(logger, logging.INFO),
)
# An existing tenacity object, wrapped.
wrapped = from_tenacity(tenacity.Retrying(stop=stop_after_attempt(3), wait=wait_fixed(0.01)))
wrapped_async = from_tenacity(tenacity.AsyncRetrying(stop=stop_after_attempt(3)))

# Both are RetrySpecs, whose policies are RetryPolicies.
spec: RetrySpec = retry
policy: RetryPolicy = wrapped.as_retry_policy()
retrying: tenacity.BaseRetrying = wrapped.retrying


def rejected_forms() -> None:
    """Type errors by design (never called: each would raise at run time too)."""
    TenacityRetry(before=tenacity.before_nothing)  # type: ignore[call-arg]  # not honoured: no such parameter
    TenacityRetry(retry_error_callback=lambda state: None)  # type: ignore[call-arg]
    TenacityRetry(stop=3)  # type: ignore[arg-type]
    from_tenacity(pyarallel.Retry())  # type: ignore[arg-type]
    pyarallel.parallel_map(str, [1], retry=tenacity.Retrying())  # type: ignore[arg-type]  # use from_tenacity()


attempts: dict[int, int] = {}


def fetch(item: int) -> int:
    attempts[item] = attempts.get(item, 0) + 1
    if attempts[item] < 2:
        raise ConnectionError(item)
    return item * 2


async def afetch(item: int) -> int:
    return fetch(item)


def main() -> None:
    result: pyarallel.ParallelResult[int] = pyarallel.parallel_map(fetch, range(4), workers=2, retry=retry)
    assert result.values() == [0, 2, 4, 6], result
    attempts.clear()
    result = pyarallel.parallel_map(fetch, range(4), workers=2, retry=wrapped)
    assert result.values() == [0, 2, 4, 6], result
    attempts.clear()
    result = asyncio.run(pyarallel.async_parallel_map(afetch, range(4), retry=wrapped_async))
    assert result.values() == [0, 2, 4, 6], result


if __name__ == "__main__":
    main()
