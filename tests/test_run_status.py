"""Regression tests for issue 8, defect 9: a ``timeout`` bounds the whole call, reading the
input included, and a timed-out run says so.

A timed-out ``ParallelResult`` has ``status`` ``RunStatus.TIMED_OUT`` and is never ``ok``;
everything that needs all the values raises a group holding an ``IncompleteRunError``
(how the run ended, how many items were read and finished), even when every item read
succeeded. Observers see the status in ``RunSummary.status``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from pyarallel import (
    IncompleteRunError,
    ItemTimeoutError,
    ParallelResult,
    Retry,
    RunStatus,
    async_parallel,
    async_parallel_map,
    parallel,
    parallel_map,
)
from support import Observer

TIMEOUT = 0.5
PACE = 0.2  # seconds between two items of a slow input
SLOW_ITEMS = 50  # reading a whole slow input would take 10 s


def _identity(x: Any) -> Any:
    return x


async def _async_identity(x: Any) -> Any:
    return x


def _slow_source(taken: list[int], count: int = SLOW_ITEMS) -> Iterator[int]:
    """Yield ``count`` items, one every ``PACE`` seconds, recording each one yielded."""
    for index in range(count):
        time.sleep(PACE)
        taken.append(index)
        yield index


async def _slow_async_source(taken: list[int], count: int = SLOW_ITEMS) -> AsyncIterator[int]:
    for index in range(count):
        await asyncio.sleep(PACE)
        taken.append(index)
        yield index


class CountingSequence:
    """A sized input (it has ``len``) that records how many items were taken from it."""

    def __init__(self, items: list[float]) -> None:
        self.items = items
        self.taken = 0

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[float]:
        for item in self.items:
            self.taken += 1
            yield item


def _incomplete(group: BaseExceptionGroup[BaseException]) -> Any:
    """The single ``IncompleteRunError`` of ``group`` (which holds nothing else but the
    item failures)."""
    found = [error for error in group.exceptions if isinstance(error, IncompleteRunError)]
    assert len(found) == 1, f"no IncompleteRunError in {group!r}"
    return found[0]


def _assert_refuses_all_values(result: ParallelResult[Any], read: int, finished: int) -> Any:
    """Every operation needing all the values raises a group holding an
    ``IncompleteRunError`` that tells the status and the counts; return that error."""
    operations: dict[str, Callable[[], object]] = {
        "values()": result.values,
        "iteration": lambda: list(result),
        "indexing": lambda: result[0],
        "slicing": lambda: result[0:1],
        "in": lambda: 0 in result,
        "raise_on_failure()": result.raise_on_failure,
    }
    incomplete: Any = None
    for name, operation in operations.items():
        with pytest.raises(BaseExceptionGroup) as raised:
            operation()
        incomplete = _incomplete(raised.value)
        assert incomplete.status is RunStatus.TIMED_OUT, name
        assert (incomplete.read, incomplete.finished) == (read, finished), name
        for text in (str(incomplete), raised.value.message):
            assert "timed_out" in text, text
            assert f"{read} items were read" in text, text
            assert f"{finished} of them finished" in text, text
    return incomplete


# -- the timeout bounds reading the input ---------------------------------------------------


@pytest.mark.timeout(60)
def test_sync_timeout_bounds_reading_an_unsized_input() -> None:
    taken: list[int] = []
    started = time.monotonic()
    result = parallel_map(_identity, _slow_source(taken), timeout=TIMEOUT)
    seconds = time.monotonic() - started
    print(f"returned after {seconds:.2f} s, {len(taken)} items read")

    # 0.5 s of timeout plus one blocking next() (0.2 s); not 10 s of reading everything.
    assert seconds < TIMEOUT + PACE + 1.5, f"took {seconds:.1f} s"
    assert len(taken) <= 4, f"{len(taken)} items were read after a {TIMEOUT} s timeout"
    assert not result.ok
    assert result.status == RunStatus.TIMED_OUT
    assert len(result) == len(taken)
    # The item read after the deadline may or may not have finished; the others did.
    assert all(isinstance(error, ItemTimeoutError) for _, error in result.failures())
    _assert_refuses_all_values(result, read=len(taken), finished=len(result.successes()))


def _async_run_over_slow_source(taken: list[int]) -> tuple[ParallelResult[Any], float]:
    async def main() -> ParallelResult[Any]:
        return await async_parallel_map(
            _async_identity, _slow_async_source(taken), concurrency=2, timeout=TIMEOUT
        )

    started = time.monotonic()
    result = asyncio.run(main())
    return result, time.monotonic() - started


@pytest.mark.timeout(60)
def test_async_timeout_over_an_async_generator_says_it_timed_out() -> None:
    taken: list[int] = []
    result, seconds = _async_run_over_slow_source(taken)

    assert not result.ok, f"a run that read {len(taken)} of {SLOW_ITEMS} items before its timeout is ok"
    assert result.status == RunStatus.TIMED_OUT
    assert seconds < TIMEOUT + 2
    assert len(result) == len(taken) <= 4


# -- what a timed-out result gives and refuses ---------------------------------------------


@pytest.mark.timeout(60)
def test_a_timed_out_result_refuses_all_values_even_when_every_item_read_succeeded() -> None:
    # Items arrive at 0.2 s and 0.4 s and finish at once; the read pending at 0.5 s is
    # abandoned: every item read succeeded, and still the run did not complete.
    taken: list[int] = []
    result, _ = _async_run_over_slow_source(taken)
    assert taken, "precondition: the run read some items"
    assert result.failures() == []
    assert result.successes() == [(index, index) for index in taken]

    assert not result.ok
    assert result.status == RunStatus.TIMED_OUT
    incomplete = _assert_refuses_all_values(result, read=len(taken), finished=len(taken))
    with pytest.raises(BaseExceptionGroup) as raised:
        result.values()
    assert len(raised.value.exceptions) == 1, "no item failed: the group holds the IncompleteRunError alone"
    assert isinstance(raised.value.exceptions[0], IncompleteRunError)
    assert incomplete.status == RunStatus.TIMED_OUT
    assert repr(result) == f"ParallelResult(timed_out: {len(taken)} ok, 0 failed)"
    assert result != taken, "a timed-out result never equals a list"


@pytest.mark.timeout(60)
def test_a_timed_out_sized_input_fails_the_items_never_read() -> None:
    source = CountingSequence([0, 0.1, 3, 3, 0, 0, 0, 0, 0, 0])
    result = parallel_map(time.sleep, source, workers=2, timeout=TIMEOUT)

    assert len(result) == len(source)
    assert result.status == RunStatus.TIMED_OUT
    assert not result.ok
    assert [index for index, _ in result.successes()] == [0, 1]
    failures = result.failures()
    assert [index for index, _ in failures] == list(range(2, len(source)))
    assert all(isinstance(error, ItemTimeoutError) for _, error in failures), failures
    assert source.taken < len(source), "precondition: some items were never read"
    with pytest.raises(BaseExceptionGroup) as raised:
        result.raise_on_failure()
    exceptions = list(raised.value.exceptions)
    assert exceptions[:-1] == [error for _, error in failures]
    incomplete = _incomplete(raised.value)
    assert exceptions[-1] is incomplete
    assert (incomplete.read, incomplete.finished) == (source.taken, 2)
    assert raised.value.message.startswith(f"{len(failures)} of {len(source)} items failed")
    assert "timed_out" in raised.value.message
    assert repr(result) == f"ParallelResult(timed_out: 2 ok, {len(failures)} failed)"


def _quick_then_stuck(taken: list[int]) -> Iterator[float]:
    """Three items at once, then a next() that blocks past the timeout, then more."""
    for index, item in enumerate([0.0, 0.0, 3.0, 0.0, 0.0]):
        if index == 3:
            time.sleep(2 * TIMEOUT)
        taken.append(index)
        yield item


@pytest.mark.timeout(60)
def test_a_timed_out_unsized_input_has_one_result_per_item_read() -> None:
    taken: list[int] = []
    result = parallel_map(time.sleep, _quick_then_stuck(taken), workers=2, timeout=TIMEOUT)

    assert result.status == RunStatus.TIMED_OUT
    assert len(taken) < 5, "precondition: the input was not read to its end"
    assert len(result) == len(taken), "results were invented for items never read"
    indices = sorted([index for index, _ in result.successes()] + [index for index, _ in result.failures()])
    assert indices == list(range(len(taken)))
    assert (2, ItemTimeoutError) in [(index, type(error)) for index, error in result.failures()]
    with pytest.raises(BaseExceptionGroup) as raised:
        result.values()
    incomplete = _incomplete(raised.value)
    assert incomplete.read == len(taken)
    assert incomplete.finished == len(result.successes())


# -- completed runs ------------------------------------------------------------------------


def _fails_on_multiples_of_three(x: int) -> int:
    if x % 3 == 0:
        raise ValueError(f"bad {x}")
    return x


@pytest.mark.timeout(60)
def test_failed_items_alone_leave_a_run_completed() -> None:
    clean = parallel_map(_identity, range(5), timeout=30)
    assert clean.status == RunStatus.COMPLETED
    assert clean.ok
    assert clean == [0, 1, 2, 3, 4]

    failed = parallel_map(_fails_on_multiples_of_three, range(7), timeout=30)
    assert failed.status == RunStatus.COMPLETED
    assert not failed.ok
    with pytest.raises(ExceptionGroup) as raised:
        failed.values()
    assert raised.value.message == "3 of 7 items failed"
    assert not any(isinstance(error, IncompleteRunError) for error in raised.value.exceptions)
    assert repr(failed) == "ParallelResult(4 ok, 3 failed)"


# -- the decorators ---------------------------------------------------------------------------


@parallel(timeout=TIMEOUT)
def _decorated(x: int) -> int:
    return x


@async_parallel(concurrency=2, timeout=TIMEOUT)
async def _async_decorated(x: int) -> int:
    return x


@pytest.mark.timeout(60)
def test_the_decorators_map_reports_the_status() -> None:
    taken: list[int] = []
    started = time.monotonic()
    timed_out = _decorated.map(_slow_source(taken))
    seconds = time.monotonic() - started
    assert seconds < TIMEOUT + PACE + 1.5, f"took {seconds:.1f} s"
    assert timed_out.status == RunStatus.TIMED_OUT
    assert not timed_out.ok
    assert _decorated.map(range(3)).status == RunStatus.COMPLETED

    async def main() -> tuple[ParallelResult[int], ParallelResult[int]]:
        async_taken: list[int] = []
        return await _async_decorated.map(_slow_async_source(async_taken)), await _async_decorated.map(
            range(3)
        )

    async_timed_out, async_completed = asyncio.run(main())
    assert not async_timed_out.ok
    assert async_timed_out.status == RunStatus.TIMED_OUT
    assert async_completed.ok
    assert async_completed.status == RunStatus.COMPLETED


# -- observers ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_observers_see_the_runs_status(register: Callable[..., str]) -> None:
    observer = Observer()
    register(observer)

    parallel_map(_identity, _slow_source([]), timeout=TIMEOUT)
    parallel_map(_fails_on_multiples_of_three, range(4))

    async def main() -> None:
        await async_parallel_map(_async_identity, _slow_async_source([]), concurrency=2, timeout=TIMEOUT)

    asyncio.run(main())

    summaries = [summary for _, summary in observer.ends]
    assert [summary.outcome for summary in summaries] == ["timed_out", "completed", "timed_out"]
    assert [summary.status for summary in summaries] == [
        RunStatus.TIMED_OUT,
        RunStatus.COMPLETED,
        RunStatus.TIMED_OUT,
    ]


# -- a timeout during a retry backoff -------------------------------------------------------


def _always_fails(x: int) -> int:
    raise ConnectionError(f"real failure of item {x}")


@pytest.mark.timeout(60)
def test_a_timeout_during_a_retry_backoff_keeps_the_last_real_error_as_cause() -> None:
    started = time.monotonic()
    result = parallel_map(
        _always_fails, [0], retry=Retry(attempts=3, backoff=10, jitter=False), timeout=TIMEOUT
    )
    seconds = time.monotonic() - started
    assert seconds < TIMEOUT + 3, "the run waited out the backoff"

    [(index, error)] = result.failures()
    assert index == 0
    assert isinstance(error, ItemTimeoutError)
    assert isinstance(error.__cause__, ConnectionError), f"__cause__ is {error.__cause__!r}"
    assert str(error.__cause__) == "real failure of item 0"
    assert result.status == RunStatus.TIMED_OUT
