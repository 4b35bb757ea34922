"""Sized inputs whose ``len()`` lies (issue 9, defect 3).

A list changed while the run reads it, or a class whose ``__len__`` disagrees with what
its ``__iter__`` gives: the run reads and runs every item the input really gives, ends
with ``RunStatus.SIZE_MISMATCH`` (``ok`` is false), and the result holds exactly the items
read, with their values and no ``None`` invented for the ones that never came.
``values()`` raises an ``ExceptionGroup`` holding an ``IncompleteRunError`` that says what
``len()`` said (``expected``) and what was read. ``on_progress`` ends on the real total
and observers see the outcome ``"size_mismatch"``. A ``__len__`` that tells the truth
still completes.

Statuses are compared as strings (``RunStatus`` is a ``StrEnum``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import pyarallel
from edge_functions import Svc, double, identity, plain_double
from pyarallel import ParallelResult, async_parallel, async_parallel_map, parallel, parallel_map
from support import Observer

SIZE_MISMATCH = "size_mismatch"


class Liar:
    """A sized iterable whose ``__len__`` says ``declared`` and whose ``__iter__`` gives
    ``range(actual)``."""

    def __init__(self, declared: int, actual: int) -> None:
        self.declared = declared
        self.actual = actual

    def __len__(self) -> int:
        return self.declared

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.actual))

    def __repr__(self) -> str:
        return f"Liar(len={self.declared}, gives={self.actual})"


def check_size_mismatch(
    result: ParallelResult[Any], *, read: int, expected: int, value_of: Callable[[int], Any] = identity
) -> None:
    """``result`` is a SIZE_MISMATCH run that read ``read`` items of the ``expected``
    its input's ``len()`` said, every one of them a success."""
    assert result.status == SIZE_MISMATCH
    assert not result.ok
    assert len(result) == read
    assert result.successes() == [(index, value_of(index)) for index in range(read)]
    assert result.failures() == []
    with pytest.raises(ExceptionGroup) as raised:
        result.values()
    [incomplete] = raised.value.exceptions
    assert isinstance(incomplete, pyarallel.IncompleteRunError)
    assert incomplete.status == SIZE_MISMATCH
    assert incomplete.read == read
    assert incomplete.finished == read
    assert incomplete.expected == expected  # type: ignore[attr-defined]
    assert "len()" in str(incomplete)


@pytest.fixture(scope="module")
def user_thread_pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="lying-inputs") as pool:
        yield pool


# Backends and options that read the input their own way. ``None`` stands for the user's
# ThreadPoolExecutor (a fixture).
IN_PROCESS: dict[str, dict[str, Any]] = {
    "threads": {},
    "threads_one_worker": {"workers": 1},
    "user_thread_pool": {"executor": None},
    "batch_size_2": {"batch_size": 2},
    "timeout_30": {"timeout": 30},
}
EVERYWHERE: dict[str, dict[str, Any]] = {
    **IN_PROCESS,
    "process": {"executor": "process"},
    "process_batch_size_2": {"executor": "process", "batch_size": 2},
}


def _options(name: str, table: dict[str, dict[str, Any]], pool: ThreadPoolExecutor) -> dict[str, Any]:
    options = dict(table[name])
    if "executor" in options and options["executor"] is None:
        options["executor"] = pool
    return options


# -- a list shrunk while the run reads it -----------------------------------------------------------


@pytest.mark.parametrize("name", list(IN_PROCESS))
def test_list_shrinking_while_read_ends_with_size_mismatch(
    name: str, user_thread_pool: ThreadPoolExecutor
) -> None:
    data = list(range(10))
    consumed: list[int] = []

    def consume(x: int) -> int:
        data.pop()
        consumed.append(x)
        return x

    options = _options(name, IN_PROCESS, user_thread_pool)
    result = parallel_map(consume, data, **{"workers": 1, **options})
    read = len(consumed)  # every item read was run
    assert read < 10
    check_size_mismatch(result, read=read, expected=10)
    assert sorted(consumed) == list(range(read))


def test_the_docs_example_of_a_list_changed_during_the_run() -> None:
    data = list(range(10))

    def consume(x: int) -> int:
        data.pop()
        return x

    result = parallel_map(consume, data, workers=1)
    assert result.status == SIZE_MISMATCH
    assert not result.ok
    assert len(result) < 10
    assert None not in [value for _, value in result.successes()]


# -- a __len__ that lies ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EVERYWHERE))
def test_len_larger_than_the_input_keeps_only_the_items_read(
    name: str, user_thread_pool: ThreadPoolExecutor
) -> None:
    result = parallel_map(plain_double, Liar(5, 3), **_options(name, EVERYWHERE, user_thread_pool))
    check_size_mismatch(result, read=3, expected=5, value_of=lambda i: 2 * i)


@pytest.mark.parametrize("name", list(EVERYWHERE))
def test_len_smaller_than_the_input_still_runs_every_item(
    name: str, user_thread_pool: ThreadPoolExecutor
) -> None:
    result = parallel_map(plain_double, Liar(3, 5), **_options(name, EVERYWHERE, user_thread_pool))
    check_size_mismatch(result, read=5, expected=3, value_of=lambda i: 2 * i)


@pytest.mark.parametrize("name", list(EVERYWHERE))
def test_a_truthful_len_completes(name: str, user_thread_pool: ThreadPoolExecutor) -> None:
    result = parallel_map(plain_double, Liar(4, 4), **_options(name, EVERYWHERE, user_thread_pool))
    assert result.status == "completed"
    assert result.ok
    assert list(result) == [0, 2, 4, 6]


def test_lying_len_through_the_decorator_and_starmap() -> None:
    check_size_mismatch(double.map(Liar(6, 2)), read=2, expected=6, value_of=lambda i: 2 * i)
    check_size_mismatch(Svc(3).scale.map(Liar(1, 4)), read=4, expected=1, value_of=lambda i: 3 * i)

    class Pairs(Liar):
        def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
            return ((i, i) for i in range(self.actual))

    result = pyarallel.parallel_starmap(lambda a, b: a + b, Pairs(4, 2))
    check_size_mismatch(result, read=2, expected=4, value_of=lambda i: 2 * i)


def test_lying_len_with_a_failing_item_keeps_the_failure() -> None:
    def fails_on_one(x: int) -> int:
        if x == 1:
            raise ValueError("one")
        return x

    result = parallel_map(fails_on_one, Liar(5, 3))
    assert result.status == SIZE_MISMATCH
    assert len(result) == 3
    assert result.successes() == [(0, 0), (2, 2)]
    [(index, error)] = result.failures()
    assert index == 1
    assert isinstance(error, ValueError)
    with pytest.raises(ExceptionGroup) as raised:
        result.values()
    kinds = sorted(type(error).__name__ for error in raised.value.exceptions)
    assert kinds == ["IncompleteRunError", "ValueError"]


# -- the async API over a lying sized sync iterable ------------------------------------------------


async def _atriple(x: int) -> int:
    await asyncio.sleep(0)
    return 3 * x


@pytest.mark.parametrize(("declared", "actual"), [(5, 3), (3, 5), (1, 0), (0, 2)])
@pytest.mark.parametrize("batch_size", [None, 2])
def test_async_map_over_a_lying_len(declared: int, actual: int, batch_size: int | None) -> None:
    result = asyncio.run(
        async_parallel_map(_atriple, Liar(declared, actual), concurrency=2, batch_size=batch_size)
    )
    check_size_mismatch(result, read=actual, expected=declared, value_of=lambda i: 3 * i)


def test_async_map_over_a_truthful_len_completes() -> None:
    result = asyncio.run(async_parallel_map(_atriple, Liar(3, 3)))
    assert result.status == "completed"
    assert list(result) == [0, 3, 6]


def test_async_decorated_map_over_a_lying_len() -> None:
    tripled = async_parallel(concurrency=2)(_atriple)
    check_size_mismatch(asyncio.run(tripled.map(Liar(4, 1))), read=1, expected=4, value_of=lambda i: 3 * i)


def test_async_map_over_a_list_shrunk_while_read() -> None:
    data = list(range(10))
    consumed: list[int] = []

    async def consume(x: int) -> int:
        data.pop()
        consumed.append(x)
        await asyncio.sleep(0)
        return x

    result = asyncio.run(async_parallel_map(consume, data, concurrency=1))
    assert len(consumed) < 10
    check_size_mismatch(result, read=len(consumed), expected=10)


# -- progress and observers ------------------------------------------------------------------------


def _progress_of(
    run: Callable[[Callable[[int, int], None]], ParallelResult[Any]],
) -> tuple[ParallelResult[Any], list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []
    result = run(lambda done, total: calls.append((done, total)))
    return result, calls


@pytest.mark.parametrize("workers", [1, 3])
def test_progress_ends_on_the_items_really_read_when_len_is_too_large(workers: int) -> None:
    result, calls = _progress_of(
        lambda progress: parallel_map(plain_double, Liar(8, 3), workers=workers, on_progress=progress)
    )
    assert calls
    assert calls[-1] == (3, 3)
    assert all(total <= 8 for _, total in calls)
    assert len(result) == 3


@pytest.mark.parametrize("workers", [1, 3])
def test_progress_ends_on_the_items_really_read_when_len_is_too_small(workers: int) -> None:
    result, calls = _progress_of(
        lambda progress: parallel_map(plain_double, Liar(2, 6), workers=workers, on_progress=progress)
    )
    assert calls[-1] == (6, 6)
    assert len(result) == 6


def test_progress_of_a_list_shrunk_while_read() -> None:
    data = list(range(10))

    def consume(x: int) -> int:
        data.pop()
        return x

    result, calls = _progress_of(
        lambda progress: parallel_map(consume, data, workers=1, on_progress=progress)
    )
    assert len(result) < 10
    assert calls[-1] == (len(result), len(result))
    assert all(total <= 10 for _, total in calls)


def test_async_progress_ends_on_the_items_really_read() -> None:
    for declared, actual in [(8, 3), (2, 6)]:
        calls: list[tuple[int, int]] = []
        result = asyncio.run(
            async_parallel_map(
                _atriple, Liar(declared, actual), on_progress=lambda d, t: calls.append((d, t))
            )
        )
        assert calls[-1] == (actual, actual)
        if declared > actual:
            assert all(total <= declared for _, total in calls)
        assert len(result) == actual


def test_observers_see_the_size_mismatch_outcome(register: Callable[..., str]) -> None:
    observer = Observer()
    register(observer)
    parallel_map(plain_double, Liar(5, 3))
    parallel_map(plain_double, Liar(2, 4), executor="process")
    parallel(workers=2)(identity).map(Liar(3, 3))
    asyncio.run(async_parallel_map(_atriple, Liar(4, 1)))
    outcomes = [(summary.outcome, summary.succeeded, summary.failed) for _, summary in observer.ends]
    assert outcomes == [
        ("size_mismatch", 3, 0),
        ("size_mismatch", 4, 0),
        ("completed", 3, 0),
        ("size_mismatch", 1, 0),
    ]


def test_observers_see_the_size_mismatch_of_streams(register: Callable[..., str]) -> None:
    observer = Observer()
    register(observer)
    streamed = sorted(item.index for item in pyarallel.parallel_iter(plain_double, Liar(5, 3)))

    async def main() -> list[int]:
        async with contextlib.aclosing(pyarallel.async_parallel_iter(_atriple, Liar(1, 2))) as results:
            return sorted([item.index async for item in results])

    assert streamed == [0, 1, 2]
    assert asyncio.run(main()) == [0, 1]
    outcomes = [(summary.outcome, summary.succeeded) for _, summary in observer.ends]
    assert outcomes == [("size_mismatch", 3), ("size_mismatch", 2)]


# -- the property ----------------------------------------------------------------------------------


def _triple(x: int) -> int:
    return 3 * x


@settings(
    max_examples=80,
    deadline=None,
    database=None,  # nothing written to the repository; failures are pinned with @example
    suppress_health_check=[HealthCheck.too_slow],
)
@example(declared=0, actual=5, workers=1, batch_size=None)
@example(declared=5, actual=0, workers=4, batch_size=None)
@example(declared=40, actual=1, workers=2, batch_size=5)
@example(declared=1, actual=40, workers=4, batch_size=1)
@example(declared=0, actual=0, workers=1, batch_size=None)
@given(
    declared=st.integers(0, 40),
    actual=st.integers(0, 40),
    workers=st.integers(1, 4),
    batch_size=st.none() | st.integers(1, 5),
)
def test_any_declared_length_gives_exactly_the_items_read(
    declared: int, actual: int, workers: int, batch_size: int | None
) -> None:
    result = parallel_map(_triple, Liar(declared, actual), workers=workers, batch_size=batch_size)
    assert len(result) == actual
    assert result.successes() == [(index, 3 * index) for index in range(actual)]
    assert result.failures() == []
    assert (result.status == "completed") == (declared == actual)
    if declared == actual:
        assert result.ok
        assert list(result) == [3 * index for index in range(actual)]
    else:
        check_size_mismatch(result, read=actual, expected=declared, value_of=_triple)
