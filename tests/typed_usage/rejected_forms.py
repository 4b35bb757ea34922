"""Typed usage: forms that must be type errors. Every line below is a call the
documentation says raises ``TypeError`` (or a plain misuse of a typed signature) and
carries ``# type: ignore[<code>]`` with the error mypy must report. ``mypy --strict``
includes ``--warn-unused-ignores``, so a bad form that type-checks fails the check (as
"unused type: ignore"), and so does one rejected for another reason (a different code).

Checked by ``tests/test_typed_usage.py``; never run (every line would raise) and not
collected by pytest.
"""

from __future__ import annotations

from pyarallel import (
    ItemResult,
    Limiter,
    RateLimit,
    Retry,
    async_parallel,
    async_parallel_iter,
    async_parallel_map,
    parallel,
    parallel_iter,
    parallel_map,
    parallel_starmap,
)
from pyarallel.contracts import RetryDecision


def double_plain(x: int) -> int:
    return 2 * x


@parallel
def double(x: int) -> int:
    return 2 * x


@parallel(workers=4)
def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


class Service:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    @parallel(workers=4)
    def process(self, item: int) -> int:
        return item + self.offset


@async_parallel
async def twice(x: int) -> int:
    return 2 * x


def one_argument(done: int) -> None:
    print(done)


class OldLimiter:
    """A limiter of the old contract: ``try_acquire()`` and no ``request(item)``."""

    def try_acquire(self) -> float:
        return 0.0


def rejected_calls() -> None:
    # Option values of the wrong type (guide, section 11).
    parallel_map(double_plain, [1], workers="4")  # type: ignore[arg-type]
    parallel_map(double_plain, [1], timeout="1")  # type: ignore[arg-type]
    parallel_map(double_plain, [1], batch_size=2.5)  # type: ignore[arg-type]
    parallel_map(double_plain, [1], rate_limit="10")  # type: ignore[arg-type]
    # An object that is no limiter, policy or spec (nothing a plugin declares).
    parallel_map(double_plain, [1], retry=3)  # type: ignore[arg-type]
    parallel_map(double_plain, [1], retry=lambda attempt: 1.0)  # type: ignore[arg-type]
    parallel_map(double_plain, [1], rate_limit=object())  # type: ignore[arg-type]
    parallel_map(double_plain, [1], rate_limit=OldLimiter())  # type: ignore[arg-type]
    parallel_map(double_plain, [1], on_progress=one_argument)  # type: ignore[arg-type]
    parallel_starmap(double_plain, [(1,)], workers="4")  # type: ignore[arg-type]
    parallel_iter(double_plain, [1], workers="4")  # type: ignore[arg-type]

    # Options a call does not take: a stream has no timeout and no on_progress; the async
    # API has concurrency, not workers.
    parallel_iter(double_plain, [1], timeout=1.0)  # type: ignore[call-arg]
    parallel_iter(double_plain, [1], on_progress=print)  # type: ignore[call-arg]
    parallel_map(double_plain, [1], worker=2)  # type: ignore[call-arg]
    async_parallel_iter(twice, [1], timeout=1.0)  # type: ignore[call-arg]

    # The async API takes async functions only.
    async_parallel_iter(double_plain, [1])  # type: ignore[arg-type]

    # RateLimit and Retry.
    RateLimit(10, "day")  # type: ignore[arg-type]
    RateLimit("10")  # type: ignore[arg-type]
    Retry(attempts="3")  # type: ignore[arg-type]
    Retry(on=5)  # type: ignore[arg-type]
    Retry(on=[ConnectionError])  # type: ignore[arg-type]
    Retry(on=int)  # type: ignore[arg-type]
    Limiter("10")  # type: ignore[arg-type]
    RetryDecision(1.0, pause_run=True)  # type: ignore[call-arg]
    RetryDecision(1.0, True)  # type: ignore[call-arg]

    # A decorated function keeps its signature.
    double("a")  # type: ignore[arg-type]
    greet(1)  # type: ignore[arg-type]
    greet("ada", punctuation=1)  # type: ignore[arg-type]
    Service(1).process("a")  # type: ignore[arg-type]
    twice("a")  # type: ignore[arg-type, unused-coroutine]
    bad: str = double(1)  # type: ignore[assignment]
    print(bad)

    # Overrides of .map/.starmap/.stream are checked like the functions' options.
    double.map([1], worker=2)  # type: ignore[call-arg]
    double.map([1], workers="4")  # type: ignore[arg-type]
    double.starmap([(1,)], timeout="1")  # type: ignore[arg-type]
    double.stream([1], timeout=1.0)  # type: ignore[call-arg]
    double.stream([1], on_progress=print)  # type: ignore[call-arg]
    twice.stream([1], timeout=1.0)  # type: ignore[call-arg]

    # Decorator options.
    parallel(workers="4")  # type: ignore[call-overload]
    async_parallel(workers=2)  # type: ignore[call-overload]

    # Results and options are immutable.
    result = parallel_map(double_plain, [1])
    result[0] = 3  # type: ignore[index]
    item = ItemResult.success(0, 1)
    item.value = 2  # type: ignore[misc]
    limit = RateLimit(10)
    limit.count = 5  # type: ignore[misc]
    retry = Retry()
    retry.attempts = 5  # type: ignore[misc]


async def rejected_awaited_calls() -> None:
    await async_parallel_map(twice, [1], workers=2)  # type: ignore[call-arg]
    await async_parallel_map(double_plain, [1])  # type: ignore[arg-type]
    await twice.map([1], workers=2)  # type: ignore[call-arg]
    await twice.starmap([(1,)], timeout="1")  # type: ignore[arg-type]
