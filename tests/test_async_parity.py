"""The async API's parity with the sync one (issue 9, defects 5 and 6).

- A work item raising a ``BaseException`` (``SystemExit``, ``KeyboardInterrupt``, a
  custom subclass) fails only that item, as on threads: the call returns, the item's
  failure is that very exception, the other items succeed, and the event loop is never
  told of a task exception nobody retrieved. The built-in retry policy retries what
  ``Retry.on`` matches, every ``Exception`` by default: a ``BaseException`` is retried only
  when ``on`` names it.
- ``async_parallel_iter`` and ``@async_parallel``'s ``.stream`` return an
  ``AsyncResultStream``, an async context manager: leaving the ``async with`` block
  cancels and awaits every coroutine the run started, and the input is not pulled again.
  ``aclose()`` is idempotent; a stream dropped without being closed is closed once it is
  garbage-collected; ``contextlib.aclosing`` still works.

Every test drives its own event loop; none sleeps to wait for something (events do).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

import pyarallel
from pyarallel import (
    ItemResult,
    ParallelResult,
    Retry,
    async_parallel,
    async_parallel_iter,
    async_parallel_map,
    parallel_map,
)

WAIT = 10.0  # generous bound on waits for events that come within a few loop iterations


class CustomBase(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt."""


BASE_EXCEPTIONS: dict[str, Callable[[], BaseException]] = {
    "system_exit": lambda: SystemExit(3),
    "keyboard_interrupt": lambda: KeyboardInterrupt("item"),
    "custom": lambda: CustomBase("custom"),
}


def run_checked(main: Callable[[], Awaitable[Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``main()`` in a new event loop; return its value and every context given to the
    loop's exception handler (which still logs, for ``caplog``), garbage collected first so
    that a task whose exception was never retrieved is reported. A BaseException escaping
    the run fails the test instead of ending the session."""
    handled: list[dict[str, Any]] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        handled.append(context)
        loop.default_exception_handler(context)

    async def wrapper() -> Any:
        asyncio.get_running_loop().set_exception_handler(handler)
        try:
            return await main()
        finally:
            gc.collect()
            for _ in range(3):
                await asyncio.sleep(0)

    try:
        value = asyncio.run(wrapper())
    except (SystemExit, KeyboardInterrupt, CustomBase) as escaped:
        pytest.fail(f"{escaped!r} escaped the run instead of failing only its item")
    return value, handled


def check_nothing_unretrieved(handled: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    assert handled == []
    messages = [record.getMessage() for record in caplog.records if record.name == "asyncio"]
    assert not [message for message in messages if "never retrieved" in message], messages


class Raiser:
    """Item ``at`` raises ``error`` (the same instance on every attempt); item ``flaky``
    raises a ValueError on its first attempt only; the others return ``10 * x``. Counts
    attempts per item."""

    def __init__(self, error: BaseException, at: int = 2, flaky: int | None = None) -> None:
        self.error = error
        self.at = at
        self.flaky = flaky
        self.attempts: Counter[int] = Counter()

    def sync(self, x: int) -> int:
        self.attempts[x] += 1
        if x == self.at:
            raise self.error
        if x == self.flaky and self.attempts[x] == 1:
            raise ValueError("flaky")
        return 10 * x

    async def __call__(self, x: int) -> int:
        await asyncio.sleep(0)
        return self.sync(x)


def check_only_item_failed(result: ParallelResult[int], error: BaseException, at: int, n: int) -> None:
    assert result.status == "completed"
    [(index, failure)] = result.failures()
    assert index == at
    assert failure is error
    assert result.successes() == [(i, 10 * i) for i in range(n) if i != at]


# -- BaseException in an item --------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", list(BASE_EXCEPTIONS))
def test_async_map_base_exception_fails_only_its_item(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    error = BASE_EXCEPTIONS[kind]()
    raiser = Raiser(error)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        result, handled = run_checked(lambda: async_parallel_map(raiser, range(5), concurrency=2))
    check_only_item_failed(result, error, 2, 5)
    check_nothing_unretrieved(handled, caplog)
    with pytest.raises(BaseExceptionGroup) as raised:
        result.values()
    assert raised.value.exceptions == (error,)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", list(BASE_EXCEPTIONS))
def test_async_decorated_map_base_exception_fails_only_its_item(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = BASE_EXCEPTIONS[kind]()
    raiser = Raiser(error, at=0)
    decorated = async_parallel(concurrency=3)(raiser)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        result, handled = run_checked(lambda: decorated.map(range(4)))
    check_only_item_failed(result, error, 0, 4)
    check_nothing_unretrieved(handled, caplog)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", list(BASE_EXCEPTIONS))
def test_async_iter_base_exception_fails_only_its_item(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    error = BASE_EXCEPTIONS[kind]()
    raiser = Raiser(error, at=1)

    async def main() -> list[ItemResult[int]]:
        async with contextlib.aclosing(async_parallel_iter(raiser, range(4), concurrency=2)) as results:
            return [item async for item in results]

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        items, handled = run_checked(main)
    by_index = {item.index: item for item in items}
    assert sorted(by_index) == [0, 1, 2, 3]
    assert len(items) == 4
    assert not by_index[1].ok
    assert by_index[1].error is error
    assert [(i, by_index[i].value) for i in (0, 2, 3)] == [(0, 0), (2, 20), (3, 30)]
    check_nothing_unretrieved(handled, caplog)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", list(BASE_EXCEPTIONS))
def test_a_base_exception_is_not_retried_by_default(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    # Retry(on=None) retries every Exception; a BaseException is not one.
    retry = Retry(attempts=2, backoff=0)
    error = BASE_EXCEPTIONS[kind]()
    raiser = Raiser(error, at=2, flaky=3)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        result, handled = run_checked(lambda: async_parallel_map(raiser, range(5), retry=retry))
    check_only_item_failed(result, error, 2, 5)
    check_nothing_unretrieved(handled, caplog)
    assert raiser.attempts == {0: 1, 1: 1, 2: 1, 3: 2, 4: 1}  # only the ValueError was retried

    sync_raiser = Raiser(error, at=2, flaky=3)
    sync_result = parallel_map(sync_raiser.sync, range(5), retry=retry)
    check_only_item_failed(sync_result, error, 2, 5)
    assert sync_raiser.attempts == raiser.attempts


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", list(BASE_EXCEPTIONS))
def test_a_base_exception_named_by_retry_on_is_retried(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    error = BASE_EXCEPTIONS[kind]()
    retry = Retry(attempts=3, backoff=0, on=type(error))
    raiser = Raiser(error, at=1)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        result, handled = run_checked(lambda: async_parallel_map(raiser, range(3), retry=retry))
    check_only_item_failed(result, error, 1, 3)
    check_nothing_unretrieved(handled, caplog)
    assert raiser.attempts == {0: 1, 1: 3, 2: 1}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", list(BASE_EXCEPTIONS))
@pytest.mark.parametrize("retry", [None, Retry(attempts=2, backoff=0)], ids=["no_retry", "retry"])
def test_async_and_threads_fail_the_same_items_the_same_way(kind: str, retry: Retry | None) -> None:
    def outcome(result: ParallelResult[int]) -> tuple[str, list[tuple[int, type]], list[tuple[int, int]]]:
        failures = [(index, type(error)) for index, error in result.failures()]
        return result.status, failures, result.successes()

    errors = {1: BASE_EXCEPTIONS[kind](), 4: ValueError("plain")}

    def sync_fn(x: int) -> int:
        if x in errors:
            raise errors[x]
        return 10 * x

    async def async_fn(x: int) -> int:
        await asyncio.sleep(0)
        return sync_fn(x)

    on_threads = parallel_map(sync_fn, range(6), workers=3, retry=retry)
    on_the_loop, _ = run_checked(lambda: async_parallel_map(async_fn, range(6), concurrency=3, retry=retry))
    assert outcome(on_the_loop) == outcome(on_threads)
    assert outcome(on_threads)[1] == [(1, type(errors[1])), (4, ValueError)]
    for result in (on_threads, on_the_loop):
        with pytest.raises(BaseExceptionGroup) as raised:
            result.values()
        assert not isinstance(raised.value, ExceptionGroup)  # it holds a BaseException


# -- async streams are async context managers ----------------------------------------------------


def other_tasks() -> set[asyncio.Task[Any]]:
    """Every task of the running loop except the current one."""
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


class Source:
    """An input, a sync or an async generator, counting the items pulled from it."""

    def __init__(self, kind: str, n: int = 1000) -> None:
        self.kind = kind
        self.n = n
        self.pulls = 0

    def make(self) -> Any:
        return self._sync() if self.kind == "sync" else self._async()

    def _sync(self) -> Iterator[int]:
        for i in range(self.n):
            self.pulls += 1
            yield i

    async def _async(self) -> AsyncIterator[int]:
        for i in range(self.n):
            await asyncio.sleep(0)
            self.pulls += 1
            yield i


class Tracker:
    """Work whose item 0 returns once ``concurrency`` items have started and whose other
    items hang until cancelled, recording which started, which saw ``CancelledError`` and
    which finished (their ``finally`` ran: they were awaited to the end)."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.started: set[int] = set()
        self.cancelled: set[int] = set()
        self.finished: set[int] = set()
        self.all_started = asyncio.Event()
        self.all_cancelled = asyncio.Event()  # every started item but 0 has been cancelled

    async def __call__(self, x: int) -> int:
        self.started.add(x)
        if len(self.started) >= self.concurrency:
            self.all_started.set()
        try:
            if x == 0:
                await asyncio.wait_for(self.all_started.wait(), WAIT)
                return 0
            await asyncio.Event().wait()  # never set: only cancellation ends it
            raise AssertionError("unreachable")
        except asyncio.CancelledError:
            self.cancelled.add(x)
            if self.cancelled >= self.started - {0}:
                self.all_cancelled.set()
            raise
        finally:
            self.finished.add(x)

    def check_cancelled_and_awaited(self) -> None:
        assert len(self.started) >= self.concurrency
        assert self.cancelled == self.started - {0}
        assert self.finished == self.started


async def _pulls_stay(source: Source) -> int:
    pulls = source.pulls
    for _ in range(10):
        await asyncio.sleep(0)
    assert source.pulls == pulls, "the input was pulled after the stream was closed"
    return pulls


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_leaving_async_with_cancels_and_awaits_every_started_coroutine(kind: str) -> None:
    async def main() -> tuple[Tracker, list[int], int]:
        tracker, source = Tracker(3), Source(kind)
        got: list[int] = []
        async with async_parallel_iter(tracker, source.make(), concurrency=3) as results:
            assert isinstance(results, pyarallel.AsyncResultStream)
            async for item in results:
                got.append(item.index)
                break
        # On leaving the block, not some loop iterations later:
        tracker.check_cancelled_and_awaited()
        assert not other_tasks()
        pulls = await _pulls_stay(source)
        with pytest.raises(StopAsyncIteration):
            await anext(results)
        assert source.pulls == pulls
        return tracker, got, pulls

    (_, got, pulls), handled = run_checked(main)
    assert got == [0]
    assert pulls < 1000  # not drained
    assert handled == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_leaving_async_with_of_a_decorated_stream_cancels_and_awaits_everything(kind: str) -> None:
    async def main() -> Tracker:
        tracker, source = Tracker(4), Source(kind)
        decorated = async_parallel(concurrency=4)(tracker)
        stream = decorated.stream(source.make())
        assert isinstance(stream, pyarallel.AsyncResultStream)
        async with stream as results:
            assert results is stream
            async for item in results:
                assert item.index == 0
                break
        tracker.check_cancelled_and_awaited()
        assert not other_tasks()
        await _pulls_stay(source)
        return tracker

    _, handled = run_checked(main)
    assert handled == []


@pytest.mark.timeout(30)
def test_an_error_leaving_async_with_cancels_everything_and_propagates() -> None:
    class Stop(Exception):
        pass

    async def main() -> Tracker:
        tracker, source = Tracker(3), Source("sync")
        escaped: BaseException | None = None
        try:
            async with async_parallel_iter(tracker, source.make(), concurrency=3) as results:
                async for _ in results:
                    raise Stop
        except Stop as error:
            escaped = error
        assert isinstance(escaped, Stop)
        tracker.check_cancelled_and_awaited()
        assert not other_tasks()
        await _pulls_stay(source)
        return tracker

    run_checked(main)


@pytest.mark.timeout(30)
def test_entering_async_with_starts_nothing() -> None:
    async def main() -> None:
        tracker, source = Tracker(3), Source("sync")
        async with async_parallel_iter(tracker, source.make(), concurrency=3):
            for _ in range(5):
                await asyncio.sleep(0)
            assert source.pulls == 0
            assert tracker.started == set()
        assert source.pulls == 0
        assert not other_tasks()

    run_checked(main)


@pytest.mark.timeout(30)
def test_aclose_twice_and_after_async_with_is_fine() -> None:
    async def main() -> None:
        tracker, source = Tracker(2), Source("async")
        stream = async_parallel_iter(tracker, source.make(), concurrency=2)
        first = await anext(stream)
        assert first.index == 0
        await stream.aclose()
        tracker.check_cancelled_and_awaited()
        await stream.aclose()
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        async with stream:  # entering and leaving a closed stream: nothing happens
            pass
        await stream.aclose()
        assert not other_tasks()
        await _pulls_stay(source)

    _, handled = run_checked(main)
    assert handled == []


@pytest.mark.timeout(30)
def test_an_abandoned_stream_has_its_coroutines_cancelled_once_collected() -> None:
    async def main() -> Tracker:
        tracker, source = Tracker(3), Source("sync")
        stream = async_parallel_iter(tracker, source.make(), concurrency=3)
        first = await anext(stream)
        assert first.index == 0
        del stream  # dropped without async with or aclose()
        gc.collect()
        await asyncio.wait_for(tracker.all_cancelled.wait(), WAIT)
        for _ in range(1000):  # the closing task finishes within a few loop iterations
            if not other_tasks() and tracker.finished == tracker.started:
                break
            await asyncio.sleep(0)
        tracker.check_cancelled_and_awaited()
        assert not other_tasks()
        await _pulls_stay(source)
        return tracker

    _, handled = run_checked(main)
    assert handled == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_contextlib_aclosing_still_works(kind: str) -> None:
    async def main() -> None:
        tracker, source = Tracker(3), Source(kind)
        async with contextlib.aclosing(async_parallel_iter(tracker, source.make(), concurrency=3)) as results:
            async for item in results:
                assert item.index == 0
                break
        tracker.check_cancelled_and_awaited()
        assert not other_tasks()
        await _pulls_stay(source)

    run_checked(main)


@pytest.mark.timeout(30)
def test_a_stream_read_to_the_end_inside_async_with() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def main() -> list[ItemResult[int]]:
        async with async_parallel_iter(double, range(6), concurrency=2) as results:
            items = [item async for item in results]
        assert not other_tasks()
        return items

    items, handled = run_checked(main)
    assert sorted((item.index, item.value) for item in items) == [(i, 2 * i) for i in range(6)]
    assert handled == []
