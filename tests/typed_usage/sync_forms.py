"""Typed usage: every documented call form of the blocking functions, ``RateLimit``,
``Retry``, ``ParallelResult`` and ``ItemResult``, as a user's script checked with
``mypy --strict`` would write them.

Checked by ``tests/test_typed_usage.py`` (mypy must accept every line, and the
``assert_type`` calls pin the inferred types) and run by it too, so every form here also
works at run time. Not collected by pytest (no ``test_`` prefix).

Sources: the API reference (``pyarallel-api-core``), ``README.md``, ``docs/guide.md``
and the docstrings of ``_api.py``, ``_result.py`` and ``_options.py``.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, assert_type

from pyarallel import (
    ItemResult,
    ItemTimeoutError,
    ParallelResult,
    RateLimit,
    Retry,
    RunStatus,
    WorkerCrashedError,
    parallel_iter,
    parallel_map,
    parallel_starmap,
)

# -- stand-ins for the user's functions of the examples ----------------------------------


def double(x: int) -> int:
    return 2 * x


def fetch(url: str) -> dict[str, int]:
    return {"length": len(url)}


def add(a: int, b: int) -> int:
    return a + b


def fetch_with_auth(url: str, token: str) -> str:
    return f"{url}?token={token}"


def check(x: int) -> int:
    if x % 3 == 0:
        raise ValueError(f"bad {x}")
    return x


def lines() -> Iterator[str]:
    for i in range(20):
        yield f"line {i}"


class Bar:
    """A progress bar whose ``update`` returns a value (as tqdm's and rich's do)."""

    def __init__(self) -> None:
        self.n = 0

    def update(self, n: int = 1) -> bool:
        self.n += n
        return True


class Scaler:
    """A callable object, and a bound method, as ``fn``."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, x: int) -> int:
        return x * self.k

    def scale(self, x: int) -> float:
        return x * self.k / 2


def log_error(index: int, error: BaseException | None) -> None:
    print("item", index, "failed:", error)


URLS = [f"https://example.org/item/{i}" for i in range(4)]


# -- parallel_map -------------------------------------------------------------------------


def parallel_map_forms() -> None:
    # Every option, spelled out with its default (the API reference's signature).
    assert_type(
        parallel_map(
            fetch,
            URLS,
            workers=None,
            executor="thread",
            rate_limit=None,
            timeout=None,
            on_progress=None,
            batch_size=None,
            retry=None,
        ),
        ParallelResult[dict[str, int]],
    )
    assert_type(parallel_map(double, [1]), ParallelResult[int])
    assert_type(parallel_map(fetch, URLS, workers=10), ParallelResult[dict[str, int]])
    parallel_map(fetch, URLS[:1], rate_limit=RateLimit(100, "minute"))
    parallel_map(fetch, URLS[:1], rate_limit=10)  # 10 per second
    parallel_map(fetch, URLS[:1], rate_limit=2.5)
    parallel_map(fetch, URLS, timeout=60.0, on_progress=lambda d, t: print(f"{d}/{t}"))
    parallel_map(fetch, URLS, timeout=60)  # an int timeout
    parallel_map(fetch, URLS, timeout=float("inf"))
    parallel_map(str.upper, lines(), workers=8, batch_size=5)  # batched unsized input
    parallel_map(fetch, URLS, workers=10, retry=Retry(attempts=3, backoff=1.0))
    parallel_map(
        fetch,
        URLS,
        workers=10,
        rate_limit=RateLimit(6000, "minute"),
        retry=Retry(attempts=3, backoff=1.0),
        batch_size=500,
    )

    # Executors: the two names, and an executor object.
    parallel_map(double, [1, 2], executor="process", workers=2)
    offset = 7
    parallel_map(lambda n: sum(i * i for i in range(n)) + offset, [10, 100], executor="process", workers=2)
    with ThreadPoolExecutor(max_workers=3) as pool:
        parallel_map(abs, [-1, -2, -3], executor=pool)
        assert_type(parallel_map(double, [1], executor=pool, workers=2), ParallelResult[int])

    # Any callable as fn: a lambda, a builtin, a method, a bound method, a partial, an
    # object with __call__.
    squares = parallel_map(lambda x: x * x, range(5))
    print(squares, squares == [0, 1, 4, 9, 16])
    assert_type(parallel_map(str.upper, ["a"]), ParallelResult[str])
    assert_type(parallel_map(Scaler(3).scale, [1]), ParallelResult[float])
    assert_type(parallel_map(Scaler(3), [1]), ParallelResult[int])
    assert_type(parallel_map(functools.partial(add, 1), [1, 2]), ParallelResult[int])
    assert_type(parallel_map(time.sleep, [0, 0.01], workers=2, timeout=5), ParallelResult[None])

    # Any iterable as items: list, tuple, range, set, dict (its keys), generator.
    parallel_map(double, (1, 2))
    parallel_map(double, range(3))
    parallel_map(double, {1, 2})
    parallel_map(double, {1: "a", 2: "b"})
    parallel_map(double, (x for x in range(3)))


# -- on_progress --------------------------------------------------------------------------


def on_progress_forms() -> None:
    bar = Bar()
    calls: list[tuple[int, int]] = []

    def callback(done: int, total: int) -> None:
        print(done, total)

    def returning_callback(done: int, total: int) -> int:
        return done

    parallel_map(double, [1, 2], on_progress=callback)
    parallel_map(double, [1, 2], on_progress=lambda done, total: print(f"{done}/{total}", end=" "))
    parallel_map(abs, [1, 2, 3], on_progress=lambda done, total: calls.append((done, total)))
    parallel_map(
        abs, (x for x in range(3)), batch_size=2, workers=1, on_progress=lambda d, t: calls.append((d, t))
    )
    # A callback's return value is ignored, so a callback returning something is fine
    # (issue 9: accept ``Callable[[int, int], object]``).
    parallel_map(double, [1, 2], on_progress=lambda d, t: bar.update(1))
    parallel_map(double, [1, 2], on_progress=returning_callback)
    parallel_starmap(add, [(1, 2)], on_progress=lambda d, t: bar.update(1))


# -- parallel_starmap ---------------------------------------------------------------------


def parallel_starmap_forms() -> None:
    assert_type(parallel_starmap(add, [(1, 2), (3, 4), (5, 6)]), ParallelResult[int])
    parallel_starmap(pow, [(2, 3), (3, 2)])
    assert_type(
        parallel_starmap(
            fetch_with_auth, [(url, "token") for url in URLS], workers=10, retry=Retry(attempts=3)
        ),
        ParallelResult[str],
    )
    parallel_starmap(add, [[1, 2], [3, 4]])  # each item any iterable of arguments
    parallel_starmap(
        add,
        [(1, 2)],
        workers=2,
        executor="thread",
        rate_limit=RateLimit(100),
        timeout=10.0,
        on_progress=lambda d, t: None,
        batch_size=10,
        retry=Retry(),
    )


# -- parallel_iter ------------------------------------------------------------------------


def parallel_iter_forms() -> None:
    saved: list[int] = []
    for item in parallel_iter(double, range(10), workers=4, batch_size=1000):
        assert_type(item, ItemResult[int])
        if item.ok:
            assert_type(item.value, int | None)
            if item.value is not None:
                saved.append(item.value)
        else:
            log_error(item.index, item.error)

    for line_length in parallel_iter(len, lines(), workers=4, batch_size=1000):
        assert_type(line_length, ItemResult[int])

    parallel_iter(
        double,
        [1],
        workers=None,
        executor="thread",
        rate_limit=RateLimit(10),
        batch_size=None,
        retry=Retry(attempts=2),
    )
    parallel_iter(double, [1], rate_limit=10, executor="process")

    # Closing a stream early: ``close()`` and ``contextlib.closing`` (guide, section 7).
    def numbers() -> Iterator[int]:
        yield from range(1_000)

    with contextlib.closing(parallel_iter(lambda x: x * x, numbers(), workers=4, batch_size=100)) as results:
        for item in results:
            if item.ok and item.value is not None and item.value > 100:
                break
    stream = parallel_iter(double, numbers())
    next(stream)
    stream.close()


# -- RateLimit ----------------------------------------------------------------------------


def rate_limit_forms() -> None:
    RateLimit(10)  # 10 per second
    RateLimit(100, "minute")
    RateLimit(1000, "hour")
    RateLimit(0.5)  # count may be fractional
    RateLimit(count=100, per="second")
    assert_type(RateLimit(100, "minute").per_second, float)
    assert_type(RateLimit(10).count, float)


# -- Retry --------------------------------------------------------------------------------


def retry_forms() -> None:
    Retry()
    Retry(attempts=3, backoff=1.0)
    Retry(attempts=3)
    Retry(attempts=2, backoff=0)
    Retry(attempts=5, backoff=0.5, max_delay=5.0, jitter=False)
    Retry(attempts=3, backoff=0.1, on=(ConnectionError,))
    Retry(on=(ConnectionError, TimeoutError))
    Retry(on=None)
    # A single class (guide: "normalised to a one-element tuple"; issue 9).
    Retry(on=ConnectionError)
    Retry(on=KeyError)
    # BaseException subclasses too (guide, section 13).
    Retry(on=KeyboardInterrupt)
    Retry(on=(SystemExit, ValueError))
    # ``on`` reads back as the normalised tuple.
    assert_type(Retry(on=KeyError).on, tuple[type[BaseException], ...] | None)
    assert_type(Retry(attempts=5, backoff=0.5, max_delay=3).delay(4), float)
    assert_type(Retry().attempts, int)

    parallel_map(fetch, URLS, retry=Retry())
    parallel_map(fetch, URLS, retry=Retry(on=(ConnectionError, TimeoutError)))
    parallel_map(fetch, URLS, retry=Retry(on=ConnectionError))
    parallel_map(fetch, URLS, retry=Retry(attempts=5, backoff=0.5, max_delay=5.0, jitter=False))


# -- ParallelResult -----------------------------------------------------------------------


def parallel_result_forms() -> None:
    result = parallel_map(check, range(7), workers=4)
    assert_type(result, ParallelResult[int])
    assert_type(result.ok, bool)
    assert_type(result.status, RunStatus)
    assert_type(result.successes(), list[tuple[int, int]])
    # Failures can hold a BaseException (SystemExit raised by fn; issue 9).
    assert_type(result.failures(), list[tuple[int, BaseException]])
    assert_type(len(result), int)
    assert_type(bool(result), bool)
    print(repr(result), result.status == RunStatus.COMPLETED, result.status == "timed_out")

    if result.ok:
        for value in result:
            assert_type(value, int)
    else:
        for idx, value in result.successes():
            print(idx, value)
        for idx, error in result.failures():
            assert_type(error, BaseException)
            log_error(idx, error)

    try:
        assert_type(result.raise_on_failure(), None)
    except ExceptionGroup as group:
        print(group.message, [str(e) for e in group.exceptions])

    good = parallel_map(double, [1, 2, 3])
    assert_type(good.values(), list[int])
    assert_type(good[0], int)
    assert_type(good[-1], int)
    assert_type(good[0:2], list[int])
    assert_type(list(good), list[int])
    assert_type(2 in good, bool)
    print(good == [2, 4, 6], good == (2, 4, 6), good == good)
    print(max(good), sum(good), sorted(good))

    try:
        result.values()  # so do result[i] and iterating: they need every value
    except ExceptionGroup as group:
        print(group.message)

    timed = parallel_map(time.sleep, [0, 0.01, 2, 2], workers=2, timeout=0.3)
    print(timed.status is RunStatus.TIMED_OUT)
    for index, error in timed.failures():
        if isinstance(error, ItemTimeoutError):
            assert_type(error.index, int)
        print(index, isinstance(error, TimeoutError), error)
    crashed = timed.failures()
    if crashed and isinstance(crashed[0][1], WorkerCrashedError):
        print(crashed[0][1].index)

    # The public constructor, from item results in any order.
    built = ParallelResult([ItemResult.success(1, "b"), ItemResult.success(0, "a")])
    assert_type(built, ParallelResult[str])
    assert_type(built.values(), list[str])
    assert_type(ParallelResult([ItemResult(0, value=1)], status=RunStatus.COMPLETED), ParallelResult[int])


# -- ItemResult ---------------------------------------------------------------------------


def item_result_forms() -> None:
    item = ItemResult.success(0, 42)
    assert_type(item, ItemResult[int])
    assert_type(item.index, int)
    assert_type(item.ok, bool)
    assert_type(item.value, int | None)
    assert_type(item.error, BaseException | None)
    print(repr(item), item == ItemResult(0, 42), hash(item))

    failed: ItemResult[int] = ItemResult.failure(3, ValueError("bad"))
    assert_type(failed.error, BaseException | None)
    interrupted: ItemResult[Any] = ItemResult.failure(4, KeyboardInterrupt())
    if not interrupted.ok and interrupted.error is not None:
        log_error(interrupted.index, interrupted.error)
    ItemResult(5, value=None)  # a success whose value is legitimately None
    ItemResult(6, error=SystemExit(1))

    # What a stream yields has the same members and types.
    for streamed in parallel_iter(check, range(4)):
        assert_type(streamed.error, BaseException | None)
        assert_type(streamed.value, int | None)


def main() -> None:
    parallel_map_forms()
    on_progress_forms()
    parallel_starmap_forms()
    parallel_iter_forms()
    rate_limit_forms()
    retry_forms()
    parallel_result_forms()
    item_result_forms()


if __name__ == "__main__":
    main()
