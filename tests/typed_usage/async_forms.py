"""Typed usage: every documented form of the async API (``async_parallel_map``,
``async_parallel_starmap``, ``async_parallel_iter`` and ``@async_parallel`` with its
``.map``, ``.starmap`` and ``.stream``), as a user's script checked with
``mypy --strict`` would write them.

Checked and run by ``tests/test_typed_usage.py``; not collected by pytest. Sources:
``README.md``, ``docs/guide.md`` section 10 and the docstrings of ``_async_api.py`` and
``_async_decorator.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any, assert_type

from pyarallel import (
    AsyncParallelFunction,
    ItemResult,
    ParallelResult,
    RateLimit,
    Retry,
    async_parallel,
    async_parallel_iter,
    async_parallel_map,
    async_parallel_starmap,
)


class Bar:
    """A progress bar whose ``update`` returns a value (as tqdm's and rich's do)."""

    def __init__(self) -> None:
        self.n = 0

    def update(self, n: int = 1) -> bool:
        self.n += n
        return True


async def lookup(key: str) -> str:
    await asyncio.sleep(0)
    return key.upper()


async def fetch(x: int) -> int:
    await asyncio.sleep(0.001 * (5 - x))
    if x == 3:
        raise ValueError("no 3")
    return x * 10


async def add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


async def numbers() -> AsyncIterator[int]:
    for i in range(4):
        yield i


class Client:
    """An object with an ``async def __call__``, and an async bound method."""

    async def __call__(self, x: int) -> int:
        return x

    async def get(self, x: int) -> str:
        return str(x)


# -- the functions ------------------------------------------------------------------------


async def function_forms() -> None:
    bar = Bar()
    assert_type(await async_parallel_map(lookup, ["a", "b", "c"], concurrency=2), ParallelResult[str])
    assert_type(await async_parallel_map(fetch, range(5), concurrency=3), ParallelResult[int])
    assert_type(
        await async_parallel_map(fetch, numbers(), concurrency=2, task_timeout=1.0), ParallelResult[int]
    )
    await async_parallel_map(
        fetch,
        [1, 2],
        concurrency=4,
        rate_limit=None,
        timeout=None,
        task_timeout=None,
        on_progress=None,
        batch_size=None,
        retry=None,
    )
    await async_parallel_map(
        fetch,
        [1, 2],
        concurrency=2,
        rate_limit=RateLimit(100, "second"),
        timeout=10.0,
        task_timeout=5,
        on_progress=lambda d, t: bar.update(1),  # a callback returning a value (issue 9)
        batch_size=10,
        retry=Retry(attempts=2, backoff=0, on=ConnectionError),  # a single class (issue 9)
    )
    await async_parallel_map(
        fetch, [1], rate_limit=100, on_progress=lambda done, total: print(f"{done}/{total}")
    )
    # fn: a partial of an async function, an object with an async __call__, a bound method.
    assert_type(await async_parallel_map(functools.partial(add, 1), [1, 2]), ParallelResult[int])
    assert_type(await async_parallel_map(Client(), [1]), ParallelResult[int])
    assert_type(await async_parallel_map(Client().get, [1]), ParallelResult[str])

    assert_type(await async_parallel_starmap(add, [(1, 2), (3, 4)]), ParallelResult[int])
    await async_parallel_starmap(
        add,
        [(1, 2)],
        concurrency=2,
        rate_limit=10,
        timeout=10.0,
        task_timeout=1.0,
        on_progress=lambda d, t: bar.update(1),
        batch_size=1,
        retry=Retry(on=(ConnectionError, TimeoutError)),
    )

    async for item in async_parallel_iter(fetch, range(3), concurrency=3):
        assert_type(item, ItemResult[int])
        assert_type(item.value, int | None)
        assert_type(item.error, BaseException | None)
        print(item.index, item.ok)
    async for item in async_parallel_iter(
        fetch,
        numbers(),
        concurrency=2,
        rate_limit=RateLimit(1000),
        task_timeout=1.0,
        batch_size=2,
        retry=Retry(backoff=0),
    ):
        print(item)

    # Closing a stream early: ``aclose()`` and ``contextlib.aclosing`` (guide, section 10).
    async with contextlib.aclosing(async_parallel_iter(fetch, range(100), concurrency=2)) as results:
        async for item in results:
            if item.ok:
                break
    stream = async_parallel_iter(fetch, range(100))
    await anext(stream)
    await stream.aclose()

    # The collecting calls are coroutines: asyncio's task functions take them.
    task = asyncio.ensure_future(async_parallel_map(fetch, [1]))
    assert_type(await task, ParallelResult[int])


# -- the decorator ------------------------------------------------------------------------


@async_parallel(concurrency=2)
async def twice(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@async_parallel
async def bare(x: int) -> int:
    return x


@async_parallel(
    concurrency=2,
    rate_limit=RateLimit(100),
    timeout=10.0,
    task_timeout=1.0,
    on_progress=lambda d, t: Bar().update(1),
    batch_size=10,
    retry=Retry(on=ConnectionError),
)
async def every_option(a: int, b: int = 0) -> int:
    return a + b


class Service:
    factor = 10

    def __init__(self, k: int) -> None:
        self.k = k

    @async_parallel(concurrency=2)
    async def scale(self, x: int) -> int:
        return x * self.k

    @staticmethod
    @async_parallel
    async def square(x: int) -> int:
        return x * x

    @async_parallel
    @classmethod
    async def times_factor(cls, x: int) -> int:
        return x * cls.factor


async def decorator_forms() -> None:
    bar = Bar()
    # Calling it returns the original coroutine.
    assert_type(await twice(3), int)
    assert_type(await bare(3), int)
    assert_type(await every_option(1, b=2), int)
    assert_type(await asyncio.create_task(twice(3)), int)

    assert_type(await twice.map([1, 2]), ParallelResult[int])
    assert_type(await twice.map(numbers()), ParallelResult[int])
    await twice.map(
        [1, 2],
        concurrency=3,
        rate_limit=10,
        timeout=5.0,
        task_timeout=1.0,
        on_progress=lambda d, t: bar.update(1),
        batch_size=1,
        retry=Retry(on=ConnectionError),
    )
    assert_type(await every_option.starmap([(1, 2), (3, 4)]), ParallelResult[int])
    await every_option.starmap([(1,)], concurrency=1, timeout=1.0)
    async for item in twice.stream([1, 2, 3]):
        assert_type(item, ItemResult[int])
    async for item in twice.stream(numbers(), concurrency=2, rate_limit=100, task_timeout=1.0, batch_size=2):
        print(item)
    async with contextlib.aclosing(twice.stream(range(100))) as results:
        async for item in results:
            break

    af: AsyncParallelFunction[[int], int] = twice
    anything: AsyncParallelFunction[..., Any] = every_option
    print(af, anything)

    # Methods bind like @parallel's.
    svc = Service(3)
    assert_type(await svc.scale(2), int)
    assert_type(await svc.scale.map([1, 2]), ParallelResult[int])
    assert_type(await Service.square(2), int)
    assert_type(await Service.square.map([1, 2]), ParallelResult[int])
    assert_type(await Service.times_factor(2), int)
    assert_type(await Service.times_factor.map([1, 2]), ParallelResult[int])
    assert_type(await svc.times_factor.map([1, 2]), ParallelResult[int])


async def amain() -> None:
    await function_forms()
    await decorator_forms()


def main() -> None:
    print(asyncio.run(async_parallel_map(lookup, ["a", "b", "c"], concurrency=2)))
    print(asyncio.run(twice(3)))  # "calling it returns the original coroutine"
    print(asyncio.run(twice.map([1, 2])))
    asyncio.run(amain())


if __name__ == "__main__":
    main()
