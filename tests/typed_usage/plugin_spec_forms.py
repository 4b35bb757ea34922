"""Typed usage: a plugin's objects passed straight to ``rate_limit=`` and ``retry=``: a
``RateLimiter`` or ``RetryPolicy`` object, and a ``RateLimitSpec`` or ``RetrySpec`` spec,
in every call form (the functions, the decorators and their per-call overrides, sync and
async), as a user's script checked with ``mypy --strict`` would write them.

Checked and run by ``tests/test_typed_usage.py``; not collected by pytest. Source:
``docs/plugins.md`` (Contracts, Typing note).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from pyarallel import (
    ItemResult,
    Limiter,
    RateLimit,
    async_parallel,
    async_parallel_iter,
    async_parallel_map,
    parallel,
    parallel_iter,
    parallel_map,
    parallel_starmap,
)
from pyarallel.contracts import FailedAttempt, RateLimiter, Reservation, RetryDecision, RetryPolicy


class Granted:
    """A reservation of one's own: granted at once, nothing to reconcile."""

    lane: Hashable = None

    def try_acquire(self) -> float:
        return 0.0

    def cancel(self) -> None:
        pass

    def finished(self, result: ItemResult[Any]) -> None:
        pass

    def throttled(self, pause: float | None) -> None:
        pass


class Unlimited:
    """A rate limiter of one's own: grants every call."""

    def request(self, item: object) -> Reservation:
        return Granted()


class TwoTries:
    """A retry policy of one's own: one retry, after no delay, pausing what shares the
    quota (and telling the limiter the service throttled the call)."""

    def decide(self, failed: FailedAttempt) -> RetryDecision | None:
        # never more retries in the run than calls: a budget of the run's own
        if failed.attempt < 2 and failed.run_retries < failed.run_calls:
            return RetryDecision(0.0, pause=True)
        return None


class Throttled:
    """A retry policy of one's own that tells an adaptive limiter to slow down, without a pause."""

    def decide(self, failed: FailedAttempt) -> RetryDecision | None:
        return RetryDecision(0.0, throttled=True) if failed.attempt < 2 else None


@dataclass(frozen=True)
class UnlimitedSpec:
    """A plugin's rate-limit spec."""

    def as_rate_limiter(self) -> RateLimiter:
        return Unlimited()


@dataclass(frozen=True)
class TwoTriesSpec:
    """A plugin's retry spec."""

    def as_retry_policy(self) -> RetryPolicy:
        return TwoTries()


def double(x: int) -> int:
    return 2 * x


def add(a: int, b: int) -> int:
    return a + b


async def triple(x: int) -> int:
    return 3 * x


assert parallel_map(double, [1, 2], rate_limit=Unlimited(), retry=TwoTries()).values() == [2, 4]
assert parallel_map(double, [1, 2], rate_limit=UnlimitedSpec(), retry=TwoTriesSpec()).values() == [2, 4]
assert parallel_starmap(add, [(1, 2)], rate_limit=Unlimited(), retry=TwoTriesSpec()).values() == [3]
stream = parallel_iter(double, [1, 2], rate_limit=UnlimitedSpec(), retry=TwoTries())
assert sorted(r.index for r in stream) == [0, 1]


@parallel(rate_limit=Unlimited(), retry=TwoTriesSpec())
def quadruple(x: int) -> int:
    return 4 * x


assert quadruple.map([1], rate_limit=UnlimitedSpec(), retry=TwoTries()).values() == [4]
assert [r.value for r in quadruple.stream([1], retry=TwoTriesSpec())] == [4]


@async_parallel(rate_limit=UnlimitedSpec(), retry=TwoTries())
async def quintuple(x: int) -> int:
    return 5 * x


async def main() -> None:
    result = await async_parallel_map(triple, [1], rate_limit=Unlimited(), retry=TwoTriesSpec())
    assert result.values() == [3]
    async with async_parallel_iter(triple, [1], rate_limit=UnlimitedSpec(), retry=TwoTries()) as stream:
        assert [r.value async for r in stream] == [3]
    assert (await quintuple.map([1], retry=TwoTriesSpec(), rate_limit=Unlimited())).values() == [5]


asyncio.run(main())

# The built-in limiter is a RateLimiter too; one object shares its budget between calls.
shared = Limiter(RateLimit(1000), RateLimit(60_000, "minute"), adaptive=True)
limiter: RateLimiter = shared
assert parallel_map(double, [1, 2], rate_limit=shared, retry=Throttled()).values() == [2, 4]
assert quadruple.map([1], rate_limit=limiter, retry=TwoTries()).values() == [4]
assert asyncio.run(async_parallel_map(triple, [1], rate_limit=shared)).values() == [3]
