"""Structured cancellation and timeouts of the async API.

However a run ends early (the caller's task is cancelled, the run's own ``timeout`` or
the caller's ``asyncio.timeout`` fires, the consumer of ``async_parallel_iter`` stops, an
error escapes), every coroutine it started has been cancelled *and awaited* when control
comes back: no task is left behind, each started coroutine saw ``CancelledError`` and
finished its (asynchronous) cleanup, and the input is not pulled again. ``task_timeout``
cancels one attempt and fails it with ``TaskTimeoutError``; a ``TimeoutError`` the user's
coroutine raises itself stays what it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import pyarallel
from pyarallel import (
    ItemResult,
    ItemTimeoutError,
    ParallelResult,
    Retry,
    TaskTimeoutError,
    async_parallel,
    async_parallel_iter,
    async_parallel_map,
    async_parallel_starmap,
)

SOURCE_KINDS = ["sync", "agen", "cursor"]
CLEANUP_SECONDS = 0.02  # asynchronous cleanup every cancelled work item does before it ends


class Boom(Exception):
    pass


def other_tasks() -> set[asyncio.Task[Any]]:
    """Every task of the running loop except the current one."""
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


class Source:
    """An input (sync generator, async generator or paginated async cursor) counting pulls."""

    def __init__(self, kind: str, n: int | None = None) -> None:
        self.kind = kind
        self.n = n
        self.pulls = 0

    def __call__(self) -> Any:
        numbers = itertools.count() if self.n is None else range(self.n)
        if self.kind == "sync":
            return self._sync(numbers)
        if self.kind == "agen":
            return self._agen(numbers)
        return _Cursor(self, iter(numbers))

    def _sync(self, numbers: Iterator[int] | range) -> Iterator[int]:
        for i in numbers:
            self.pulls += 1
            yield i

    async def _agen(self, numbers: Iterator[int] | range) -> AsyncIterator[int]:
        for i in numbers:
            await asyncio.sleep(0)
            self.pulls += 1
            yield i


class _Cursor:
    """A paginated cursor: fetches 2 rows per "round trip"."""

    def __init__(self, source: Source, numbers: Iterator[int]) -> None:
        self.source = source
        self.numbers = numbers
        self.page: list[int] = []

    def __aiter__(self) -> _Cursor:
        return self

    async def __anext__(self) -> int:
        if not self.page:
            await asyncio.sleep(0)
            self.page = list(itertools.islice(self.numbers, 2))
            if not self.page:
                raise StopAsyncIteration
        self.source.pulls += 1
        return self.page.pop(0)


class Work:
    """Work items that hang (when ``hangs(x)``) until cancelled, recording who started, who
    saw ``CancelledError`` and who finished the cleanup that follows it."""

    def __init__(self, hangs: Any = lambda x: True, delay: float = 0.0) -> None:
        self.hangs = hangs
        self.delay = delay
        self.started: list[Any] = []
        self.cancelled: list[Any] = []
        self.cleaned: list[Any] = []
        self.finished: list[Any] = []
        self.first_started = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Event]] = []

    async def wait_started(self, n: int) -> None:
        """Return once ``n`` items have started."""
        reached = asyncio.Event()
        self._waiters.append((n, reached))
        self._notify()
        await asyncio.wait_for(reached.wait(), 10)

    def _notify(self) -> None:
        for n, reached in self._waiters:
            if len(self.started) >= n:
                reached.set()

    async def __call__(self, x: Any) -> Any:
        self.started.append(x)
        self.first_started.set()
        self._notify()
        try:
            if self.hangs(x):
                await asyncio.Event().wait()
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled.append(x)
            await asyncio.sleep(CLEANUP_SECONDS)  # cleanup the library must wait for
            self.cleaned.append(x)
            raise
        self.finished.append(x)
        return x * 2

    def check_all_cancelled_and_awaited(self, *, expect_some: bool = True) -> None:
        unfinished = sorted(x for x in self.started if x not in self.finished)
        if expect_some:
            assert unfinished, "the test expected some work in flight"
        assert sorted(self.cancelled) == unfinished
        assert sorted(self.cleaned) == unfinished


# -- the caller is cancelled ---------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_cancelling_the_caller_cancels_and_awaits_every_started_coroutine(kind: str) -> None:
    async def main() -> tuple[Work, Source, int]:
        work, source = Work(), Source(kind, 100)
        task = asyncio.create_task(async_parallel_map(work, source(), concurrency=3))
        await work.first_started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert not other_tasks()
        pulls = source.pulls
        for _ in range(10):
            await asyncio.sleep(0)
        assert not other_tasks()
        return work, source, pulls

    work, source, pulls = asyncio.run(main())
    work.check_all_cancelled_and_awaited()
    assert source.pulls == pulls  # not pulled again
    if kind == "sync":
        assert len(work.started) >= 3  # a full window was in flight
        assert source.pulls == len(work.started)
    else:  # items may have been pulled and not started yet (within the window of 3)
        assert len(work.started) <= source.pulls <= 3


@pytest.mark.timeout(30)
def test_cancelling_the_caller_of_starmap_and_decorated_map() -> None:
    async def main() -> list[Work]:
        works = []
        for use_decorator in (False, True):
            work = Work()

            async def star(a: int, b: int, work: Work = work) -> int:
                return await work(a + b)

            if use_decorator:
                coroutine = async_parallel(concurrency=2)(work).map(range(10))
            else:
                coroutine = async_parallel_starmap(star, [(i, 0) for i in range(10)], concurrency=2)
            task = asyncio.create_task(coroutine)
            await work.first_started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not other_tasks()
            works.append(work)
        return works

    for work in asyncio.run(main()):
        assert len(work.started) >= 2
        work.check_all_cancelled_and_awaited()


@pytest.mark.timeout(30)
def test_cancelling_the_caller_while_items_wait_for_a_rate_limit_token() -> None:
    """Items waiting for a token (or a retry backoff) never start after the cancellation."""

    async def main() -> tuple[Work, list[Any]]:
        work = Work()
        task = asyncio.create_task(async_parallel_map(work, range(5), concurrency=5, rate_limit=0.5))
        await work.first_started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not other_tasks()
        started_at_cancel = list(work.started)
        await asyncio.sleep(0)
        return work, started_at_cancel

    work, started_at_cancel = asyncio.run(main())
    assert work.started == [0] == started_at_cancel
    work.check_all_cancelled_and_awaited()


@pytest.mark.timeout(30)
def test_cancelling_the_consumer_task_of_a_stream() -> None:
    async def main() -> tuple[Work, Source, list[int]]:
        work, source = Work(hangs=lambda x: x >= 2), Source("sync", 50)
        got: list[int] = []

        async def consume() -> None:
            async with contextlib.aclosing(async_parallel_iter(work, source(), concurrency=4)) as results:
                async for result in results:
                    got.append(result.index)

        consumer = asyncio.create_task(consume())
        # items 0 and 1 finish; 4 and 5 start only once their results were handed out
        await work.wait_started(6)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert not other_tasks()
        return work, source, got

    work, source, got = asyncio.run(main())
    assert sorted(got) == [0, 1]
    work.check_all_cancelled_and_awaited()
    assert {2, 3, 4, 5} <= set(work.cancelled)
    assert sorted(work.cancelled) == sorted(set(work.started) - {0, 1})
    assert source.pulls == len(work.started)


# -- timeouts ------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_total_timeout_fails_unfinished_items_and_keeps_finished_ones(kind: str) -> None:
    async def main() -> tuple[Work, Source, ParallelResult[int], float, int]:
        work, source = Work(hangs=lambda x: x % 2 == 1), Source(kind, 6)
        started = time.monotonic()
        result = await async_parallel_map(work, source(), concurrency=6, timeout=0.3)
        elapsed = time.monotonic() - started
        assert not other_tasks()
        pulls = source.pulls
        await asyncio.sleep(0)
        return work, source, result, elapsed, pulls

    work, source, result, elapsed, pulls = asyncio.run(main())
    assert 0.3 <= elapsed < 0.3 + 3.0  # returns promptly although the hung items never end
    assert len(result) == len(work.started) == pulls
    timed_out = [i for i, _ in result.failures()]
    assert timed_out == sorted(i for i in work.started if i % 2 == 1)
    for index, error in result.failures():
        assert isinstance(error, ItemTimeoutError)
        assert isinstance(error, TimeoutError)
        assert error.index == index
        assert error.timeout == 0.3
        assert str(index) in str(error)
    assert result.successes() == sorted((i, 2 * i) for i in work.started if i % 2 == 0)
    work.check_all_cancelled_and_awaited()
    assert source.pulls == pulls


@pytest.mark.timeout(30)
def test_total_timeout_also_fails_sized_items_never_started() -> None:
    async def main() -> tuple[Work, ParallelResult[int], ParallelResult[int]]:
        work = Work(hangs=lambda x: True)  # every started item hangs: most never start
        result = await async_parallel_map(work, list(range(20)), concurrency=2, timeout=0.3)
        assert not other_tasks()
        some_done = await async_parallel_map(Work(hangs=lambda x: x == 1), range(10), timeout=0.3)
        return work, result, some_done

    work, result, some_done = asyncio.run(main())
    assert len(result) == 20
    assert [(i, type(e)) for i, e in result.failures()] == [(i, ItemTimeoutError) for i in range(20)]
    assert all(e.index == i for i, e in result.failures())  # type: ignore[attr-defined]
    assert 2 <= len(work.started) < 20
    work.check_all_cancelled_and_awaited()
    assert some_done.successes() == [(i, 2 * i) for i in range(10) if i != 1]
    assert [(i, type(e)) for i, e in some_done.failures()] == [(1, ItemTimeoutError)]


@pytest.mark.timeout(30)
def test_total_timeout_cuts_rate_limit_and_retry_waits_short() -> None:
    attempts: Counter[int] = Counter()

    async def fail_first(x: int) -> int:
        attempts[x] += 1
        if x == 0:
            raise Boom(x)
        return x

    async def main() -> tuple[ParallelResult[int], float, ParallelResult[int], float]:
        started = time.monotonic()
        # item 0 fails and would wait 60 s before its retry
        backoff = await async_parallel_map(
            fail_first, range(3), retry=Retry(attempts=2, backoff=60, jitter=False), timeout=0.3
        )
        backoff_elapsed = time.monotonic() - started
        started = time.monotonic()
        # one token per 60 s: only the first item starts before the timeout
        paced = await async_parallel_map(fail_first, range(10, 13), rate_limit=1 / 60, timeout=0.3)
        paced_elapsed = time.monotonic() - started
        assert not other_tasks()
        return backoff, backoff_elapsed, paced, paced_elapsed

    backoff, backoff_elapsed, paced, paced_elapsed = asyncio.run(main())
    assert backoff.successes() == [(1, 1), (2, 2)]
    assert [(i, type(e)) for i, e in backoff.failures()] == [(0, ItemTimeoutError)]
    assert attempts[0] == 1
    assert 0.3 <= backoff_elapsed < 3.3
    assert paced.successes() == [(0, 10)]
    assert [(i, type(e)) for i, e in paced.failures()] == [(1, ItemTimeoutError), (2, ItemTimeoutError)]
    assert attempts[11] == attempts[12] == 0  # never started
    assert 0.3 <= paced_elapsed < 3.3


@pytest.mark.timeout(30)
def test_timeout_zero_fails_everything_without_starting_anything() -> None:
    async def main() -> tuple[Work, ParallelResult[int]]:
        work = Work(hangs=lambda x: False)
        return work, await async_parallel_map(work, range(4), timeout=0)

    work, result = asyncio.run(main())
    assert work.started == []
    assert [(i, type(e)) for i, e in result.failures()] == [(i, ItemTimeoutError) for i in range(4)]


@pytest.mark.timeout(30)
def test_callers_own_asyncio_timeout_cancels_and_awaits_everything() -> None:
    async def main() -> tuple[Work, Source, Work, int]:
        work, source = Work(), Source("sync", 100)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await async_parallel_map(work, source(), concurrency=3)
        assert not other_tasks()
        pulls = source.pulls
        waited_for = Work()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(async_parallel_map(waited_for, range(10), concurrency=2), 0.2)
        assert not other_tasks()
        return work, source, waited_for, pulls

    work, source, waited_for, pulls = asyncio.run(main())
    assert len(work.started) >= 3
    work.check_all_cancelled_and_awaited()
    assert source.pulls == pulls == len(work.started)
    assert len(waited_for.started) >= 2
    waited_for.check_all_cancelled_and_awaited()


# -- task_timeout ----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_task_timeout_cancels_the_attempt_and_fails_it_with_task_timeout_error() -> None:
    async def main() -> tuple[Work, ParallelResult[int], float]:
        work = Work(hangs=lambda x: x in (1, 3))
        started = time.monotonic()
        result = await async_parallel_map(work, range(5), concurrency=5, task_timeout=0.2)
        elapsed = time.monotonic() - started
        assert not other_tasks()
        return work, result, elapsed

    work, result, elapsed = asyncio.run(main())
    assert elapsed < 3.0
    assert result.successes() == [(0, 0), (2, 4), (4, 8)]
    assert [i for i, _ in result.failures()] == [1, 3]
    for index, error in result.failures():
        assert type(error) is TaskTimeoutError
        assert isinstance(error, TimeoutError)
        assert isinstance(error, pyarallel.ItemError)
        assert error.index == index
        assert "task_timeout" in str(error)
    assert sorted(work.cancelled) == [1, 3]  # the coroutine itself saw CancelledError
    assert sorted(work.cleaned) == [1, 3]


@pytest.mark.timeout(30)
def test_task_timeout_is_per_attempt_and_retried() -> None:
    attempts: Counter[int] = Counter()
    cancelled: list[tuple[int, int]] = []

    async def slow_first_attempts(x: int) -> int:
        attempts[x] += 1
        attempt = attempts[x]
        try:
            if attempt < 3 and x != 0:  # items 1 and 2 hang on their first two attempts
                await asyncio.Event().wait()
            await asyncio.sleep(0.05)  # each attempt takes a while, total > task_timeout
        except asyncio.CancelledError:
            cancelled.append((x, attempt))
            raise
        return x

    async def main() -> tuple[ParallelResult[int], ParallelResult[int]]:
        recovered = await async_parallel_map(
            slow_first_attempts, range(3), task_timeout=0.15, retry=Retry(attempts=3, backoff=0.01)
        )
        attempts.clear()
        exhausted = await async_parallel_map(
            slow_first_attempts, range(3), task_timeout=0.15, retry=Retry(attempts=2, backoff=0.01)
        )
        return recovered, exhausted

    recovered, exhausted = asyncio.run(main())
    assert recovered == [0, 1, 2]
    assert [(i, type(e)) for i, e in exhausted.failures()] == [(1, TaskTimeoutError), (2, TaskTimeoutError)]
    assert attempts == Counter({0: 1, 1: 2, 2: 2})
    assert sorted(cancelled) == [(1, 1), (1, 1), (1, 2), (1, 2), (2, 1), (2, 1), (2, 2), (2, 2)]


@pytest.mark.timeout(30)
def test_users_own_timeout_error_is_not_a_task_timeout() -> None:
    attempts: Counter[str] = Counter()

    async def own_timeout(kind: str) -> str:
        attempts[kind] += 1
        if kind == "raise":
            raise TimeoutError("my own deadline")
        if kind == "inner":
            async with asyncio.timeout(0.01):  # the coroutine's own, shorter timeout fires
                await asyncio.Event().wait()
        if kind == "wait_for":
            await asyncio.wait_for(asyncio.Event().wait(), 0.01)
        return kind

    async def main() -> tuple[ParallelResult[str], ParallelResult[str]]:
        plain = await async_parallel_map(own_timeout, ["raise", "inner", "wait_for", "ok"], task_timeout=5)
        # retrying only task timeouts must not retry the user's own TimeoutError
        retried = await async_parallel_map(
            own_timeout,
            ["raise", "ok"],
            task_timeout=5,
            retry=Retry(attempts=3, backoff=0, on=(TaskTimeoutError,)),
        )
        return plain, retried

    plain, retried = asyncio.run(main())
    assert plain.successes() == [(3, "ok")]
    assert [i for i, _ in plain.failures()] == [0, 1, 2]
    for _, error in plain.failures():
        assert isinstance(error, TimeoutError)
        assert not isinstance(error, TaskTimeoutError)
    assert str(plain.failures()[0][1]) == "my own deadline"
    assert [(i, type(e)) for i, e in retried.failures()] == [(0, TimeoutError)]
    assert attempts["raise"] == 2  # once per run: never retried


@pytest.mark.timeout(30)
def test_task_timeout_in_a_stream() -> None:
    async def main() -> tuple[Work, list[ItemResult[int]]]:
        work = Work(hangs=lambda x: x == 2)
        async with contextlib.aclosing(async_parallel_iter(work, range(4), task_timeout=0.1)) as results:
            return work, [r async for r in results]

    work, seen = asyncio.run(main())
    assert sorted(r.index for r in seen) == [0, 1, 2, 3]
    (failed,) = [r for r in seen if not r.ok]
    assert failed.index == 2
    assert isinstance(failed.error, TaskTimeoutError)
    assert work.cancelled == work.cleaned == [2]


# -- the consumer of a stream stops early ---------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_breaking_out_of_an_aclosing_stream_cancels_everything(kind: str) -> None:
    async def main() -> tuple[Work, Source, list[int], int]:
        work, source = Work(hangs=lambda x: x >= 3), Source(kind, None)
        got: list[int] = []
        async with contextlib.aclosing(async_parallel_iter(work, source(), concurrency=4)) as results:
            async for result in results:
                got.append(result.index)
                if len(got) == 3:
                    break
        assert not other_tasks()
        pulls = source.pulls
        for _ in range(10):
            await asyncio.sleep(0)
        return work, source, got, pulls

    work, source, got, pulls = asyncio.run(main())
    assert sorted(got) == [0, 1, 2]
    # Items 0-2 finish at once; whether item 3 was pulled and started from an async input by
    # the time the third result arrives depends on the loop's scheduling.
    work.check_all_cancelled_and_awaited(expect_some=kind == "sync")
    assert source.pulls == pulls  # not pulled after the stream was closed
    assert pulls < 20  # the infinite input was not drained (the exact window is tested elsewhere)


@pytest.mark.timeout(30)
def test_explicit_aclose_of_a_stream_cancels_everything() -> None:
    async def main() -> tuple[Work, Source, list[int], int, Any]:
        work, source = Work(hangs=lambda x: x >= 2), Source("sync", 100)
        stream = async_parallel_iter(work, source(), concurrency=5)
        got = [(await anext(stream)).index, (await anext(stream)).index]
        await stream.aclose()  # type: ignore[attr-defined]
        assert not other_tasks()
        pulls = source.pulls
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        return work, source, got, pulls, stream

    work, source, got, pulls, _ = asyncio.run(main())
    assert sorted(got) == [0, 1]
    work.check_all_cancelled_and_awaited()
    assert {2, 3, 4} <= set(work.cancelled)
    assert sorted(work.cancelled) == sorted(set(work.started) - {0, 1})
    assert source.pulls == pulls == len(work.started)


@pytest.mark.timeout(30)
def test_decorated_stream_closed_early_cancels_everything() -> None:
    async def main() -> Work:
        work = Work(hangs=lambda x: x > 0)
        fn = async_parallel(concurrency=3)(work)
        async with contextlib.aclosing(fn.stream(range(10))) as results:
            async for result in results:
                assert result.index == 0
                break
        assert not other_tasks()
        return work

    work = asyncio.run(main())
    assert {1, 2} <= set(work.cancelled)
    assert sorted(work.cancelled) == sorted(set(work.started) - {0})
    work.check_all_cancelled_and_awaited()


# -- errors escaping the run --------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_an_error_from_a_sync_input_cancels_the_work_in_flight() -> None:
    async def main() -> Work:
        work = Work(hangs=lambda x: x != 0)

        def failing_source() -> Iterator[int]:
            i = 0
            while not work.finished:  # items are taken until item 0 has finished
                yield i
                i += 1
            raise RuntimeError("the cursor broke")

        with pytest.raises(RuntimeError, match="the cursor broke"):
            await async_parallel_map(work, failing_source(), concurrency=4)
        assert not other_tasks()
        return work

    work = asyncio.run(main())
    assert work.finished == [0]
    assert len(work.started) >= 4
    assert sorted(work.cancelled) == sorted(set(work.started) - {0})
    work.check_all_cancelled_and_awaited()


@pytest.mark.timeout(30)
def test_an_error_from_an_async_input_cancels_the_work_in_flight() -> None:
    async def main() -> Work:
        work = Work()

        async def failing_source() -> AsyncIterator[int]:
            yield 0
            await work.first_started.wait()  # item 0 is running (and hangs)
            raise RuntimeError("the cursor broke")

        with pytest.raises(RuntimeError, match="the cursor broke"):
            async with asyncio.timeout(3):  # bound the wait: the error must surface long before
                await async_parallel_map(work, failing_source(), concurrency=4)
        assert not other_tasks()
        return work

    work = asyncio.run(main())
    assert work.started == [0]
    work.check_all_cancelled_and_awaited()


@pytest.mark.timeout(30)
def test_an_error_from_on_progress_cancels_the_work_in_flight() -> None:
    def progress(done: int, total: int) -> None:
        raise ValueError(f"progress broke at {done}/{total}")

    async def main() -> Work:
        work = Work(hangs=lambda x: x != 0)
        with pytest.raises(ValueError, match="progress broke at 1/6"):
            await async_parallel_map(work, range(6), concurrency=3, on_progress=progress)
        assert not other_tasks()
        return work

    work = asyncio.run(main())
    assert {1, 2} <= set(work.cancelled)
    assert sorted(work.cancelled) == sorted(set(work.started) - {0})
    work.check_all_cancelled_and_awaited()


# -- observers see how a run ended ---------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.starts: list[Any] = []
        self.results: list[ItemResult[object]] = []
        self.ends: list[Any] = []

    @pyarallel.hookimpl
    def pyarallel_run_start(self, run: Any) -> None:
        self.starts.append(run)

    @pyarallel.hookimpl
    def pyarallel_item_result(self, run: Any, result: ItemResult[object], done: int, seen: int) -> None:
        self.results.append(result)

    @pyarallel.hookimpl
    def pyarallel_run_end(self, run: Any, summary: Any) -> None:
        self.ends.append(summary)


def _observed(main: Any) -> tuple[Recorder, Any]:
    recorder = Recorder()
    pyarallel.register_plugin(recorder, name="test-async-cancellation-recorder")
    try:
        value = asyncio.run(main())
    finally:
        pyarallel.unregister_plugin(recorder)
    return recorder, value


@pytest.mark.timeout(30)
def test_observers_see_a_timed_out_run() -> None:
    async def main() -> ParallelResult[int]:
        return await async_parallel_map(Work(hangs=lambda x: x >= 2), range(4), concurrency=4, timeout=0.2)

    recorder, result = _observed(main)
    assert [i for i, _ in result.failures()] == [2, 3]
    (run,) = recorder.starts
    assert run.executor == "asyncio"
    assert sorted(r.index for r in recorder.results) == [0, 1, 2, 3]  # each exactly once
    assert {r.index for r in recorder.results if isinstance(r.error, ItemTimeoutError)} == {2, 3}
    (summary,) = recorder.ends
    assert (summary.outcome, summary.succeeded, summary.failed) == ("timed_out", 2, 2)


@pytest.mark.timeout(30)
def test_observers_see_a_cancelled_run_as_interrupted() -> None:
    async def main() -> Work:
        work = Work(hangs=lambda x: x >= 1)
        task = asyncio.create_task(async_parallel_map(work, range(5), concurrency=3))
        await work.wait_started(4)  # item 3 starts once item 0 has finished; 1..3 hang
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return work

    recorder, work = _observed(main)
    work.check_all_cancelled_and_awaited()
    assert len(recorder.starts) == 1
    assert [r.index for r in recorder.results] == [0]
    (summary,) = recorder.ends
    assert (summary.outcome, summary.succeeded, summary.failed) == ("interrupted", 1, 0)


@pytest.mark.timeout(30)
def test_observers_see_a_stream_closed_early_as_interrupted() -> None:
    async def main() -> list[int]:
        stream = async_parallel_iter(Work(hangs=lambda x: x >= 1), range(5), concurrency=2)
        async with contextlib.aclosing(stream) as results:
            async for result in results:
                return [result.index]
        return []

    recorder, got = _observed(main)
    assert got == [0]
    (summary,) = recorder.ends
    assert summary.outcome == "interrupted"
    assert summary.succeeded == 1
